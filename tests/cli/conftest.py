"""One real server for every CLI test module (a server takes seconds to start)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from rentabot.client import Client
from tests.client_support import lab_server
from tests.support import Server

#: Each test uses its own tag (shared by the boards listed for it), never another's.
TAGS = {
    # test_cli_commands.py
    "listed": 1, "plain": 1, "shell": 1, "json": 1, "waited": 1, "timeout": 1, "busy": 1,
    "queued": 1, "sigterm": 1, "ended": 1,
    # test_run.py
    "run-env": 2, "run-status": 2, "run-sigterm": 2, "run-revoked": 2, "run-expired": 2,
    "run-queue": 2, "run-refused": 2,
    # test_ci_recipes.py
    "nrf52": 1, "stm32": 1, "esp32": 1, "nightly": 1,
}  # fmt: skip


@pytest.fixture(scope="package")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """The boards of TAGS (see `lab_server`), for every CLI test."""
    with lab_server(tmp_path_factory.mktemp("cli"), TAGS) as running:
        yield running


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    """A Python client of the server."""
    with Client(server.url, retry_for=3) as made:
        yield made


@pytest.fixture
def admin(server: Server) -> Iterator[Client]:
    """A Python client of the server with an admin key (for operator actions)."""
    with Client(server.url, server.key(), retry_for=3) as made:
        yield made
