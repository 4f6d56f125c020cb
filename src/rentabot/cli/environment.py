"""The environment a job gets for its lease (`rentabot run`, `rentabot lock --shell`)."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping

from rentabot.client import Lease

#: Variables describing a lease; stale ones inherited from an outer job are dropped first
#: (never a setting such as RENTABOT_RESOURCE_DESCRIPTOR).
_LEASE_VARIABLE = re.compile(
    r"RENTABOT_(TOKEN|LEASE_ID|COUNT|(RESOURCE|FENCE|ENDPOINT)(_[0-9]+)?|PROPERTY_.+)"
)


def variable_key(key: str) -> str:
    """A property key as a variable name part: upper-cased, anything else than A-Z, 0-9
    becomes `_` (`jlink-serial` → `JLINK_SERIAL`)."""
    return re.sub(r"[^A-Z0-9]", "_", key.upper())


def lease_environment(lease: Lease, url: str) -> dict[str, str]:
    """`RENTABOT_TOKEN`, `RENTABOT_LEASE_ID`, `RENTABOT_URL`, `RENTABOT_COUNT`; for the
    first resource `RENTABOT_RESOURCE` (its name), `RENTABOT_FENCE`, `RENTABOT_ENDPOINT`,
    `RENTABOT_PROPERTY_<KEY>`; and for every resource N the same with `_<N>` after
    `RESOURCE`/`FENCE`/`ENDPOINT`/`PROPERTY`."""
    variables = {
        "RENTABOT_TOKEN": lease.token,
        "RENTABOT_LEASE_ID": str(lease.id),
        "RENTABOT_URL": url,
        "RENTABOT_COUNT": str(len(lease.resources)),
    }
    for index, resource in enumerate(lease.resources):
        suffixes = [f"_{index}", ""] if index == 0 else [f"_{index}"]
        for suffix in suffixes:
            variables[f"RENTABOT_RESOURCE{suffix}"] = resource.name
            variables[f"RENTABOT_FENCE{suffix}"] = str(resource.fence)
            variables[f"RENTABOT_ENDPOINT{suffix}"] = resource.endpoint or ""
            for key, value in resource.properties.items():
                variables[f"RENTABOT_PROPERTY{suffix}_{variable_key(key)}"] = value
    return variables


def child_environment(parent: Mapping[str, str], lease: Lease, url: str) -> dict[str, str]:
    """The parent's environment without another lease's variables, plus this lease's."""
    kept = {k: v for k, v in parent.items() if not _LEASE_VARIABLE.fullmatch(k)}
    return {**kept, **lease_environment(lease, url)}


def shell_exports(variables: Mapping[str, str]) -> str:
    """`export NAME=value` lines, quoted for any POSIX shell."""
    return "".join(f"export {name}={shlex.quote(value)}\n" for name, value in variables.items())
