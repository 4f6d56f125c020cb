"""The client's flows without a network: each step a flow asks for, and what it makes of
the answers (the same code the sync and async clients drive)."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest

from rentabot.client import LeaseEndedError, ServerUnreachableError, UnavailableError, protocol
from rentabot.client.protocol import Call, Flow, Outcome, Pause, Protocol, Reply, RetryPolicy, Steps

LEASE = {
    "id": 5,
    "token": "t",
    "state": "active",
    "acquired_at": 0.0,
    "resources": [{"id": 1, "name": "a", "fence": 2}],
}


def drive(flow: Flow[Any], answers: Iterator[Outcome]) -> tuple[Any, list[Call | Pause]]:
    """Run a flow, answering each Call with the next answer (and each Pause with None)."""
    steps = Steps(flow)
    seen: list[Call | Pause] = []
    while not steps.done:
        seen.append(steps.step)
        steps.feed(next(answers) if isinstance(steps.step, Call) else None)
    return steps.result, seen


def next_step(steps: Steps[Any]) -> Call | Pause:
    """What the flow asks for now (a function, so a type checker does not pin it)."""
    return steps.step


def test_transient_failures_are_retried_with_the_very_same_request() -> None:
    """A connection error and a 503 are retried after doubling pauses; every attempt is
    the same call (same request id)."""
    flow = Protocol("http://x", RetryPolicy(budget=60)).acquire({"tags": ["t"], "ttl": 60})
    answers: list[Outcome] = [
        ConnectionError("refused"),
        Reply(503, None, ""),
        Reply(201, {"lease": LEASE}, ""),
    ]
    lease, seen = drive(flow, iter(answers))
    assert lease.id == 5
    calls = [step for step in seen if isinstance(step, Call)]
    assert len(calls) == 3
    assert calls[0] == calls[1] == calls[2]
    assert [step.seconds for step in seen if isinstance(step, Pause)] == [0.2, 0.4]


def test_the_budget_runs_from_the_first_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    """A call that answered after 100 s and then failed is still retried with a 1 s
    budget; the budget spent, it gives up with ServerUnreachableError naming the URL."""
    clock = SimpleNamespace(now=0.0)
    monkeypatch.setattr(protocol, "time", SimpleNamespace(monotonic=lambda: clock.now))
    flow = Protocol("http://lab:5000", RetryPolicy(budget=1)).get(1, "t")
    steps = Steps(flow)
    assert isinstance(next_step(steps), Call)
    clock.now = 100.0  # a long-poll held that long, then the connection broke
    steps.feed(ConnectionResetError("reset"))
    assert next_step(steps) == Pause(0.2)
    clock.now = 100.2
    steps.feed(None)
    steps.feed(ConnectionResetError("reset"))
    assert next_step(steps) == Pause(0.4)
    clock.now = 100.6
    steps.feed(None)
    with pytest.raises(ServerUnreachableError, match=r"http://lab:5000 \(ConnectionResetError"):
        steps.feed(ConnectionResetError("reset"))


def test_a_503_that_outlasts_the_budget_is_unavailable_not_unreachable() -> None:
    """The server answers, its database does not: UnavailableError with its message."""
    flow = Protocol("http://x", RetryPolicy(budget=0)).get(1, "t")
    body = {"error": {"code": "unavailable", "message": "Database unavailable: disk"}}
    with pytest.raises(UnavailableError, match="disk"):
        drive(flow, iter([Reply(503, body, "")]))


@pytest.mark.parametrize(
    ("state", "released"),
    [("released", True), ("expired", False), ("force_released", False)],
)
def test_a_retried_release_that_finds_the_lease_ended_says_how_it_ended(
    state: str, released: bool
) -> None:
    """The first release's answer was lost; the retry gets 403 lease_ended, and the client
    reads the lease: `released` means the first attempt did it (success); `expired` or
    `force_released` mean no attempt did (LeaseEndedError naming how it ended)."""
    ended = {"error": {"code": "lease_ended", "message": f"Lease 5 has ended ({state})"}}
    now = {"lease": {**LEASE, "state": state, "resources": []}}
    flow = Protocol("http://x", RetryPolicy(budget=5)).release(5, "t")
    replies: list[Outcome] = [TimeoutError(), Reply(403, ended, ""), Reply(200, now, "")]
    answers = iter(replies)
    if released:
        lease, seen = drive(flow, answers)
        assert lease.state == "released"
        assert [s.method for s in seen if isinstance(s, Call)] == ["DELETE", "DELETE", "GET"]
    else:
        with pytest.raises(LeaseEndedError, match=state):
            drive(flow, answers)


def test_a_first_release_that_finds_the_lease_ended_is_an_error() -> None:
    """Not retried, a 403 lease_ended is LeaseEndedError at once (nothing was lost)."""
    ended = {"error": {"code": "lease_ended", "message": "Lease 5 has ended (released)"}}
    with pytest.raises(LeaseEndedError):
        drive(Protocol("http://x", RetryPolicy()).release(5, "t"), iter([Reply(403, ended, "")]))


def test_an_interrupted_wait_leaves_the_queue_and_releases_a_late_grant() -> None:
    """Ctrl-C while polling a ticket: the flow cancels the ticket; the ticket had been
    granted in the meantime, so it releases that lease too, then re-raises."""
    ticket = {"id": 9, "state": "waiting", "position": 1, "created_at": 0, "wait_until": 60}
    flow = Protocol("http://x", RetryPolicy()).acquire({"tags": ["t"], "wait": 60})
    steps = Steps(flow)
    steps.feed(Reply(202, {"ticket": ticket, "token": "tk"}, ""))
    assert isinstance(steps.step, Call)
    assert steps.step.path == "/api/v2/tickets/9"
    steps.fail(KeyboardInterrupt())
    assert (steps.step.method, steps.step.path) == ("DELETE", "/api/v2/tickets/9")
    granted = {**ticket, "state": "granted", "position": None, "lease_id": 5}
    steps.feed(Reply(200, {"ticket": granted, "token": "tk"}, ""))
    assert (steps.step.method, steps.step.path, steps.step.token) == (
        "DELETE",
        "/api/v2/leases/5",
        "tk",
    )
    with pytest.raises(KeyboardInterrupt):
        steps.feed(Reply(200, {"lease": {**LEASE, "state": "released"}}, ""))
