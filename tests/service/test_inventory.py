"""The descriptor is the inventory: start-up synchronises it into the database."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import pytest

from rentabot.domain.errors import DescriptorError
from rentabot.domain.model import V1Selection
from rentabot.service.bootstrap import prepare_database
from rentabot.service.leases import LeaseService
from rentabot.service.locks import LockService
from rentabot.settings import Settings
from rentabot.storage.database import Database
from rentabot.storage.opening import open_database
from tests.support import ANONYMOUS, dump

pytestmark = pytest.mark.anyio

MakeSettings = Callable[..., Settings]


def _service(database: Database) -> LockService:
    return LockService(database, LeaseService(database))


def _listing(settings: Settings) -> list[tuple[int, str, str | None, tuple[str, ...]]]:
    database = open_database(settings.database_url)
    try:
        listed = asyncio.run(_service(database).resources())
        return [(r.id, r.name, r.description, r.tags) for r in listed]
    finally:
        database.dispose()


def test_first_start_numbers_resources_in_file_order(make_settings: MakeSettings) -> None:
    """Ids run 1..N in descriptor order, with tags from strings and lists alike."""
    settings = make_settings({"b": {"tags": "x y"}, "a": {"tags": ["y", "z"]}, "c": {}})
    report = prepare_database(settings)
    assert (report.sync.added, report.sync.total) == (3, 3)
    assert _listing(settings) == [
        (1, "b", None, ("x", "y")),
        (2, "a", None, ("y", "z")),
        (3, "c", None, ()),
    ]


def test_restart_keeps_ids_by_name_updates_fields_and_adds_new(
    make_settings: MakeSettings,
) -> None:
    """Reordered, changed and new entries: old names keep their ids, new ones come after."""
    prepare_database(make_settings({"a": {}, "b": {"description": "old"}}))
    settings = make_settings({"new": {"tags": "t"}, "b": {"description": "new"}, "a": {}})
    report = prepare_database(settings)
    assert (report.sync.added, report.sync.updated, report.sync.retired) == (1, 1, 0)
    assert _listing(settings) == [
        (1, "a", None, ()),
        (2, "b", "new", ()),
        (3, "new", None, ("t",)),
    ]


def test_an_unchanged_descriptor_changes_nothing(make_settings: MakeSettings) -> None:
    """A restart with the same file writes no update: every row of every table is as it was,
    and the audit trail has no new event."""
    settings = make_settings({"a": {"tags": ["x"]}, "b": {"properties": {"k": "v"}}})
    prepare_database(settings)
    before = dump(settings.database_url)
    report = prepare_database(settings)
    assert dump(settings.database_url) == before
    assert (report.sync.added, report.sync.updated, report.sync.retired) == (0, 0, 0)


async def test_removed_resources_retire_but_a_held_lock_is_never_dropped(
    make_settings: MakeSettings,
) -> None:
    """A held resource that leaves the descriptor stays held and visible until unlocked."""
    settings = make_settings({"a": {}, "b": {}, "c": {}})
    prepare_database(settings)
    database = open_database(settings.database_url)
    service = _service(database)
    grant = await service.lock(V1Selection(name="b"), ANONYMOUS)

    report = prepare_database(make_settings({"a": {}}))
    assert (report.sync.retired, report.sync.retired_but_held) == (2, 1)
    assert [r.name for r in (await service.resources())] == ["a", "b"]
    held = (await service.resource(2)).holder
    assert held is not None
    assert held.lease_id == grant.lease_id
    await service.unlock(2, grant.token, ANONYMOUS)
    assert [r.name for r in (await service.resources())] == ["a"]

    # Back in the descriptor: the same id again.
    prepare_database(make_settings({"a": {}, "c": {}, "b": {}}))
    assert [(r.id, r.name) for r in (await service.resources())] == [(1, "a"), (2, "b"), (3, "c")]
    database.dispose()


def test_an_invalid_descriptor_leaves_the_database_untouched(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """A bad descriptor raises DescriptorError with file and line; not a row changes."""
    settings = make_settings({"a": {}, "b": {}})
    prepare_database(settings)
    before = dump(settings.database_url)
    bad = tmp_path / "bad.yml"
    bad.write_text("a: {}\nb:\n  colour: red\n")
    with pytest.raises(DescriptorError) as raised:
        prepare_database(make_settings(resource_descriptor=bad))
    assert raised.value.source == str(bad)
    assert raised.value.line == 3
    assert dump(settings.database_url) == before


def test_a_missing_descriptor_file_is_an_error_before_any_write(
    make_settings: MakeSettings, tmp_path: Path
) -> None:
    """A descriptor path that does not exist stops start-up and creates no database."""
    settings = make_settings(resource_descriptor=tmp_path / "absent.yml")
    with pytest.raises(DescriptorError, match="no such file"):
        prepare_database(settings)
    if settings.database_url.startswith("sqlite:"):
        assert not Path(settings.database_url.removeprefix("sqlite:///")).exists()
    else:
        assert dump(settings.database_url) == {}


def test_no_descriptor_serves_no_resources_and_says_so(
    make_settings: MakeSettings, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a descriptor the service starts empty and logs why."""
    prepare_database(make_settings({"a": {}}))
    settings = make_settings(resource_descriptor="")
    assert settings.resource_descriptor is None
    with caplog.at_level("WARNING", logger="rentabot"):
        report = prepare_database(settings)
    assert report.sync.total == 0
    assert report.sync.retired == 1
    assert "serving no resources" in caplog.text
    assert _listing(settings) == []


def test_properties_are_stored_and_returned(make_settings: MakeSettings) -> None:
    """The descriptor's properties reach the resource as a string map."""
    settings = make_settings({"a": {"properties": {"serial": "123", "baud": 115200}}})
    prepare_database(settings)
    database = open_database(settings.database_url)
    resource = asyncio.run(_service(database).resource(1))
    assert resource.properties == {"serial": "123", "baud": "115200"}
    database.dispose()
