"""API keys, `whoami`, the first admin key, principals and the trusted proxy header, against
real `rentabot serve` processes: several workers on SQLite, replicas on PostgreSQL, and the
installed `rentabot` commands run as an operator or a CI job would (docs/security.md).
"""

from __future__ import annotations

import http.client
import json
import math
import re
import shlex
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from rentabot.domain.identity import Role
from tests.client_support import client_environment, rentabot_command
from tests.conftest import skip_or_fail
from tests.support import (
    RENTABOT,
    V1,
    Replicas,
    Server,
    create_key,
    environment_without_settings,
    postgres_schema,
    write_descriptor,
)

pytestmark = pytest.mark.e2e

#: Five boards: ids 1 to 5, in this order.
RESOURCES = {f"board-{n}": {"tags": ["board"]} for n in range(1, 6)}
#: The single-sign-on proxy's user header, as oauth2-proxy sends it.
USER_HEADER = "X-Forwarded-User"
#: How long after a revocation commits (at the latest when `rentabot keys revoke` returns)
#: every process must refuse the key (docs/security.md: about 1 s; the tests allow 2 s).
REVOKED_WITHIN_S = 2.0
#: How long the revocation test keeps asking after that, to have a sample of refusals.
SAMPLE_S = 1.0
KEY = re.compile(r"rbk_[A-Za-z0-9_-]{43}")


def key_header(key: str) -> dict[str, str]:
    """The header that carries an API key."""
    return {"X-API-Key": key}


