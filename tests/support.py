"""Helpers for tests: descriptors, and real `rentabot serve` processes on free ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml
from sqlalchemy import inspect, text

from rentabot.domain.identity import Principal, Role, anonymous
from rentabot.storage.database import Database
from rentabot.storage.opening import open_database

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "resources.yml"
RENTABOT = Path(sys.executable).with_name("rentabot")
V1 = "/rentabot/api/v1.0"
#: A caller without a key, as the default RENTABOT_ANONYMOUS_ROLE sees it.
ANONYMOUS = anonymous(Role.LOCK)


def key_principal(name: str, role: Role = Role.LOCK) -> Principal:
    """A caller authenticated by an API key of that name."""
    return Principal(name, role, "key")


#: The PostgreSQL the tests use (a schema of its own per test); this machine's by default.
POSTGRES_URL = os.environ.get(
    "RENTABOT_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
)


def postgres_available() -> str | None:
    """None when the tests' PostgreSQL answers; else why not."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'rentabot[postgres]')"
    conninfo = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://", 1)
    try:
        psycopg.connect(conninfo, connect_timeout=3).close()
    except psycopg.Error as error:
        return f"no PostgreSQL at {POSTGRES_URL}: {str(error).strip()}"
    return None


@contextmanager
def postgres_schema() -> Iterator[str]:
    """A fresh schema in the tests' PostgreSQL, dropped afterwards; yields its URL (the
    schema is the connections' search path)."""
    from tests.conftest import skip_or_fail

    problem = postgres_available()
    if problem is not None:
        skip_or_fail(problem)
    import psycopg

    conninfo = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://", 1)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {schema}")
    separator = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{separator}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            connection.execute(f"DROP SCHEMA {schema} CASCADE")


def environment_without_settings(*, rentabot_on_path: bool = False) -> dict[str, str]:
    """This process's environment without any RENTABOT_* variable (a child must see only
    the settings a test gives it); optionally with the installed `rentabot` first on PATH."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("RENTABOT_")}
    if rentabot_on_path:
        environment["PATH"] = f"{RENTABOT.parent}{os.pathsep}{os.environ.get('PATH', os.defpath)}"
    return environment


def write_descriptor(path: Path, resources: dict[str, Any]) -> Path:
    """Write a descriptor file from a mapping of name → fields."""
    path.write_text(yaml.safe_dump(resources, sort_keys=False))
    return path


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A real `rentabot serve` process on 127.0.0.1, for end-to-end tests."""

    def __init__(
        self,
        database: Path | str,
        descriptor: Path | None,
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
        log: Path | None = None,
    ) -> None:
        """`database` is an SQLite file, or any database URL (then `log` is required)."""
        if isinstance(database, Path):
            self.database_url = f"sqlite:///{database}"
            log = log or database.with_suffix(".log")
        else:
            self.database_url = database
        if log is None:
            raise ValueError("a server on a database URL needs a log file")
        self.descriptor = descriptor
        self.workers = workers
        self.env = env or {}
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = log
        self._keys: dict[str, str] = {}

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def key(self, name: str = "admin", role: Role = Role.ADMIN) -> str:
        """An API key of this server, made the first time it is asked for as an operator
        would: `rentabot keys create` on the server's database (its last line is the key)."""
        if name not in self._keys:
            command = [str(RENTABOT), "keys", "create", name, "--role", role.label]
            made = subprocess.run(
                [*command, "--database", self.database_url],
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
                env=environment_without_settings(),
            )
            self._keys[name] = made.stdout.splitlines()[-1]
        return self._keys[name]

    def command(self) -> list[str]:
        """The command line that starts it."""
        command = [str(RENTABOT), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--database", self.database_url, "--workers", str(self.workers)]
        if self.descriptor is not None:
            command += ["--descriptor", str(self.descriptor)]
        return command

    def start(self, timeout: float = 30.0) -> Server:
        """Start it and wait until it answers; raise with its log if it does not."""
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """Start the process, without waiting for it to answer."""
        environment = environment_without_settings()
        environment.update(self.env)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,
            )

    def wait_ready(self, timeout: float = 30.0) -> Server:
        """Wait until the launched server answers; raise with its log if it does not."""
        assert self.process is not None, "launch() first"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not answer within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        """Everything the server printed so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """`kill -9` the server and all its worker processes."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop it gracefully (SIGTERM), or kill it after a few seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


class Replicas:
    """Several real `rentabot serve` processes sharing one database, each on its own port:
    the multi-replica deployment of docs/deployment.md, on one machine."""

    def __init__(
        self,
        database_url: str,
        descriptor: Path | None,
        count: int,
        directory: Path,
        *,
        env: dict[str, str] | None = None,
    ) -> None:
        self.servers = [
            Server(database_url, descriptor, env=env, log=directory / f"replica-{index}.log")
            for index in range(count)
        ]

    @property
    def ports(self) -> list[int]:
        """Each replica's port, in order."""
        return [server.port for server in self.servers]

    @property
    def urls(self) -> list[str]:
        """Each replica's base URL, in order."""
        return [server.url for server in self.servers]

    def start(self, timeout: float = 60.0) -> Replicas:
        """Start them all at once (they migrate and sync the descriptor concurrently, as
        replicas rolled out together do) and wait until every one answers."""
        for server in self.servers:
            server.launch()
        try:
            for server in self.servers:
                server.wait_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def output(self) -> str:
        """Every replica's log, one after the other."""
        return "\n".join(
            f"--- replica {index} ---\n{server.output()}"
            for index, server in enumerate(self.servers)
        )

    def stop(self) -> None:
        """Stop every replica."""
        for server in self.servers:
            server.stop()

    def __enter__(self) -> Replicas:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def rows(database: Database, sql: str) -> list[tuple[Any, ...]]:
    """The rows a query returns, read through SQLAlchemy (on SQLite and PostgreSQL alike)."""
    with database.engine.connect() as connection:
        return [tuple(row) for row in connection.execute(text(sql))]


def execute(database: Database, sql: str) -> None:
    """Run one statement and commit it."""
    with database.engine.begin() as connection:
        connection.execute(text(sql))


def dump(database_url: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table, in a stable order: equal dumps, equal databases."""
    database = open_database(database_url)
    try:
        with database.engine.connect() as connection:
            tables = sorted(inspect(connection).get_table_names())
            return {
                table: sorted(
                    (tuple(row) for row in connection.execute(text(f"SELECT * FROM {table}"))),
                    key=repr,
                )
                for table in tables
            }
    finally:
        database.dispose()


def create_key(database_url: str, name: str, role: Role = Role.ADMIN) -> str:
    """Create an API key on a migrated database, as `rentabot keys create` does; its secret.

    In a thread of its own: the caller may be running an event loop (Playwright's)."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from rentabot.service.identity import IdentityService

    database = open_database(database_url)
    try:
        with ThreadPoolExecutor(1) as thread:
            made = thread.submit(asyncio.run, IdentityService(database).create_key(name, role))
            _, secret = made.result()
    finally:
        database.dispose()
    return secret
