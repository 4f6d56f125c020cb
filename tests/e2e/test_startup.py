"""`rentabot serve` and `rentabot db` as operators run them: messages, exit codes, database."""

from __future__ import annotations

import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import skip_or_fail
from tests.support import RENTABOT, V1, Server, environment_without_settings, free_port

pytestmark = pytest.mark.e2e

#: An operator waits a few seconds for a refusal, not for a server start.
REFUSAL_S = 20.0

GOOD = """\
coffee-machine:
  description: Kitchen coffee machine
  tags: coffee kitchen
printer:
  description: Basement printer
  tags: [printer, basement]
board:
  tags: bench
"""

#: (kind, descriptor text, line of the error, what the message must say)
BAD_DESCRIPTORS = [
    (
        "duplicate-name",
        "alpha:\n  description: x\nbeta:\n  description: y\ngamma:\n  tags: t\nalpha:\n  tags: z\n",
        7,
        "duplicate resource name 'alpha'",
    ),
    (
        "yaml-syntax",
        "alpha:\n  description: x\nbeta:\n  description: y\n   tags: z\n",
        5,
        "invalid YAML",
    ),
    (
        "unknown-key",
        "alpha:\n  description: x\nbeta:\n  description: y\n  colour: red\n",
        5,
        "unknown key 'colour'",
    ),
    (
        "entry-without-body",
        "alpha:\n  description: x\nbeta:\ngamma:\n  tags: t\n",
        3,
        "entry 'beta' has no body",
    ),
]


def run_cli(*args: str, timeout: float = REFUSAL_S) -> subprocess.CompletedProcess[str]:
    """Run `rentabot ARGS…` without any RENTABOT_* variable of ours, capturing its output."""
    environment = environment_without_settings()
    return subprocess.run(
        [str(RENTABOT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
        check=False,
    )


def dump(database: Path) -> list[str]:
    """Every row of the database as SQL, read through a fresh connection (sees the WAL)."""
    connection = sqlite3.connect(database)
    try:
        return list(connection.iterdump())
    finally:
        connection.close()


def files(database: Path) -> dict[str, bytes]:
    """The bytes of the database file and its WAL companions, by name."""
    return {p.name: p.read_bytes() for p in database.parent.glob(f"{database.name}*")}


@pytest.fixture(autouse=True)
def _rentabot_installed() -> None:
    if not RENTABOT.exists():
        skip_or_fail(f"the rentabot console script is not installed at {RENTABOT}")


@pytest.fixture(scope="module")
def locked_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A database a good server used: resources locked by id and by tag, then stopped."""
    directory = tmp_path_factory.mktemp("startup")
    descriptor = directory / "good.yml"
    descriptor.write_text(GOOD)
    with (
        Server(directory / "rentabot.db", descriptor) as server,
        httpx.Client(base_url=f"{server.url}{V1}", timeout=10.0) as client,
    ):
        assert client.post("/resources/1/lock").status_code == 200
        assert client.post("/resources/lock", params={"tag": "bench"}).status_code == 200
    return directory / "rentabot.db"


@pytest.mark.parametrize(
    ("text", "line", "reason"),
    [pytest.param(text, line, reason, id=kind) for kind, text, line, reason in BAD_DESCRIPTORS],
)
def test_a_bad_descriptor_stops_serve_with_file_line_and_reason_and_leaves_the_database(
    locked_database: Path, tmp_path: Path, text: str, line: int, reason: str
) -> None:
    """A bad descriptor: quick non-zero exit, `file:line: reason`, no traceback, same rows."""
    descriptor = tmp_path / "bad.yml"
    descriptor.write_text(text)
    rows = dump(locked_database)
    assert any('INSERT INTO "leases"' in row for row in rows)  # something worth protecting
    before = files(locked_database)

    started = time.monotonic()
    result = run_cli(
        "serve",
        "--port",
        str(free_port()),
        "--database",
        f"sqlite:///{locked_database}",
        "--descriptor",
        str(descriptor),
    )
    elapsed = time.monotonic() - started

    assert result.returncode != 0
    assert elapsed < REFUSAL_S
    assert f"{descriptor}:{line}: " in result.stderr, result.stderr
    assert reason in result.stderr, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert files(locked_database) == before
    assert dump(locked_database) == rows


def test_a_missing_descriptor_stops_serve_naming_the_path(tmp_path: Path) -> None:
    """A descriptor path that does not exist: non-zero exit naming it, no database created."""
    missing = tmp_path / "nowhere" / "resources.yml"
    database = tmp_path / "rentabot.db"
    result = run_cli(
        "serve",
        "--port",
        str(free_port()),
        "--database",
        f"sqlite:///{database}",
        "--descriptor",
        str(missing),
    )
    assert result.returncode != 0
    assert str(missing) in result.stderr, result.stderr
    assert "no such file" in result.stderr
    assert "Traceback" not in result.stderr
    assert not database.exists()


@pytest.fixture(scope="module")
def bare_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server started with no descriptor at all."""
    if not RENTABOT.exists():
        skip_or_fail(f"the rentabot console script is not installed at {RENTABOT}")
    with Server(tmp_path_factory.mktemp("bare") / "rentabot.db", None) as server:
        yield server


def test_serve_without_a_descriptor_says_so_and_serves_nothing(bare_server: Server) -> None:
    """No descriptor: a log line says it serves no resources, and the listing is empty."""
    assert "serving no resources" in bare_server.output()
    answer = httpx.get(f"{bare_server.url}{V1}/resources", timeout=10.0)
    assert answer.status_code == 200
    assert answer.json() == {"resources": []}
    assert httpx.get(f"{bare_server.url}/api/v1.0/resources/1", timeout=10.0).status_code == 404


def test_serve_prints_the_url_it_serves(bare_server: Server) -> None:
    """`rentabot serve` prints http://127.0.0.1:<port>, the address it answers on."""
    assert f"http://127.0.0.1:{bare_server.port}" in bare_server.output()
    assert httpx.get(f"http://127.0.0.1:{bare_server.port}/healthz").status_code == 200


@pytest.mark.parametrize(
    ("args", "mentions"),
    [
        pytest.param(("--help",), ("serve", "db", "--version", "--help"), id="rentabot"),
        pytest.param(
            ("serve", "--help"),
            ("--host", "--port", "--descriptor", "--database", "--workers"),
            id="serve",
        ),
        pytest.param(("db", "upgrade", "--help"), ("--database",), id="db-upgrade"),
    ],
)
def test_help_exits_0_and_lists_the_options(args: tuple[str, ...], mentions: tuple[str]) -> None:
    """`--help` of each command exits 0 and names its options."""
    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Usage: rentabot")
    for option in mentions:
        assert option in result.stdout


def test_db_upgrade_creates_the_schema_then_says_it_is_current(tmp_path: Path) -> None:
    """`rentabot db upgrade` creates every table; run again, it says the schema is current."""
    database = tmp_path / "x.db"
    first = run_cli("db", "upgrade", "--database", f"sqlite:///{database}")
    assert first.returncode == 0, first.stderr
    assert "upgraded from empty" in first.stdout

    connection = sqlite3.connect(database)
    try:
        tables = {
            row[0]
            for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
        version = connection.execute("SELECT version_num FROM alembic_version").fetchall()
    finally:
        connection.close()
    assert {"resources", "leases", "resource_tags", "events", "alembic_version"} <= tables
    assert len(version) == 1

    second = run_cli("db", "upgrade", "--database", f"sqlite:///{database}")
    assert second.returncode == 0, second.stderr
    assert "already" in second.stdout
    assert version[0][0] in second.stdout
