"""`rentabot run`: the installed command, in real processes, against a real server."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from rentabot.client import Client
from tests.client_support import AnswerDroppingProxy, client_environment, rentabot_command, states
from tests.support import Server, free_port

pytestmark = pytest.mark.e2e


def run(url: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`rentabot run ARGS` to its end."""
    return subprocess.run(
        rentabot_command("run", *args),
        env=client_environment(url),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=cwd,
    )


def start(url: str, *args: str, cwd: Path) -> subprocess.Popen[str]:
    """`rentabot run ARGS` in the background, in its own session (signals stay ours)."""
    return subprocess.Popen(
        rentabot_command("run", *args),
        env=client_environment(url),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=cwd,
        start_new_session=True,
    )


def _wait_for_file(path: Path, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        assert time.monotonic() < deadline, f"{path.name} never appeared"
        time.sleep(0.02)
    return path.read_text()


def _alive(pid: int) -> bool:
    """Whether a process runs (a zombie nobody reaped yet counts as dead)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


def test_run_gives_the_command_its_lease_in_the_environment(
    server: Server, client: Client, tmp_path: Path
) -> None:
    """Two boards by tag: the command sees the token, lease id, URL, count, and each
    board's name, fence, endpoint and properties (unindexed: the first one); both are
    locked while it runs and free after."""
    done = run(
        server.url,
        *("--tag", "run-env", "--count", "2", "--ttl", "30s"),
        *("--", "sh", "-c", "env > environment; rentabot ls --tag run-env > listing"),
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    seen = dict(
        line.split("=", 1)
        for line in (tmp_path / "environment").read_text().splitlines()
        if line.startswith("RENTABOT_")
    )
    lease = client.get(int(seen["RENTABOT_LEASE_ID"]), seen["RENTABOT_TOKEN"])
    assert lease.state == "released"
    assert seen["RENTABOT_URL"] == server.url
    assert seen["RENTABOT_COUNT"] == "2"
    assert seen["RENTABOT_RESOURCE_0"] == seen["RENTABOT_RESOURCE"] == "run-env-board-1"
    assert seen["RENTABOT_RESOURCE_1"] == "run-env-board-2"
    assert seen["RENTABOT_ENDPOINT_1"] == "ssh://run-env-2.lab"
    assert seen["RENTABOT_ENDPOINT"] == "ssh://run-env-1.lab"
    assert seen["RENTABOT_PROPERTY_SERIAL"] == seen["RENTABOT_PROPERTY_0_SERIAL"] == "run-env1"
    assert seen["RENTABOT_PROPERTY_1_JLINK_ID"] == "2"
    assert int(seen["RENTABOT_FENCE_1"]) >= 1
    assert seen["RENTABOT_FENCE"] == seen["RENTABOT_FENCE_0"]
    listing = (tmp_path / "listing").read_text()
    assert listing.count(" locked ") == 2
    assert states(client, "run-env") == ["available", "available"]
    assert done.stderr.splitlines()[-1] == f"rentabot: released lease {lease.id}"


def test_run_exits_with_the_commands_status(server: Server, client: Client) -> None:
    """Exit 7 gives 7; killed by SIGUSR1 gives 128 + 10, as a shell says (that one locks
    by --id); released both times."""
    assert run(server.url, "--tag", "run-status", "--", "sh", "-c", "exit 7").returncode == 7
    board = str(client.resources(["run-status"])[0].id)
    killed = run(server.url, "--id", board, "--", "sh", "-c", "kill -USR1 $$")
    assert killed.returncode == 128 + signal.SIGUSR1
    assert states(client, "run-status") == ["available", "available"]


def test_sigterm_to_run_reaches_the_command_and_releases_the_lease(
    server: Server, client: Client, tmp_path: Path
) -> None:
    """SIGTERM to `rentabot run` (not to the command) is passed on; the command's own
    exit status comes back, and the lease is released."""
    script = (
        'trap "echo terminated > got; exit 3" TERM; echo go > ready; while :; do sleep 0.1; done'
    )
    with start(server.url, "--tag", "run-sigterm", "--", "sh", "-c", script, cwd=tmp_path) as job:
        _wait_for_file(tmp_path / "ready")
        assert states(client, "run-sigterm") == ["locked", "available"]
        job.send_signal(signal.SIGTERM)
        assert job.wait(20) == 3
    assert (tmp_path / "got").read_text() == "terminated\n"
    assert states(client, "run-sigterm") == ["available", "available"]


def test_a_lease_revoked_by_an_operator_stops_the_command_and_everything_it_started(
    server: Server, client: Client, admin: Client, tmp_path: Path
) -> None:
    """Force-released by an operator: the next renewal sees it, the command (which
    ignores SIGTERM) and its background child get SIGKILL after --kill-after, and run
    exits 120 saying why."""
    script = 'trap "" TERM; sleep 60 & echo $! > child; echo go > ready; wait; wait'
    with start(
        server.url,
        *("--tag", "run-revoked", "--ttl", "1.5s", "--kill-after", "0.5s"),
        *("--", "sh", "-c", script),
        cwd=tmp_path,
    ) as job:
        _wait_for_file(tmp_path / "ready")
        grandchild = int(_wait_for_file(tmp_path / "child"))
        resource = client.resources(["run-revoked"])[0]
        admin.force_release(resource.id, reason="rewiring")
        revoked_at = time.monotonic()
        assert job.wait(20) == 120
        assert time.monotonic() - revoked_at < 6
        assert job.stderr is not None
        errors = job.stderr.read()
    assert "force_released" in errors
    assert "stopping the command" in errors
    assert not _alive(grandchild)


def test_when_the_command_dies_of_the_stop_what_it_started_is_killed_with_it(
    server: Server, client: Client, admin: Client, tmp_path: Path
) -> None:
    """The lease is revoked; the command stops on SIGTERM at once, but a background child
    of it ignores SIGTERM: it gets SIGKILL as soon as the command is gone, not after the
    60 s of --kill-after."""
    script = "sh -c 'trap \"\" TERM; exec sleep 60' & echo $! > child; echo go > ready; wait"
    with start(
        server.url,
        *("--tag", "run-revoked", "--ttl", "1.5s", "--kill-after", "60s"),
        *("--", "sh", "-c", script),
        cwd=tmp_path,
    ) as job:
        _wait_for_file(tmp_path / "ready")
        orphan = int(_wait_for_file(tmp_path / "child"))
        admin.force_release(client.resources(["run-revoked"])[0].id, reason="rewiring")
        assert job.wait(20) == 120
    assert not _alive(orphan)


def test_a_lease_that_cannot_be_renewed_expires_and_stops_the_command(
    server: Server, client: Client, tmp_path: Path
) -> None:
    """The network to the server goes down: renewals fail until the lease's deadline,
    then the command is stopped and run exits 120; the server expires the lease too."""
    with (
        AnswerDroppingProxy(server.port, lambda _line: False) as proxy,
        start(
            proxy.url,
            *("--tag", "run-expired", "--ttl", "1.5s", "--retry-for", "0.5s"),
            *("--", "sh", "-c", "echo go > ready; exec sleep 60"),
            cwd=tmp_path,
        ) as job,
    ):
        _wait_for_file(tmp_path / "ready")
        proxy.cut.set()
        cut_at = time.monotonic()
        assert job.wait(20) == 120
        assert time.monotonic() - cut_at < 6
        assert job.stderr is not None
        errors = job.stderr.read()
    assert "could not be renewed before it expired" in errors
    deadline = time.monotonic() + 5
    while states(client, "run-expired") != ["available", "available"]:
        assert time.monotonic() < deadline, "the server never expired the lease"
        time.sleep(0.05)


def test_run_waits_in_the_queue_showing_its_position(
    server: Server, client: Client, tmp_path: Path
) -> None:
    """Both boards held: run prints its queue position, runs the command once one is
    released, then releases it."""
    holders = [client.lock(tags=["run-queue"], ttl=60) for _ in range(2)]
    with start(
        server.url, "--tag", "run-queue", "--wait", "30s", "--", "touch", "ran", cwd=tmp_path
    ) as job:
        assert job.stderr is not None
        assert job.stderr.readline() == (
            "rentabot: waiting in the queue for tags run-queue: position 1\n"
        )
        assert not (tmp_path / "ran").exists()
        client.release(holders[0])
        assert job.wait(30) == 0
    assert (tmp_path / "ran").exists()
    client.release(holders[1])
    assert states(client, "run-queue") == ["available", "available"]


def test_sigterm_while_waiting_leaves_the_queue_without_running_the_command(
    server: Server, client: Client, tmp_path: Path
) -> None:
    """SIGTERM while run waits: exit 143, the queue is empty at once, nothing ran."""
    holders = [client.lock(tags=["run-queue"], ttl=60) for _ in range(2)]
    with start(
        server.url, "--tag", "run-queue", "--wait", "60s", "--", "touch", "ran", cwd=tmp_path
    ) as job:
        assert job.stderr is not None
        assert "position 1" in job.stderr.readline()
        job.send_signal(signal.SIGTERM)
        assert job.wait(10) == 143
    assert client.queue() == []
    assert not (tmp_path / "ran").exists()
    for holder in holders:
        client.release(holder)


def test_refusals_have_their_own_exit_codes_and_never_run_the_command(
    server: Server, client: Client, tmp_path: Path
) -> None:
    """Timed out waiting: 122. No such resource: 121. Server unreachable: 123 within the
    retry budget, naming the URL and where it comes from. The command never runs."""
    holders = [client.lock(tags=["run-refused"], ttl=60) for _ in range(2)]
    command = ("--", "touch", "ran")
    waited = run(server.url, "--tag", "run-refused", "--wait", "0.5s", *command, cwd=tmp_path)
    assert waited.returncode == 122
    assert "timed out" in waited.stderr
    missing = run(server.url, "--name", "no-such-board", *command, cwd=tmp_path)
    assert missing.returncode == 121
    nowhere = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    unreachable = run(
        nowhere, "--tag", "run-refused", "--retry-for", "0.5s", *command, cwd=tmp_path
    )
    assert unreachable.returncode == 123
    assert time.monotonic() - started < 10
    assert f"cannot reach the rentabot server at {nowhere}" in unreachable.stderr
    assert "check --url or RENTABOT_URL" in unreachable.stderr
    assert not (tmp_path / "ran").exists()
    for holder in holders:
        client.release(holder)
