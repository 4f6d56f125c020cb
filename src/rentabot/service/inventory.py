"""The descriptor → database synchronisation: the inventory follows the YAML file."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from rentabot.domain.descriptor import parse_descriptor
from rentabot.domain.errors import DescriptorError
from rentabot.domain.model import ResourceSpec
from rentabot.service.leases import Clock
from rentabot.storage.database import Database
from rentabot.storage.store import StoredResource


def read_descriptor(path: Path) -> list[ResourceSpec]:
    """Read and validate a descriptor file. Raises DescriptorError (file, line, reason)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DescriptorError(str(path), None, "no such file") from None
    except IsADirectoryError:
        raise DescriptorError(str(path), None, "is a directory, not a file") from None
    except OSError as error:
        raise DescriptorError(str(path), None, f"cannot read it: {error.strerror}") from None
    return parse_descriptor(data, str(path))


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What a synchronisation changed."""

    added: int
    updated: int
    retired: int
    #: Retired resources still held by a lease: they stay until released.
    retired_but_held: int
    total: int


def _differs(stored: StoredResource, spec: ResourceSpec) -> bool:
    return (
        stored.retired
        or stored.description != spec.description
        or stored.endpoint != spec.endpoint
        or stored.tags_text != spec.tags_text
        or json.loads(stored.properties) != dict(spec.properties)
    )


def sync_inventory(
    database: Database, specs: Sequence[ResourceSpec], *, clock: Clock = time.time
) -> SyncReport:
    """Make the database's resources match the descriptor, in one transaction.

    New names are added (ids follow file order), changed fields updated, names no longer
    listed retired. A retired resource that is held keeps its lease until released; a name
    that comes back gets its old id again.
    """
    with database.transaction() as store:
        now = clock()
        stored = {row.name: row for row in store.stored_resources()}
        wanted = {spec.name for spec in specs}
        new = [spec for spec in specs if spec.name not in stored]
        changed = [
            (stored[spec.name].id, spec)
            for spec in specs
            if spec.name in stored and _differs(stored[spec.name], spec)
        ]
        gone = [row.id for row in stored.values() if not row.retired and row.name not in wanted]

        new_ids = store.insert_resources(new, now)
        store.update_resources(changed, now)
        store.retire_resources(gone, now)
        store.replace_tags({new_ids[spec.name]: spec.tags for spec in new}, new=True)
        store.replace_tags({resource_id: spec.tags for resource_id, spec in changed})

        store.add_events(
            [(now, "resource_added", new_ids[spec.name], None) for spec in new]
            + [(now, "resource_updated", resource_id, None) for resource_id, _ in changed]
            + [(now, "resource_retired", resource_id, None) for resource_id in gone]
        )
        held = store.held_among(gone)
    return SyncReport(
        added=len(new),
        updated=len(changed),
        retired=len(gone),
        retired_but_held=held,
        total=len(specs),
    )
