"""The Python client against a real `rentabot serve` process, over real HTTP."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from rentabot.client import (
    BusyError,
    Client,
    InvalidRequestError,
    LeaseEndedError,
    LeaseLostError,
    LeaseNotFoundError,
    NotFoundError,
    NotGrantedError,
    NotHolderError,
    RequestIdReusedError,
    ServerUnreachableError,
)
from rentabot.client.aio import AsyncClient
from tests.client_support import AnswerDroppingProxy, lab_server, losing_acquires, states, wait_for
from tests.support import ROOT, Server, free_port

pytestmark = pytest.mark.e2e

#: One board per test (tests share the server, never a board).
NAMES = ["solo", "errors", "queue", "timeout", "context", "raises", "lost", "retry"]
TAGS = dict.fromkeys([*NAMES, "reused", "sigterm", "async", "expired"], 1)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A board `<name>-board-1` tagged `<name>` for each test (see `lab_server`)."""
    with lab_server(tmp_path_factory.mktemp("client"), TAGS) as running:
        yield running


@pytest.fixture
def client(server: Server) -> Iterator[Client]:
    """A client of the module's server, retrying for at most 3 s."""
    with Client(server.url, retry_for=3) as made:
        yield made


def _grants(server: Server, resource_name: str) -> int:
    """How many times the server granted the resource (its audit trail)."""
    resources = httpx.get(f"{server.url}/api/v2/resources").json()["resources"]
    (resource_id,) = [r["id"] for r in resources if r["name"] == resource_name]
    events = httpx.get(
        f"{server.url}/api/v2/events", params={"resource_id": resource_id, "limit": 1000}
    ).json()["events"]
    return sum(1 for event in events if event["kind"] == "granted")


def test_lock_renew_and_release_hold_then_free_the_resource(client: Client) -> None:
    """A lock by tag holds the resource (with endpoint, properties, fence); a renewal
    moves its deadline; a release frees it, and a second release says it has ended."""
    lease = client.lock(tags=["solo"], ttl=60, owner="tests", description="round trip")
    assert lease.active
    (held,) = lease.resources
    assert (held.name, held.endpoint) == ("solo-board-1", "ssh://solo-1.lab")
    assert held.properties == {"serial": "solo1", "jlink-id": "1"}
    assert held.fence >= 1
    assert states(client, "solo") == ["locked"]
    (listed,) = [r for r in client.resources(tags=["solo"]) if r.id == held.id]
    assert listed.holder is not None
    assert (listed.holder.lease_id, listed.holder.owner) == (lease.id, "tests")
    assert listed.holder.expires_at == lease.expires_at
    renewed = client.renew(lease, ttl=600)
    assert renewed.expires_at is not None
    assert lease.expires_at is not None
    assert renewed.expires_at > lease.expires_at + 500
    released = client.release(lease)
    assert released.state == "released"
    assert states(client, "solo") == ["available"]
    with pytest.raises(LeaseEndedError):
        client.release(lease)


def test_server_errors_arrive_as_the_documented_tree(client: Client) -> None:
    """404, 409, 403 and 422 answers become NotFoundError, BusyError, NotHolderError
    (LeaseEndedError, LeaseNotFoundError) and InvalidRequestError, with the server's code."""
    with pytest.raises(NotFoundError) as missing:
        client.lock(tags=["no-such-tag"])
    assert missing.value.status == 404
    lease = client.lock(tags=["errors"], ttl=60)
    with pytest.raises(BusyError) as busy:
        client.lock(tags=["errors"], ttl=60)
    assert (busy.value.status, busy.value.code) == (409, "busy")
    with pytest.raises(NotHolderError) as wrong:
        client.renew(lease.id, "not-the-token")
    assert wrong.value.code == "not_holder"
    with pytest.raises(LeaseNotFoundError):
        client.get(10**9, "whatever")
    with pytest.raises(InvalidRequestError) as too_long:
        client.lock(tags=["errors"], ttl=7200)  # the server's maximum is an hour
    assert too_long.value.status == 422
    client.release(lease)


