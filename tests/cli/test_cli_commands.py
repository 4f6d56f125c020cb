"""`rentabot ls`, `lock`, `unlock`, `renew`, `queue`: the installed command, in real
processes, against a real server."""

from __future__ import annotations

import json
import signal
import subprocess
from functools import partial

import pytest

from rentabot.client import Client
from tests.client_support import client_environment, rentabot_command, states, wait_for
from tests.support import Server

pytestmark = pytest.mark.e2e


def rentabot(server_url: str, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run `rentabot ARGS` to its end."""
    return subprocess.run(
        rentabot_command(*args),
        env=client_environment(server_url, **extra),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_ls_shows_each_resource_with_its_state_holder_and_expiry(
    server: Server, client: Client
) -> None:
    """A held resource is listed locked, with its owner and its expiry; --json says the
    same with the lease id; --tag filters."""
    lease = client.lock(tags=["listed"], ttl=600, owner="alice@bench")
    table = rentabot(server.url, "ls")
    assert table.returncode == 0, table.stderr
    (row,) = [line for line in table.stdout.splitlines() if "listed-board-1" in line]
    assert row.split()[2:5] == ["locked", "alice@bench", "in"]
    assert row.split()[5] in ("9m59s", "10m")
    assert table.stdout.splitlines()[0].split() == [
        "ID", "NAME", "STATE", "HOLDER", "EXPIRES", "TAGS"
    ]  # fmt: skip
    as_json = rentabot(server.url, "ls", "--tag", "listed", "--json")
    (listed,) = json.loads(as_json.stdout)
    assert listed["name"] == "listed-board-1"
    assert listed["holder"]["lease_id"] == lease.id
    assert listed["holder"]["owner"] == "alice@bench"
    client.release(lease)


def test_lock_prints_the_lease_and_unlock_releases_it(server: Server, client: Client) -> None:
    """`lock` prints the lease id, token and resource; `unlock ID --token T` frees it."""
    locked = rentabot(server.url, "lock", "--tag", "plain", "--ttl", "1m")
    assert locked.returncode == 0, locked.stderr
    lines = locked.stdout.splitlines()
    lease_id = lines[0].split()[1]
    token = lines[1].split()[1]
    assert lines[2].startswith("resource plain-board-1 (id ")
    assert "endpoint ssh://plain-1.lab" in lines[2]
    assert states(client, "plain") == ["locked"]
    unlocked = rentabot(server.url, "unlock", lease_id, "--token", token)
    assert (unlocked.returncode, unlocked.stdout) == (0, f"lease {lease_id} released\n")
    assert states(client, "plain") == ["available"]


def test_lock_shell_exports_what_renew_and_unlock_read(server: Server, client: Client) -> None:
    """`eval "$(rentabot lock --shell)"` sets RENTABOT_* variables (properties included);
    `renew` and `unlock` then need no arguments."""
    script = (
        'eval "$(rentabot lock --tag shell --ttl 1m --shell)" || exit 9\n'
        'echo "$RENTABOT_RESOURCE $RENTABOT_PROPERTY_JLINK_ID $RENTABOT_COUNT"\n'
        "rentabot renew --ttl 2m || exit 10\n"
        "rentabot unlock || exit 11\n"
    )
    done = subprocess.run(
        ["sh", "-c", script],
        env=client_environment(server.url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    first, renewed, released = done.stdout.splitlines()
    assert first == "shell-board-1 1 1"
    assert renewed.endswith("renewed, expires in 2m")
    assert released.endswith(" released")
    assert states(client, "shell") == ["available"]


def test_lock_json_prints_the_whole_lease(server: Server, client: Client) -> None:
    """`lock --json` prints the lease as the API gives it: id, token, resources, fences."""
    done = rentabot(server.url, "lock", "--name", "json-board-1", "--json", "--owner", "ci/42")
    lease = json.loads(done.stdout)
    assert lease["owner"] == "ci/42"
    assert lease["resources"][0]["name"] == "json-board-1"
    assert lease["resources"][0]["fence"] >= 1
    assert client.release(lease["id"], lease["token"]).state == "released"


def test_lock_wait_shows_the_queue_position_then_gets_the_lease(
    server: Server, client: Client
) -> None:
    """Waiting behind a holder, `lock --wait` prints `position 1` on stderr, and gets the
    resource once the holder releases it."""
    holder = client.lock(tags=["waited"], ttl=60)
    with subprocess.Popen(
        rentabot_command("lock", "--tag", "waited", "--wait", "30s", "--json"),
        env=client_environment(server.url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as waiting:
        assert waiting.stderr is not None
        line = waiting.stderr.readline()
        assert line == "rentabot: waiting in the queue for tags waited: position 1\n"
        client.release(holder)
        out, _ = waiting.communicate(timeout=30)
    assert waiting.returncode == 0
    lease = json.loads(out)
    assert client.release(lease["id"], lease["token"]).state == "released"


def test_a_wait_that_runs_out_exits_122_and_busy_without_wait_too(
    server: Server, client: Client
) -> None:
    """Held: `lock --wait 1s` exits 122 saying it timed out; without --wait, 122 at once,
    suggesting --wait."""
    holder = client.lock(tags=["timeout"], ttl=60)
    waited = rentabot(server.url, "lock", "--tag", "timeout", "--wait", "1s")
    assert waited.returncode == 122
    assert "timed out" in waited.stderr
    busy = rentabot(server.url, "lock", "--tag", "timeout")
    assert busy.returncode == 122
    assert "use --wait" in busy.stderr
    client.release(holder)


def test_no_such_resource_exits_121(server: Server) -> None:
    """A tag nothing carries: exit 121 and the server's reason."""
    done = rentabot(server.url, "lock", "--tag", "unobtainium")
    assert done.returncode == 121
    assert done.stderr.startswith("rentabot: error: Only 0 resource(s) carry the tags")


def test_a_ttl_above_the_servers_maximum_exits_124(server: Server) -> None:
    """The server refuses a 2 h TTL (its maximum is 1 h): exit 124 with its reason."""
    done = rentabot(server.url, "lock", "--tag", "busy", "--ttl", "2h")
    assert done.returncode == 124
    assert "rentabot: error:" in done.stderr


def test_unlock_of_an_ended_lease_exits_120(server: Server, client: Client) -> None:
    """Releasing a lease twice: the second `unlock` exits 120, saying it has ended."""
    lease = client.lock(tags=["ended"], ttl=60)
    client.release(lease)
    done = rentabot(
        server.url, "unlock", RENTABOT_LEASE_ID=str(lease.id), RENTABOT_TOKEN=lease.token
    )
    assert done.returncode == 120
    assert "has ended (released)" in done.stderr


def test_queue_lists_the_waiters_in_order(server: Server, client: Client) -> None:
    """Two `lock --wait` behind a holder: `queue` shows them at positions 1 and 2 with
    their owners (and as JSON); once they give up, nobody is waiting."""
    holder = client.lock(tags=["queued"], ttl=60)
    waiters: list[subprocess.Popen[bytes]] = []
    for owner in ("first", "second"):
        waiters.append(
            subprocess.Popen(
                rentabot_command("lock", "--tag", "queued", "--wait", "30s", "--owner", owner),
                env=client_environment(server.url),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        wait_for(partial(_queue_is, client, len(waiters)))
    table = rentabot(server.url, "queue")
    assert table.stdout.split("\n")[0].split() == [
        "POSITION", "TICKET", "PRIORITY", "OWNER", "WANTS", "WAITED", "GIVES", "UP"
    ]  # fmt: skip
    rows = [line.split() for line in table.stdout.splitlines()[1:]]
    assert [(row[0], row[3], row[4:6]) for row in rows] == [
        ("1", "first", ["1", "x"]),
        ("2", "second", ["1", "x"]),
    ]
    as_json = json.loads(rentabot(server.url, "queue", "--json").stdout)
    assert [ticket["owner"] for ticket in as_json] == ["first", "second"]
    for waiter in waiters:
        waiter.terminate()
        assert waiter.wait(10) == 143
    assert rentabot(server.url, "queue").stdout == "nobody is waiting\n"
    client.release(holder)


def test_sigterm_while_waiting_leaves_the_queue_at_once(server: Server, client: Client) -> None:
    """SIGTERM to a waiting `lock`: it exits 143 and its ticket is gone from the queue
    right away (not after the server's 10 s keep-alive)."""
    holder = client.lock(tags=["sigterm"], ttl=60)
    with subprocess.Popen(
        rentabot_command("lock", "--tag", "sigterm", "--wait", "60s"),
        env=client_environment(server.url),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as waiting:
        assert waiting.stderr is not None
        assert "position 1" in waiting.stderr.readline()
        waiting.send_signal(signal.SIGTERM)
        assert waiting.wait(10) == 143
    assert client.queue() == []
    client.release(holder)


def _queue_is(client: Client, length: int) -> bool:
    return len(client.queue()) == length
