"""Fixtures shared by every layer's tests: settings on a fresh database, and servers."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rentabot.app import create_app
from rentabot.service.bootstrap import prepare_database
from rentabot.settings import Settings
from rentabot.storage.database import Database
from rentabot.storage.opening import open_database
from tests.support import EXAMPLES, postgres_schema, write_descriptor

#: Set by `.ci/run`: tests that would skip for lack of Chromium or PostgreSQL fail instead.
REQUIRE_ALL = os.environ.get("RENTABOT_TEST_REQUIRE_ALL", "") not in ("", "0", "false")


def skip_or_fail(reason: str) -> None:
    """Skip on a laptop that lacks a test dependency; fail in CI, where everything must run."""
    if REQUIRE_ALL:
        pytest.fail(f"{reason} (RENTABOT_TEST_REQUIRE_ALL is set, so this cannot be skipped)")
    pytest.skip(reason)


@pytest.fixture
def anyio_backend() -> str:
    """Async tests run on asyncio, like the server."""
    return "asyncio"


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """A fresh SQLite database file for this test."""
    return f"sqlite:///{tmp_path / 'rentabot.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL schema for this test (dropped after it), as a URL.

    Skips (fails in CI) when no PostgreSQL answers at RENTABOT_TEST_POSTGRES_URL.
    """
    with postgres_schema() as url:
        yield url


@pytest.fixture
def make_settings(database_url: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings on this test's database; a `resources` mapping becomes the descriptor."""

    def make(resources: dict[str, object] | None = None, **overrides: object) -> Settings:
        values: dict[str, object] = {"database_url": database_url}
        if resources is not None:
            values["resource_descriptor"] = write_descriptor(tmp_path / "resources.yml", resources)
        values.update(overrides)
        return Settings(**values)  # type: ignore[arg-type]

    return make


@pytest.fixture
def example_settings(database_url: str) -> Settings:
    """Settings serving examples/resources.yml on this test's database."""
    return Settings(database_url=database_url, resource_descriptor=EXAMPLES)


@pytest.fixture
def database(example_settings: Settings) -> Iterator[Database]:
    """The example resources in a migrated, synchronised database."""
    prepare_database(example_settings)
    db = open_database(example_settings.database_url)
    yield db
    db.dispose()


@pytest.fixture
def client(example_settings: Settings) -> Iterator[TestClient]:
    """An in-process client of an app serving the example resources."""
    prepare_database(example_settings)
    with TestClient(create_app(example_settings), raise_server_exceptions=False) as test_client:
        yield test_client