def test_a_waiter_sees_its_queue_position_and_gets_the_lease_once_freed(
    client: Client, server: Server
) -> None:
    """Behind a holder and another waiter, a waiter reports position 2, then 1, and gets
    the resource when it is its turn."""
    holder = client.lock(tags=["queue"], ttl=60)
    positions: list[int] = []
    got: dict[str, int] = {}

    def wait(name: str, report: bool) -> None:
        with Client(server.url, retry_for=3) as own:
            lease = own.lock(
                tags=["queue"],
                ttl=60,
                wait=30,
                owner=name,
                on_progress=positions.append if report else None,
            )
            got[name] = lease.id
            if name == "first":
                # Hold on until the second waiter has reported its move to the front.
                wait_for(lambda: positions == [2, 1])
            own.release(lease)

    first = threading.Thread(target=wait, args=("first", False))
    first.start()
    wait_for(lambda: len(client.queue()) == 1)
    second = threading.Thread(target=wait, args=("second", True))
    second.start()
    wait_for(lambda: positions == [2])
    client.release(holder)
    first.join(30)
    second.join(30)
    assert positions == [2, 1]
    assert got["first"] < got["second"]
    assert client.queue() == []


def test_a_wait_that_runs_out_raises_not_granted_with_reason_and_position(
    client: Client,
) -> None:
    """Waiting 1 s for a held resource: NotGrantedError, reason timed_out, position 1;
    the client left the queue."""
    holder = client.lock(tags=["timeout"], ttl=60)
    started = time.monotonic()
    with pytest.raises(NotGrantedError) as refused:
        client.lock(tags=["timeout"], ttl=60, wait=1)
    assert 0.9 < time.monotonic() - started < 6
    assert (refused.value.reason, refused.value.position) == ("timed_out", 1)
    assert client.queue() == []
    client.release(holder)


def test_the_lease_context_renews_past_its_ttl_and_releases_at_the_end(client: Client) -> None:
    """A 1 s lease kept for 1.7 s is still active inside the block (renewed), and is
    released when the block ends."""
    with client.lease(tags=["context"], ttl=1) as held:
        time.sleep(1.7)
        assert client.get(held.lease).state == "active"
        assert not held.lost
        first_deadline = held.expires_at
    assert client.get(held.lease).state == "released"
    assert first_deadline is not None
    assert held.lease.ttl == 1
    assert states(client, "context") == ["available"]


def test_the_lease_context_releases_when_the_block_raises(client: Client) -> None:
    """An exception in the block propagates, and the lease is released anyway."""
    with pytest.raises(RuntimeError, match="flash failed"), client.lease(tags=["raises"]) as held:
        raise RuntimeError("flash failed")
    assert client.get(held.lease).state == "released"
    assert states(client, "raises") == ["available"]


def test_a_force_released_lease_is_signalled_lost(client: Client, server: Server) -> None:
    """An operator force-releases a kept lease: the next renewal finds it ended, `lost`
    turns true, `on_lost` is called, and the block's end raises LeaseLostError."""
    signalled: list[LeaseLostError] = []
    with (  # noqa: PT012  (the raise comes at the block's end, which is what is tested)
        pytest.raises(LeaseLostError) as lost,
        client.lease(tags=["lost"], ttl=1.5, on_lost=signalled.append) as held,
    ):
        with Client(server.url, server.key(), retry_for=3) as admin:
            admin.force_release(held.resources[0].id, reason="bench rewired")
        assert held.wait_lost(5), "the loss was not noticed"
        assert held.lost
        with pytest.raises(LeaseLostError):
            held.check()
    assert lost.value.lease_id == held.id
    assert "force_released" in lost.value.message
    assert len(signalled) == 1