def rentabot(*args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `rentabot ARGS` to its end, without any RENTABOT_* setting."""
    return subprocess.run(
        rentabot_command(*args),
        env=environment_without_settings(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def descriptor(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The descriptor of every server of this module."""
    if not RENTABOT.exists():
        skip_or_fail(f"the rentabot console script is not installed at {RENTABOT}")
    return write_descriptor(tmp_path_factory.mktemp("keys") / "resources.yml", RESOURCES)


@dataclass(frozen=True)
class ModuleServers:
    """The servers several tests of this module share."""

    #: As the original was: anonymous callers may lock. It trusts X-Forwarded-User only
    #: from 10.9.9.9, a proxy that is not the test's 127.0.0.1.
    open: Server
    #: Keys everywhere (RENTABOT_ANONYMOUS_ROLE=none); it trusts X-Forwarded-User from
    #: 127.0.0.1 (requests without that header are not affected).
    keyed: Server


@pytest.fixture(scope="module")
def module_servers(
    descriptor: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ModuleServers]:
    """The module's shared servers, started at once."""
    trusting = {"RENTABOT_TRUSTED_USER_HEADER": USER_HEADER}
    both = ModuleServers(
        open=Server(
            tmp_path_factory.mktemp("open") / "rentabot.db",
            descriptor,
            env={**trusting, "RENTABOT_TRUSTED_PROXIES": "10.9.9.9"},
        ),
        keyed=Server(
            tmp_path_factory.mktemp("keyed") / "rentabot.db",
            descriptor,
            env={
                **trusting,
                "RENTABOT_TRUSTED_PROXIES": "127.0.0.1",
                "RENTABOT_ANONYMOUS_ROLE": "none",
            },
        ),
    )
    try:
        both.open.launch()
        both.keyed.launch()
        both.open.wait_ready(60)
        both.keyed.wait_ready(60)
        yield both
    finally:
        both.open.stop()
        both.keyed.stop()


@pytest.fixture
def open_server(module_servers: ModuleServers) -> Server:
    """The module's server where anonymous callers may lock."""
    return module_servers.open


@pytest.fixture
def keyed_server(module_servers: ModuleServers) -> Server:
    """The module's server with keys everywhere."""
    return module_servers.keyed


# ---------------------------------------------------------------------------------- revocation


def ask_whoami(port: int, key: str) -> tuple[int, Any]:
    """GET /api/v2/whoami with the key, on a fresh connection (so a server with several
    workers may hand it to any of them): (status, JSON answer)."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/api/v2/whoami", headers=key_header(key))
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


@dataclass
class Revocation:
    """`rentabot keys revoke` on one database: when it started and returned, and when the
    first refusal of the key came back from any process on that database."""

    started: float = math.inf
    returned: float = math.inf
    first_refused: float = math.inf
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def refused(self, received: float) -> None:
        """A process refused the key: the answer came at `received`."""
        with self._lock:
            self.first_refused = min(self.first_refused, received)

    @property
    def committed_by(self) -> float:
        """A time the revocation had committed by: when the command returned, or when some
        process first refused the key, whichever came first. Every process must refuse it
        from 2 s after that."""
        return min(self.first_refused, self.returned)

    def sampled(self, now: float) -> bool:
        """Whether SAMPLE_S of requests sent from 2 s after the commit are in."""
        return self.returned < math.inf and now >= self.committed_by + REVOKED_WITHIN_S + SAMPLE_S


@dataclass
class Prober:
    """A thread asking one server who it is with a key, on a fresh connection every ~25 ms
    (so each of several workers gets some), until its revocation is sampled; it records
    (sent, received, status) of every request."""

    label: str
    port: int
    key: str
    name: str
    revocation: Revocation
    answers: list[tuple[float, float, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        """Ask until the revocation is sampled (or after 60 s)."""
        give_up = time.monotonic() + 60
        while not self.revocation.sampled(time.monotonic()) and time.monotonic() < give_up:
            sent = time.monotonic()
            try:
                status, body = ask_whoami(self.port, self.key)
            except (OSError, http.client.HTTPException) as error:
                self.problems.append(f"{self.label}: {error!r}")
                return
            received = time.monotonic()
            if status == 200 and body.get("principal") != self.name:
                self.problems.append(f"{self.label}: a 200 that is not the key's: {body}")
            if status == 401:
                self.revocation.refused(received)
                if body.get("error", {}).get("code") != "unauthenticated":
                    self.problems.append(f"{self.label}: a 401 of another kind: {body}")
            self.answers.append((sent, received, status))
            time.sleep(0.025)

    def statuses(self, start: float = -math.inf, end: float = math.inf) -> list[int]:
        """The statuses of the requests sent in [start, end)."""
        return [status for sent, _, status in self.answers if start <= sent < end]

    def first_refusal(self) -> float:
        """When the first refusal it got arrived (inf: none)."""
        return min((got for _, got, status in self.answers if status == 401), default=math.inf)

    def report(self) -> str:
        """What it saw, in a line."""
        revocation = self.revocation
        before = len(self.statuses(end=revocation.started))
        first = self.first_refusal() - revocation.returned
        sample = len(self.statuses(start=revocation.committed_by + REVOKED_WITHIN_S))
        return (
            f"{self.label}: {before} accepted before the revocation; revoke took"
            f" {revocation.returned - revocation.started:.2f} s; first refusal {first:+.3f} s"
            f" after it returned; {sample} requests sent from 2 s after the commit"
        )


def revoke(database_url: str, name: str, revocation: Revocation) -> None:
    """`rentabot keys revoke NAME --database URL`, timed."""
    revocation.started = time.monotonic()
    done = rentabot("keys", "revoke", name, "--database", database_url)
    revocation.returned = time.monotonic()
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"key {name!r} revoked\n"


def wait_for_workers(server: Server, count: int) -> None:
    """Wait until every worker process of the server has started (start() returns once one
    answers)."""
    deadline = time.monotonic() + 60
    while server.output().count("Application startup complete") < count:
        assert time.monotonic() < deadline, f"a worker did not start:\n{server.output()}"
        time.sleep(0.05)


def revoke_while_probing(
    probers: list[Prober], name: str, databases: dict[str, Revocation]
) -> None:
    """Let the probers warm every process's cache for 1 s, revoke the key on every database
    at once, and wait for the probers to have their samples."""
    for prober in probers:
        prober.thread.start()
    time.sleep(1.0)
    revocations = [
        threading.Thread(target=revoke, args=(url, name, revocation))
        for url, revocation in databases.items()
    ]
    for thread in revocations:
        thread.start()
    for thread in revocations:
        thread.join(60)
    for prober in probers:
        prober.thread.join(60)
    for url, revocation in databases.items():
        assert revocation.returned < math.inf, f"revoking on {url} failed (the error is above)"


def test_a_revoked_key_is_refused_by_every_worker_and_replica_within_2_s(
    descriptor: Path, tmp_path: Path, servers: list[Server]
) -> None:
    """A key used on both workers of an SQLite server and on two PostgreSQL replicas (each
    caching it) is refused by every one of them from 2 s after the revocation on."""
    name = "ci-revoked"
    single = Server(tmp_path / "rentabot.db", descriptor, workers=2)
    servers.append(single)
    single.launch()  # starts while the replicas start
    with (
        postgres_schema() as postgres_url,
        Replicas(postgres_url, descriptor, 2, tmp_path) as replicas,
    ):
        servers.extend(replicas.servers)
        single.wait_ready(60)
        wait_for_workers(single, 2)
        on_sqlite, on_postgres = Revocation(), Revocation()
        sqlite_key = create_key(single.database_url, name, Role.LOCK)
        postgres_key = create_key(postgres_url, name, Role.LOCK)
        probers = [Prober("sqlite, 2 workers", single.port, sqlite_key, name, on_sqlite)]
        probers += [
            Prober(f"replica {n}", replica.port, postgres_key, name, on_postgres)
            for n, replica in enumerate(replicas.servers)
        ]
        revoke_while_probing(
            probers, name, {single.database_url: on_sqlite, postgres_url: on_postgres}
        )

    report = "\n".join(prober.report() for prober in probers)
    print(report)
    for prober in probers:
        revocation = prober.revocation
        assert prober.problems == [], report
        before = prober.statuses(end=revocation.started)
        assert len(before) >= 10, f"{prober.label}: too few requests before\n{report}"
        assert set(before) == {200}, f"{prober.label}: refused before the revocation"
        assert prober.first_refusal() < revocation.returned + REVOKED_WITHIN_S, report
        sample = prober.statuses(start=revocation.committed_by + REVOKED_WITHIN_S)
        assert len(sample) >= 15, f"{prober.label}: too small a sample\n{report}"
        assert set(sample) == {401}, (
            f"{prober.label}: {sample.count(200)} of {len(sample)} requests sent 2 s or more"
            f" after the revocation were accepted\n{report}"
        )
    for prober in probers[1:]:  # one process each: once it refuses the key, it always does
        refused_from = next(sent for sent, _, status in prober.answers if status == 401)
        assert set(prober.statuses(start=refused_from)) == {401}, f"{prober.label}\n{report}"


# ---------------------------------------------------------------------------------- the CLI


def test_keys_create_list_revoke_through_the_cli_against_a_running_server(
    descriptor: Path, tmp_path: Path, servers: list[Server]
) -> None:
    """`keys create` prints the key alone on its last line, `keys list` never shows it,
    a duplicate or an unknown name exits 1 with a message, a revoked key gets 401, and the
    server records when the key was last used (written at the latest when it stops)."""
    server = Server(tmp_path / "rentabot.db", descriptor, env={"RENTABOT_ANONYMOUS_ROLE": "none"})
    servers.append(server)
    database = ("--database", server.database_url)
    lock_1 = f"{server.url}{V1}/resources/1/lock"

    # Before the first start, as an operator may: the command makes the database.
    made = rentabot("keys", "create", "ci", "--role", "lock", *database)
    assert made.returncode == 0, made.stderr
    key = made.stdout.splitlines()[-1]
    assert KEY.fullmatch(key), made.stdout
    assert made.stdout == f"{key}\n"
    assert "created key 'ci' with role lock; it is shown only now" in made.stderr
    assert key not in made.stderr

    # Independent commands at once (each is a Python process starting up), while the
    # server starts.
    server.launch()
    with ThreadPoolExecutor(3) as pool:
        listing = pool.submit(rentabot, "keys", "list", *database)
        duplicate = pool.submit(rentabot, "keys", "create", "ci", "--role", "read", *database)
        unknown_name = pool.submit(rentabot, "keys", "revoke", "nobody", *database)
        listed, again, unknown = listing.result(), duplicate.result(), unknown_name.result()
    server.wait_ready(60)
    assert listed.returncode == 0, listed.stderr
    assert key not in listed.stdout + listed.stderr
    header, row = listed.stdout.splitlines()
    assert header.split() == ["NAME", "ROLE", "CREATED", "LAST", "USED"]
    name, role, day, clock, last_used = row.split()
    assert (name, role, last_used) == ("ci", "lock", "never")
    created = time.mktime(time.strptime(f"{day} {clock}", "%Y-%m-%d %H:%M:%S"))
    assert abs(created - time.time()) < 120, row
    assert again.returncode == 1
    assert "a key named 'ci' exists: revoke it first to replace it" in again.stderr
    assert not KEY.search(again.stdout + again.stderr)
    assert unknown.returncode == 1
    assert "No key named 'nobody' (or it is revoked already)" in unknown.stderr

    assert httpx.post(lock_1).status_code == 401  # keys everywhere: the key is what counts
    used_from = time.time()
    locked = httpx.post(lock_1, headers=key_header(key))
    used_until = time.time()
    assert locked.status_code == 200, locked.text

    revoked = rentabot("keys", "revoke", "ci", *database)
    returned = time.monotonic()
    assert (revoked.returncode, revoked.stdout) == (0, "key 'ci' revoked\n"), revoked.stderr
    while (
        refused := httpx.get(f"{server.url}/api/v2/whoami", headers=key_header(key))
    ).status_code == 200:
        # Still cached in the server (up to 1 s): a use, so the last use may be this late.
        used_until = time.time()
        assert time.monotonic() < returned + REVOKED_WITHIN_S, "the revoked key still works"
        time.sleep(0.05)
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthenticated"
    unlock = f"{server.url}{V1}/resources/1/unlock"
    token = {"lock-token": locked.json()["lock-token"]}
    assert httpx.post(unlock, params=token, headers=key_header(key)).status_code == 401

    server.stop()  # the lifespan writes when keys were last used
    final = rentabot("keys", "list", "--revoked", "--json", *database)
    assert final.returncode == 0, final.stderr
    assert key not in final.stdout
    (shown,) = json.loads(final.stdout)
    assert (shown["name"], shown["role"]) == ("ci", "lock")
    assert shown["revoked_at"] is not None
    assert shown["last_used_at"] is not None, "the server never wrote when the key was used"
    assert used_from - 0.01 <= shown["last_used_at"] <= used_until + 0.01


def test_whoami_and_rentabot_api_key_for_every_client_command(keyed_server: Server) -> None:
    """Against a server with keys everywhere: without a key `ls` fails (exit 124) saying
    what to send and `whoami` says anonymous; a wrong key fails (124); with RENTABOT_API_KEY
    set to a lock key, `whoami` names it and `ls`, `lock`, `renew`, `unlock`, `queue` and
    `run` all work."""
    url = keyed_server.url
    key = create_key(keyed_server.database_url, "ci-whoami", Role.LOCK)
    without = client_environment(url)
    with_key = client_environment(url, RENTABOT_API_KEY=key)

    def run(args: tuple[str, ...], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            rentabot_command(*args), env=env, capture_output=True, text=True, timeout=60
        )

    # Independent commands at once (each is a Python process starting up).
    with ThreadPoolExecutor(4) as pool:
        started = {
            "ls": pool.submit(run, ("ls",), without),
            "whoami": pool.submit(run, ("whoami",), without),
            "whoami key": pool.submit(run, ("whoami",), with_key),
            "whoami bad key": pool.submit(
                run, ("whoami",), client_environment(url, RENTABOT_API_KEY="rbk_" + "x" * 43)
            ),
            "ls key": pool.submit(run, ("ls", "--json"), with_key),
            "queue key": pool.submit(run, ("queue",), with_key),
            "run key": pool.submit(
                run, ("run", "--name", "board-5", "--ttl", "1m", "--", "true"), with_key
            ),
        }
        done = {what: future.result() for what, future in started.items()}

    refused = done["ls"]
    assert refused.returncode == 124, refused.stderr
    assert refused.stderr.startswith("rentabot: error: this needs the read role")
    assert "API key in the X-API-Key header" in refused.stderr
    anonymous = done["whoami"]
    assert (anonymous.returncode, anonymous.stdout) == (
        0,
        "anonymous (role none): set RENTABOT_API_KEY to use a key\n",
    ), anonymous.stderr
    wrong = done["whoami bad key"]  # a wrong key fails loudly, never taken for anonymous
    assert wrong.returncode == 124, wrong.stdout
    assert "That API key is not valid: it is unknown or revoked" in wrong.stderr
    named = done["whoami key"]
    assert (named.returncode, named.stdout) == (0, "ci-whoami (role lock, by key)\n"), named.stderr
    listed = done["ls key"]
    assert listed.returncode == 0, listed.stderr
    assert [r["name"] for r in json.loads(listed.stdout)] == list(RESOURCES)
    queue = done["queue key"]
    assert queue.returncode == 0, queue.stderr
    ran = done["run key"]
    assert ran.returncode == 0, ran.stderr

    locked = run(("lock", "--name", "board-4", "--ttl", "1m", "--json"), with_key)
    assert locked.returncode == 0, locked.stderr
    lease = json.loads(locked.stdout)
    assert lease["principal"] == "ci-whoami"
    assert [r["name"] for r in lease["resources"]] == ["board-4"]
    renewed = run(("renew", str(lease["id"]), "--token", lease["token"], "--ttl", "2m"), with_key)
    assert renewed.returncode == 0, renewed.stderr
    assert renewed.stdout.endswith("renewed, expires in 2m\n")
    unlocked = run(("unlock", str(lease["id"]), "--token", lease["token"]), with_key)
    assert (unlocked.returncode, unlocked.stdout) == (0, f"lease {lease['id']} released\n")

    with httpx.Client(base_url=url, headers=key_header(key), timeout=10) as client:
        boards = client.get("/api/v2/resources").json()["resources"]
        assert {r["name"]: r["state"] for r in boards}["board-4"] == "available"
        assert {r["state"] for r in boards} == {"available"}  # run released board-5 too
        events = client.get("/api/v2/events").json()["events"]
    # `lock` and `run` took a lease each, recorded under the key's name.
    granted = [e for e in events if e["kind"] == "granted" and e["actor"] == "ci-whoami"]
    assert sorted(e["resource_id"] for e in granted) == [4, 5]


# ---------------------------------------------------------------------------------- first admin


def test_serve_on_a_fresh_database_logs_the_command_that_makes_the_first_admin_key(
    descriptor: Path, tmp_path: Path, servers: list[Server]
) -> None:
    """`serve` on a fresh database logs the exact `keys create admin` command; run as
    printed (from another directory), it makes a key that can force-release a lock; the next
    start on that database logs no hint."""
    server = Server(tmp_path / "fresh.db", descriptor, log=tmp_path / "serve.log").start()
    servers.append(server)
    lines = server.output().splitlines()
    (at,) = [n for n, line in enumerate(lines) if "no admin key exists yet" in line]
    assert "WARNING" in lines[at]
    command = shlex.split(lines[at + 1])
    assert command[1:6] == ["keys", "create", "admin", "--role", "admin"]
    assert command[6:] == ["--database", server.database_url]
    assert Path(command[0]).name == "rentabot"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    made = subprocess.run(
        command,
        cwd=elsewhere,
        env=environment_without_settings(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert made.returncode == 0, made.stderr
    admin = made.stdout.splitlines()[-1]
    assert KEY.fullmatch(admin)
    assert list(elsewhere.iterdir()) == [], "the command made a database where it ran"

    with httpx.Client(base_url=server.url, timeout=10) as client:
        locked = client.post(f"{V1}/resources/2/lock")
        assert locked.status_code == 200, locked.text
        force = "/api/v2/resources/2/force-release"
        reason = {"reason": "e2e: the first admin"}
        assert client.post(force, json=reason).status_code == 401
        assert client.get("/api/v2/whoami", headers=key_header(admin)).json() == {
            "principal": "admin",
            "role": "admin",
            "via": "key",
        }
        forced = client.post(force, json=reason, headers=key_header(admin))
        assert forced.status_code == 200, forced.text
        assert forced.json()["resource"]["state"] == "available"
        unlock = client.post(
            f"{V1}/resources/2/unlock", params={"lock-token": locked.json()["lock-token"]}
        )
        assert unlock.status_code == 403, "the holder's token still worked after force-release"
    assert admin not in server.output()

    server.stop()
    first_run = len(server.output())
    server.start()
    restarted = server.output()[first_run:]
    assert "serving 5 resources" in restarted
    assert "no admin key" not in restarted
    assert "keys create" not in restarted


# ---------------------------------------------------------------------------------- principals


def test_request_ids_leases_and_tokens_belong_to_their_principal(
    open_server: Server,
) -> None:
    """Anonymous `gitlab-999` by alice cannot be replayed by mallory (409, no token in the
    answer); with keys, B neither releases nor sees A's lease, and A releases it by identity."""
    database = open_server.database_url
    key_a = key_header(create_key(database, "ci-a", Role.LOCK))
    key_b = key_header(create_key(database, "ci-b", Role.LOCK))
    with httpx.Client(base_url=open_server.url, timeout=10) as client:
        asked = {"select": {"ids": [3]}, "owner": "alice", "request_id": "gitlab-999"}
        first = client.post("/api/v2/leases", json=asked)
        assert first.status_code == 201, first.text
        alices = first.json()["lease"]
        for select in ({"ids": [5]}, {"ids": [3]}):
            replay = client.post(
                "/api/v2/leases", json={**asked, "select": select, "owner": "mallory"}
            )
            assert replay.status_code == 409, replay.text
            assert replay.json()["error"]["code"] == "request_id_conflict"
            assert alices["token"] not in replay.text
            assert "token" not in replay.text.lower()
        # alice's own retry is the same request: the same lease, as before keys.
        retry = client.post("/api/v2/leases", json=asked)
        assert retry.status_code == 201
        assert (retry.json()["lease"]["id"], retry.json()["lease"]["token"]) == (
            alices["id"],
            alices["token"],
        )

        taken = client.post(
            "/api/v2/leases",
            json={"select": {"ids": [1]}, "request_id": "gitlab-999"},
            headers=key_a,
        )
        assert taken.status_code == 201, taken.text
        lease = taken.json()["lease"]
        assert (lease["principal"], lease["owner"]) == ("ci-a", "ci-a")
        # The same request id is another request for another key.
        own = client.post(
            "/api/v2/leases",
            json={"select": {"ids": [2]}, "request_id": "gitlab-999"},
            headers=key_b,
        )
        assert own.status_code == 201, own.text
        assert own.json()["lease"]["id"] not in (lease["id"], alices["id"])

        path = f"/api/v2/leases/{lease['id']}"
        for stranger in (key_b, {}):
            seen = client.get(path, headers=stranger)
            assert seen.status_code == 200, seen.text
            assert seen.json()["lease"]["token"] is None
            assert lease["token"] not in seen.text
        stolen = client.delete(path, headers=key_b)
        assert stolen.status_code == 403, stolen.text
        assert lease["token"] not in stolen.text
        assert client.post(f"{path}/renew", headers=key_b).status_code == 403
        mine = client.get(path, headers=key_a).json()["lease"]
        assert (mine["state"], mine["token"]) == ("active", lease["token"])

        released = client.delete(path, headers=key_a)  # by identity: no token
        assert released.status_code == 200, released.text
        assert released.json()["lease"]["state"] == "released"
        for held, headers in (
            (alices, {"Authorization": f"Bearer {alices['token']}"}),
            (own.json()["lease"], key_b),
        ):
            assert client.delete(f"/api/v2/leases/{held['id']}", headers=headers).status_code == 200


def test_a_trusted_user_header_counts_only_from_a_trusted_proxy(
    open_server: Server, keyed_server: Server
) -> None:
    """X-Forwarded-User with a forged X-Forwarded-For from 127.0.0.1 is anonymous when only
    10.9.9.9 is trusted (serve takes the TCP peer, not the header), and alice when
    127.0.0.1 is."""
    forged = {USER_HEADER: "alice", "X-Forwarded-For": "10.9.9.9", "X-Real-IP": "10.9.9.9"}
    outside = httpx.get(f"{open_server.url}/api/v2/whoami", headers=forged, timeout=10)
    assert outside.json() == {"principal": None, "role": "lock", "via": "anonymous"}
    trusted = httpx.get(f"{keyed_server.url}/api/v2/whoami", headers=forged, timeout=10)
    assert trusted.json() == {"principal": "alice", "role": "lock", "via": "proxy"}
