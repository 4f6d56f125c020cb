"""Fixtures of the end-to-end tests: real `rentabot serve` processes."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.conftest import skip_or_fail
from tests.support import RENTABOT, Server


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    """Servers a test starts; every one still running at the end is killed."""
    if not RENTABOT.exists():
        skip_or_fail(f"the rentabot console script is not installed at {RENTABOT}")
    started: list[Server] = []
    yield started
    for server in started:
        server.kill()