def test_a_lost_answer_is_retried_with_the_same_request_id_and_never_takes_two_leases(
    server: Server,
) -> None:
    """The first two answers to the acquire are lost on the way back (the server did
    grant); the client retries with the same request id and gets that one lease."""

    with (
        AnswerDroppingProxy(server.port, losing_acquires(2)) as proxy,
        Client(proxy.url, retry_for=5) as client,
    ):
        lease = client.lock(tags=["retry"], ttl=60)
        assert len(proxy.dropped) == 2
        assert _grants(server, "retry-board-1") == 1
        assert client.get(lease).state == "active"
        client.release(lease)


def test_a_request_id_whose_lease_ended_is_refused_clearly(client: Client) -> None:
    """Asking again with the request id of a released lease does not answer that dead
    lease as if it were held: RequestIdReusedError names the lease and its end."""
    first = client.lock(tags=["reused"], ttl=60, request_id="job-77")
    again = client.lock(tags=["reused"], ttl=60, request_id="job-77")
    assert again.id == first.id
    client.release(first)
    with pytest.raises(RequestIdReusedError) as reused:
        client.lock(tags=["reused"], ttl=60, request_id="job-77")
    assert (reused.value.lease_id, reused.value.state) == (first.id, "released")
    assert states(client, "reused") == ["available"]


def test_an_unreachable_server_raises_after_the_retry_budget() -> None:
    """Nobody listens: ServerUnreachableError naming the URL, after about the 1 s budget."""
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with Client(url, retry_for=1) as client, pytest.raises(ServerUnreachableError) as error:
        client.lock(tags=["any"])
    assert 0.3 < time.monotonic() - started < 5
    assert url in error.value.message
    assert "attempts" in error.value.message


def test_sigterm_inside_the_lease_context_releases_before_exiting(
    server: Server, tmp_path: Path
) -> None:
    """A program killed with SIGTERM inside `with client.lease()` exits 143, and has
    released its lease first."""
    script = tmp_path / "job.py"
    script.write_text(
        textwrap.dedent(
            f"""
            import sys, time
            from rentabot.client import Client
            with Client({server.url!r}) as client:
                with client.lease(tags=["sigterm"], ttl=60) as held:
                    print(held.id, flush=True)
                    time.sleep(60)
            """
        )
    )
    with subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, text=True, cwd=ROOT
    ) as job:
        assert job.stdout is not None
        lease_id = int(job.stdout.readline())
        job.send_signal(signal.SIGTERM)
        assert job.wait(10) == 143
    with Client(server.url) as client:
        assert states(client, "sigterm") == ["available"]
    # That very lease was released (not left to expire): its public view says so.
    lease = httpx.get(f"{server.url}/api/v2/leases/{lease_id}", timeout=10).json()["lease"]
    assert lease["state"] == "released"


@pytest.mark.anyio
async def test_the_async_client_keeps_and_releases_a_lease(server: Server) -> None:
    """`async with AsyncClient(...).lease()` renews a 1 s lease past its TTL and releases
    it at the end."""
    import anyio

    async with AsyncClient(server.url, retry_for=3) as client:
        async with client.lease(tags=["async"], ttl=1) as held:
            await anyio.sleep(1.7)
            assert (await client.get(held.lease)).state == "active"
        assert (await client.get(held.lease)).state == "released"
        (resource,) = await client.resources(["async"])
        assert resource.state == "available"


def test_a_lease_that_expires_while_kept_is_signalled_lost(client: Client) -> None:
    """A kept lease renewed too late (every 1.5 s, TTL 1 s) is found expired by its first
    renewal and signalled lost."""
    lease = client.lock(tags=["expired"], ttl=1)
    held = client.keep(lease, every=1.5)
    try:
        assert held.wait_lost(8)
        assert held.error is not None
        assert "expired" in held.error.message
    finally:
        held.stop()
    with pytest.raises(LeaseEndedError):
        client.release(lease)
