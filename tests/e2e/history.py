"""Histories of leases taken by many clients of a real server, and the checks they must pass.

Clients (`Worker`) record every acknowledged grant (`Grant`): its lease, token, resources
with fences, when the request was sent and when the grant's answer arrived, its deadlines,
renewals and release. `check_history` then proves, from the history alone, that no resource
was held by two leases at once and that fences increase in grant order; `audit` asks the
server what became of every lease and compares it with the listing of locked resources.

Client times are `time.monotonic()`. The server's times (`expires_at`, `ended_at`) are wall
clock; one offset, measured when the `History` is created, converts between the two.
"""

from __future__ import annotations

import itertools
import math
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.support import V1

Json = dict[str, Any]

#: RENTABOT_LONG_POLL_SECONDS and RENTABOT_QUEUE_KEEPALIVE of the servers these tests start.
LONG_POLL_S = 1.0
KEEPALIVE_S = 2.0
#: Every v1 lock asks for this lease time (`?ttl=`).
V1_TTL_S = 2.0
#: An unrenewed lease ends within this long after its deadline (the docs say about 0.25 s).
GRACE_S = 1.0
#: How long a single request may take before the client gives up (then: unknown outcome).
REQUEST_TIMEOUT_S = 15.0
#: Bounds of one worker's loops.
MAX_EPISODES = 400
MAX_POLLS = 40
#: A ticket must be granted or refused within its wait plus this.
TICKET_SLACK_S = 5.0
#: Tolerance of the sanity checks that compare the server's clock with the client's (both
#: read the same wall clock; the offset between the client's clocks is measured once).
#: Never used where it could hide a double grant.
CLOCK_TOLERANCE_S = 0.01


def auth(token: str) -> dict[str, str]:
    """The header that carries a lease or ticket token."""
    return {"Authorization": f"Bearer {token}"}


# ---------------------------------------------------------------------------------- records


@dataclass(frozen=True)
class Selection:
    """What an acquire asks for: the `select` body, the resources that may satisfy it, and how
    many it gets."""

    body: Json
    candidates: frozenset[int]
    count: int

    def allows(self, resources: frozenset[int]) -> bool:
        """Whether a grant of exactly these resources satisfies the request."""
        return len(resources) == self.count and resources <= self.candidates


@dataclass
class Renewal:
    """One answered renewal: when it was sent and answered, and the deadline it tried to
    extend."""

    sent_at: float
    answered_at: float
    deadline_before: float
    outcome: str  # "ok" or "refused"


@dataclass
class Grant:
    """An acknowledged grant and what its holder did with it."""

    key: str
    api: str  # "v1" or "v2"
    worker: int
    token: str
    #: Resource id → fence of this grant (None: the v1 answer shows no fence).
    fences: dict[int, int | None]
    #: When the request that led to it was first sent, and when the grant's answer arrived.
    sent_at: float
    granted_at: float
    ttl: float | None
    #: Wall-clock deadlines: the grant's, then each successful renewal's. A v1 answer shows
    #: none: its deadline is the server's clock at the lock plus `?ttl=`, so at least
    #: `sent + ttl` (recorded here) and at most that plus `deadline_slack`.
    deadlines: list[float] = field(default_factory=list)
    deadline_slack: float = 0.0
    lease_id: int | None = None
    via_ticket: bool = False
    recovered: bool = False
    renewals: list[Renewal] = field(default_factory=list)
    #: A renewal was sent whose answer never came (the server was killed).
    renew_unknown: bool = False
    #: None (never sent), "ok" (answered 200), "refused" (the lease had ended), "unknown".
    release: str | None = None
    release_sent_at: float | None = None
    release_answered_at: float | None = None

    @property
    def expires_at(self) -> float | None:
        """The last deadline the client knows (wall clock), None for a lease without TTL."""
        return self.deadlines[-1] if self.deadlines else None

    @property
    def latest_deadline(self) -> float | None:
        """The latest the deadline can be: the v1 answer's uncertainty added."""
        return None if self.expires_at is None else self.expires_at + self.deadline_slack


@dataclass(frozen=True)
class Unknown:
    """A request whose answer never came: it may or may not have happened. A lease it created
    holds what `selection` allows; its token is known only for a ticket already queued."""

    kind: str
    selection: Selection
    token: str | None
    sent_at: float


class History:
    """Everything the clients were told, shared by the worker threads."""

    def __init__(self) -> None:
        # The one conversion between the clients' monotonic clock and the wall clock.
        self.offset = time.time() - time.monotonic()
        self.grants: list[Grant] = []
        self.unknown: list[Unknown] = []
        self.problems: list[str] = []
        #: Wall-clock spans with no server running (a kill until the restart answered).
        self.downtime: list[tuple[float, float]] = []
        self._lock = threading.Lock()

    def to_wall(self, monotonic: float) -> float:
        """A client time on the server's clock."""
        return monotonic + self.offset

    def add(self, grant: Grant) -> None:
        """Record an acknowledged grant."""
        with self._lock:
            self.grants.append(grant)

    def lost(self, unknown: Unknown) -> None:
        """Record a request whose outcome is unknown."""
        with self._lock:
            self.unknown.append(unknown)

    def problem(self, text: str) -> None:
        """Record a broken promise seen while running."""
        with self._lock:
            self.problems.append(text)

    def near_downtime(self, deadline: float) -> bool:
        """Whether a deadline fell while no server ran (or just before), so that its expiry
        could only happen after the restart."""
        return any(start - GRACE_S <= deadline <= end for start, end in self.downtime)


# ---------------------------------------------------------------------------------- the checker


def hold_end(grant: Grant, offset: float) -> float:
    """When the holder's hold ends (monotonic): its release was sent, or its last known
    deadline passed; never, for a lease without TTL that was not released."""
    ends = [math.inf]
    if grant.expires_at is not None:
        ends.append(grant.expires_at - offset)
    if grant.release in ("ok", "unknown") and grant.release_sent_at is not None:
        ends.append(grant.release_sent_at)
    return min(ends)


def _check_lease(grant: Grant, offset: float) -> list[str]:
    """What one lease's own history must satisfy: renewals and releases refused exactly when
    its deadline had passed."""
    problems: list[str] = []
    if grant.api == "v2" and (grant.ttl is None) != (grant.expires_at is None):
        problems.append(f"{grant.key}: ttl {grant.ttl} but deadline {grant.expires_at}")
    for renewal in grant.renewals:
        if renewal.outcome == "ok" and renewal.sent_at + offset >= renewal.deadline_before:
            problems.append(
                f"{grant.key}: renewed by a request sent {renewal.sent_at + offset:.3f},"
                f" after its deadline {renewal.deadline_before:.3f}"
            )
        if renewal.outcome == "refused" and renewal.answered_at + offset < renewal.deadline_before:
            problems.append(
                f"{grant.key}: renewal refused at {renewal.answered_at + offset:.3f},"
                f" before its deadline {renewal.deadline_before:.3f}"
            )
    latest = grant.latest_deadline
    if (
        grant.release == "ok"
        and grant.release_sent_at is not None
        and latest is not None
        and grant.release_sent_at + offset >= latest
    ):
        problems.append(
            f"{grant.key}: released by a request sent {grant.release_sent_at + offset:.3f},"
            f" after its deadline {latest:.3f}"
        )
    if grant.release == "refused":
        if grant.expires_at is None:
            problems.append(f"{grant.key}: release refused, but the lease has no deadline")
        elif (
            grant.release_answered_at is not None
            and grant.release_answered_at + offset < grant.expires_at
        ):
            problems.append(
                f"{grant.key}: release refused at {grant.release_answered_at + offset:.3f},"
                f" before its deadline {grant.expires_at:.3f}"
            )
    return problems


@dataclass(frozen=True)
class Hold:
    """One resource held by one grant, from its answer to its end (monotonic)."""

    grant: Grant
    start: float
    end: float
    fence: int | None

    @property
    def empty(self) -> bool:
        """The grant's answer arrived after its hold had already ended."""
        return self.end <= self.start


def check_history(grants: Sequence[Grant], offset: float) -> list[str]:
    """Every broken promise in a history: a resource held by two leases at once, a fence
    repeated or out of grant order, a lease granted twice, a renewal or release answered
    against its deadline. Empty when the history is consistent."""
    problems: list[str] = []
    for attribute in ("key", "token"):
        seen = Counter(getattr(grant, attribute) for grant in grants)
        problems += [f"{attribute} {k} granted {n} times" for k, n in seen.items() if n > 1]
    holds: dict[int, list[Hold]] = defaultdict(list)
    for grant in grants:
        problems += _check_lease(grant, offset)
        end = hold_end(grant, offset)
        for resource_id, fence in grant.fences.items():
            holds[resource_id].append(Hold(grant, grant.granted_at, end, fence))
    for resource_id, resource_holds in sorted(holds.items()):
        problems += _check_overlaps(resource_id, resource_holds)
        problems += _check_fences(resource_id, resource_holds)
    return problems


def _check_overlaps(resource_id: int, holds: list[Hold]) -> list[str]:
    problems: list[str] = []
    latest: Hold | None = None
    for hold in sorted(holds, key=lambda h: h.start):
        if hold.empty:
            continue
        if latest is not None and hold.start < latest.end:
            problems.append(
                f"resource {resource_id}: {hold.grant.key} (fence {hold.fence}) granted at"
                f" {hold.start:.3f} while {latest.grant.key} (fence {latest.fence}) held it"
                f" until {latest.end:.3f}"
            )
        if latest is None or hold.end > latest.end:
            latest = hold
    return problems


def _check_fences(resource_id: int, holds: list[Hold]) -> list[str]:
    problems: list[str] = []
    fenced = sorted((h for h in holds if h.fence is not None), key=lambda h: h.fence or 0)
    unfenced = [h for h in holds if h.fence is None and not h.empty]
    for first, second in itertools.pairwise(fenced):
        assert first.fence is not None
        assert second.fence is not None
        where = f"resource {resource_id}: fences {first.fence} ({first.grant.key}) and"
        where += f" {second.fence} ({second.grant.key})"
        if first.fence == second.fence:
            problems.append(f"{where}: the same fence granted twice")
            continue
        # The server grants the smaller fence first, so its request was sent before the
        # larger one's answer arrived.
        if second.start <= first.grant.sent_at:
            problems.append(f"{where}: the larger fence arrived before the smaller was asked")
        if not first.empty and not second.empty:
            if second.end <= first.start:
                problems.append(f"{where}: the larger fence was held before the smaller")
            elif first.end <= second.start:
                # Every v1 lock held in between took a fence of its own.
                between = sum(first.end <= h.start and h.end <= second.start for h in unfenced)
                if between > second.fence - first.fence - 1:
                    problems.append(f"{where}: {between} v1 locks held between them")
    return problems


# ---------------------------------------------------------------------------------- the audit


@dataclass
class Audit:
    """What the server says became of every lease."""

    problems: list[str] = field(default_factory=list)
    states: Counter[str] = field(default_factory=Counter)


def holders(client: httpx.Client) -> dict[int, str | None]:
    """Resource id → the token holding it (the server must expose lock tokens)."""
    answer = client.get(f"{V1}/resources")
    assert answer.status_code == 200, answer.text
    found = {r["id"]: r["lock-token"] for r in answer.json()["resources"]}
    assert "hidden" not in found.values(), "start the server with RENTABOT_EXPOSE_LOCK_TOKENS"
    return found


def _match(holders_of: dict[str, frozenset[int]], unknown: Sequence[Unknown]) -> dict[str, Unknown]:
    """Assign each unexplained holder (token → resources) to a distinct unknown-outcome
    request that could have created it (augmenting paths: the sets are small)."""
    owner: dict[int, str] = {}

    def place(token: str, visited: set[int]) -> bool:
        for index, request in enumerate(unknown):
            if index in visited or not request.selection.allows(holders_of[token]):
                continue
            visited.add(index)
            if index not in owner or place(owner[index], visited):
                owner[index] = token
                return True
        return False

    for token in holders_of:
        place(token, set())
    return {token: unknown[index] for index, token in owner.items()}


#: The unknown-outcome requests that may have created a lease.
ACQUIRES = ("acquire", "v1 lock")


def explain_holders(
    held: dict[int, str | None], history: History, listing_sent: float, result: Audit
) -> None:
    """Every locked resource is held by a known lease that holds it and was not released
    before the listing, or by what an unknown-outcome request may have created."""
    problems = result.problems
    by_token = {grant.token: grant for grant in history.grants}
    tickets = {u.token: u for u in history.unknown if u.token is not None}
    unexplained: dict[str, set[int]] = defaultdict(set)
    for resource_id, token in sorted(held.items()):
        if token is None:
            continue
        grant = by_token.get(token)
        if grant is None:
            unexplained[token].add(resource_id)
        elif resource_id not in grant.fences:
            problems.append(f"resource {resource_id} is held by {grant.key}, not granted it")
        elif (
            grant.release == "ok"
            and grant.release_answered_at is not None
            and grant.release_answered_at < listing_sent
        ):
            problems.append(f"resource {resource_id} is still held by released {grant.key}")
    frozen = {token: frozenset(ids) for token, ids in unexplained.items()}
    for token, ids in list(frozen.items()):
        if token in tickets:
            if not tickets[token].selection.allows(ids):
                problems.append(f"resources {sorted(ids)} held by a ticket that did not ask them")
            result.states["held by a ticket whose poll was lost"] += 1
            del frozen[token]
    acquires = [u for u in history.unknown if u.token is None and u.kind in ACQUIRES]
    matched = _match(frozen, acquires)
    result.states["held by an unknown-outcome request"] += len(matched)
    for token, ids in frozen.items():
        if token not in matched:
            problems.append(
                f"resources {sorted(ids)} are held by a lease nobody was told about"
                f" (token …{token[-6:]}), and no unknown-outcome request explains it"
            )


def audit(client: httpx.Client, history: History, *, grace: float | None) -> Audit:
    """Ask the server about every lease in the history and about every locked resource.

    Every lease must be accounted for: released (if its holder's release was answered 200),
    expired (never before its deadline), or still active holding its resources with its
    fences, as the listing shows too. With `grace`, a lease must have ended within `grace`
    seconds of its deadline (unless that fell while no server ran).
    """
    result = Audit()
    listing_sent = time.monotonic()
    held = holders(client)
    listing_received = time.monotonic()
    explain_holders(held, history, listing_sent, result)
    for grant in list(history.grants):
        if grant.api == "v2":
            _audit_lease(client, history, grant, held, listing_sent, grace, result)
        else:
            _audit_v1_lock(history, grant, held, listing_sent, listing_received, grace, result)
    return result


def _audit_lease(
    client: httpx.Client,
    history: History,
    grant: Grant,
    held: dict[int, str | None],
    listing_sent: float,
    grace: float | None,
    result: Audit,
) -> None:
    problems = result.problems
    sent = time.monotonic()
    answer = client.get(f"/api/v2/leases/{grant.lease_id}", headers=auth(grant.token))
    if answer.status_code != 200:
        problems.append(f"{grant.key} vanished: GET answered {answer.status_code} {answer.text}")
        return
    lease: Json = answer.json()["lease"]
    state: str = lease["state"]
    result.states[state] += 1
    if lease["expires_at"] != grant.expires_at:
        if grant.renew_unknown:
            grant.deadlines.append(lease["expires_at"])  # the server knows what it did
        else:
            problems.append(f"{grant.key}: deadline {lease['expires_at']}, told {grant.expires_at}")
    deadline = grant.expires_at
    late = (
        grace is not None
        and deadline is not None
        and history.to_wall(sent) > deadline + grace
        and not history.near_downtime(deadline)
    )
    if state == "released":
        if grant.release == "ok":
            assert grant.release_sent_at is not None
            assert grant.release_answered_at is not None
            ended = lease["ended_at"]
            if not (
                history.to_wall(grant.release_sent_at) - CLOCK_TOLERANCE_S
                <= ended
                <= history.to_wall(grant.release_answered_at) + CLOCK_TOLERANCE_S
            ):
                problems.append(f"{grant.key}: released at {ended}, outside its release call")
        elif grant.release != "unknown":
            problems.append(f"{grant.key}: released, but its holder never released it")
    elif state == "expired":
        if grant.release == "ok":
            problems.append(f"{grant.key}: expired, but its release was answered 200")
        if deadline is None:
            problems.append(f"{grant.key}: expired without a deadline")
        elif lease["ended_at"] < deadline:
            problems.append(f"{grant.key}: expired at {lease['ended_at']}, before {deadline}")
        elif (
            grace is not None
            and lease["ended_at"] > deadline + grace
            and not history.near_downtime(deadline)
        ):
            problems.append(f"{grant.key}: expired {lease['ended_at'] - deadline:.2f} s late")
    elif state == "active":
        if grant.release in ("ok", "refused"):
            problems.append(f"{grant.key}: still active after its release was answered")
        if any(r.outcome == "refused" for r in grant.renewals):
            problems.append(f"{grant.key}: still active after a renewal was refused as ended")
        if late:
            problems.append(f"{grant.key}: still active more than {grace} s after its deadline")
        shown = {r["id"]: r["fence"] for r in lease["resources"]}
        if shown != grant.fences:
            problems.append(f"{grant.key}: active holding {shown}, granted {grant.fences}")
        missing = sorted(rid for rid in grant.fences if held.get(rid) != grant.token)
        if missing:
            problems.append(f"{grant.key}: active, but the listing shows {missing} not its")
    else:
        problems.append(f"{grant.key}: unexpected state {state}")
    if state != "active":
        if lease["resources"]:
            problems.append(f"{grant.key}: {state}, yet holds {lease['resources']}")
        still = sorted(rid for rid in grant.fences if held.get(rid) == grant.token)
        if still and lease["ended_at"] < history.to_wall(listing_sent):
            problems.append(f"{grant.key}: ended {lease['ended_at']}, listed holding {still}")


def _audit_v1_lock(
    history: History,
    grant: Grant,
    held: dict[int, str | None],
    listing_sent: float,
    listing_received: float,
    grace: float | None,
    result: Audit,
) -> None:
    (resource_id,) = grant.fences
    latest = grant.latest_deadline
    assert latest is not None
    assert grant.expires_at is not None
    if held.get(resource_id) == grant.token:
        result.states["v1 active"] += 1
        if grant.release == "refused":
            result.problems.append(f"{grant.key}: still held after its unlock was refused")
        if (
            grace is not None
            and history.to_wall(listing_sent) > latest + grace
            and not history.near_downtime(latest)
        ):
            result.problems.append(f"{grant.key}: still held {grace} s after its ttl")
    elif grant.release in ("ok", "unknown"):
        result.states["v1 unlocked"] += 1
    elif history.to_wall(listing_received) < grant.expires_at:
        result.problems.append(
            f"{grant.key}: no longer holds resource {resource_id} before its ttl"
        )
    else:
        result.states["v1 expired"] += 1


# ---------------------------------------------------------------------------------- the clients


@dataclass(frozen=True)
class Inventory:
    """The server's resources: ids, names and tags."""

    names: dict[int, str]
    tags: dict[int, frozenset[str]]

    @classmethod
    def read(cls, client: httpx.Client) -> Inventory:
        """Read it from GET /api/v2/resources."""
        answer = client.get("/api/v2/resources")
        assert answer.status_code == 200, answer.text
        resources = answer.json()["resources"]
        return cls(
            names={r["id"]: r["name"] for r in resources},
            tags={r["id"]: frozenset(r["tags"]) for r in resources},
        )

    @property
    def ids(self) -> list[int]:
        """Every resource id, in order."""
        return sorted(self.names)

    def tagged(self, *tags: str) -> frozenset[int]:
        """The ids carrying every one of these tags."""
        return frozenset(rid for rid, have in self.tags.items() if set(tags) <= have)

    def pick(self, rng: random.Random) -> Selection:
        """A random selection: by ids, by names, or by tags with a count."""
        kind = rng.choices(["ids", "names", "pool", "x", "both", "any"], [3, 2, 4, 2, 1, 1])[0]
        if kind in ("ids", "names"):
            chosen = frozenset(rng.sample(self.ids, rng.choice([1, 1, 2])))
            if kind == "ids":
                body: Json = {"ids": sorted(chosen)}
            else:
                body = {"names": [self.names[rid] for rid in sorted(chosen)]}
            return Selection(body, chosen, len(chosen))
        tags = {"pool": ["pool"], "x": ["x"], "both": ["pool", "x"], "any": []}[kind]
        candidates = self.tagged(*tags)
        count = rng.randint(1, min(3, len(candidates)))
        if kind == "any":
            count = 1
        return Selection({"tags": tags, "count": count}, candidates, count)


class PhaseOverError(Exception):
    """The server went away (or the run was stopped): this phase is over for the worker."""


class Worker:
    """One client thread: acquires, holds, renews and releases, and records what it was told.

    Work interrupted by a kill is kept (`pending_*`) and finished by `recover` against the
    restarted server: an acquire retried with its request id, a ticket polled again, a lease
    looked at and released.
    """

    def __init__(
        self,
        index: int,
        inventory: Inventory,
        history: History,
        seed: int,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.index = index
        #: Sent with every request (an API key, when the server requires one).
        self.headers = headers or {}
        self.inventory = inventory
        self.history = history
        self.rng = random.Random(seed)
        self.counts: Counter[str] = Counter()
        self.pending_acquire: tuple[Json, Selection, float] | None = None
        self.pending_ticket: tuple[int, str, Selection, float, float] | None = None
        self.pending_leases: list[Grant] = []
        self._client: httpx.Client | None = None
        self._stop = threading.Event()
        self._serial = itertools.count()
        self._recovering = False
        #: How often a waiting ticket is cancelled.
        self.cancel_share = 0.15

    # ------------------------------------------------------------------ the loop

    def run(self, base_url: str, until: float, stop: threading.Event) -> None:
        """Recover interrupted work, then run random episodes until `until` (monotonic) or
        `stop`; a lost connection ends the phase for this worker."""
        self._stop = stop
        with httpx.Client(
            base_url=base_url, headers=self.headers, timeout=REQUEST_TIMEOUT_S
        ) as client:
            self._client = client
            try:
                self.recover()
                for _ in range(MAX_EPISODES):
                    if time.monotonic() >= until or stop.is_set():
                        break
                    if self.rng.random() < 0.3:
                        self._v1_episode()
                    else:
                        self._v2_episode()
            except PhaseOverError:
                pass
            finally:
                self._client = None

    def _request(
        self, method: str, path: str, lost: Callable[[float], None], **options: Any
    ) -> tuple[httpx.Response, float, float]:
        """Send a request: (answer, sent, answered). A transport error means its outcome is
        unknown: `lost(sent)` records that, and the phase ends."""
        assert self._client is not None
        sent = time.monotonic()
        try:
            answer = self._client.request(method, path, **options)
        except httpx.TransportError:
            lost(sent)
            raise PhaseOverError from None
        return answer, sent, time.monotonic()

    def _pause(self, seconds: float) -> None:
        """Sleep, holding nothing, unless the run is stopped."""
        if self._stop.wait(seconds):
            raise PhaseOverError

    def _sleep(self, seconds: float, holding: Grant) -> None:
        """Sleep, unless the run is stopped: then keep what is held for `recover`."""
        if seconds > 0 and self._stop.wait(seconds):
            self.pending_leases.append(holding)
            raise PhaseOverError

    # ------------------------------------------------------------------ v2 leases

    def _v2_episode(self) -> None:
        selection = self.inventory.pick(self.rng)
        plan = self.rng.choices(["hold", "expire", "renew late"], [70, 15, 15])[0]
        ttl: float | None = round(self.rng.uniform(0.5, 3.0), 2)
        if plan == "hold" and self.rng.random() < 0.4:
            ttl = None
        elif plan != "hold":
            ttl = round(self.rng.uniform(0.5, 1.2), 2)
        wait = 0.0 if self.rng.random() < 0.35 else round(self.rng.uniform(1.5, 4.0), 2)
        body: Json = {
            "select": selection.body,
            "wait": wait,
            "owner": f"worker-{self.index}",
            "request_id": f"w{self.index}-{next(self._serial)}-{uuid.uuid4().hex[:8]}",
        }
        if ttl is not None:
            body["ttl"] = ttl
        grant = self._acquire(body, selection, None)
        if grant is not None:
            self._hold(grant, plan)

    def _acquire(self, body: Json, selection: Selection, first_sent: float | None) -> Grant | None:
        def lost(sent: float) -> None:
            self.pending_acquire = (body, selection, sent if first_sent is None else first_sent)
            self.history.lost(Unknown("acquire", selection, None, sent))

        answer, sent, answered = self._request("POST", "/api/v2/leases", lost, json=body)
        first = first_sent if first_sent is not None else sent
        if answer.status_code == 201:
            return self._granted(answer.json()["lease"], selection, first, answered, False)
        if answer.status_code == 202:
            data = answer.json()
            self.counts["tickets"] += 1
            return self._poll(data["ticket"]["id"], data["token"], selection, first, body["wait"])
        if answer.status_code == 409:
            self.counts["busy" if body["wait"] == 0 else "wait timed out"] += 1
            return None
        raise AssertionError(f"acquire {body}: {answer.status_code} {answer.text}")

    def _poll(
        self, ticket_id: int, token: str, selection: Selection, first_sent: float, wait: float
    ) -> Grant | None:
        """Poll a ticket until granted or refused; sometimes cancel it on the way."""

        def lost(sent: float) -> None:
            self.pending_ticket = (ticket_id, token, selection, first_sent, wait)
            self.history.lost(Unknown("ticket", selection, token, sent))

        give_up = time.monotonic() + wait + TICKET_SLACK_S
        cancel_at = math.inf
        if self.rng.random() < self.cancel_share:
            cancel_at = time.monotonic() + self.rng.uniform(0.2, wait)
        path = f"/api/v2/tickets/{ticket_id}"
        for _ in range(MAX_POLLS):
            if self._stop.is_set():
                self.pending_ticket = (ticket_id, token, selection, first_sent, wait)
                self.history.lost(Unknown("ticket", selection, token, time.monotonic()))
                raise PhaseOverError
            if time.monotonic() >= cancel_at:
                cancel_at = math.inf
                answer, _, _ = self._request("DELETE", path, lost, headers=auth(token))
                assert answer.status_code == 200, answer.text
                state = answer.json()["ticket"]["state"]
                if state != "granted":  # else: granted just before; poll to learn the lease
                    self.counts[f"ticket {state}"] += 1
                    return None
            answer, _, answered = self._request(
                "GET", path, lost, params={"wait": LONG_POLL_S}, headers=auth(token)
            )
            if answer.status_code == 200:
                self.counts["granted after waiting"] += 1
                return self._granted(answer.json()["lease"], selection, first_sent, answered, True)
            if answer.status_code == 409:
                self.counts["wait timed out"] += 1
                return None
            assert answer.status_code == 202, answer.text
            if time.monotonic() > give_up:
                raise AssertionError(
                    f"ticket {ticket_id} still waiting {wait} s + {TICKET_SLACK_S} s after it"
                    f" was polled first; at {time.time():.3f} the server said {answer.text}"
                )
        raise AssertionError(f"ticket {ticket_id} polled {MAX_POLLS} times")

    def _granted(
        self, lease: Json, selection: Selection, sent: float, answered: float, via_ticket: bool
    ) -> Grant | None:
        """Record a grant; the grant to hold, unless it had already ended (a retry after a
        restart may learn of a lease that expired meanwhile)."""
        fences = {r["id"]: r["fence"] for r in lease["resources"]}
        active = lease["state"] == "active"
        key = f"v2:{lease['id']}"
        if active and not selection.allows(frozenset(fences)):
            self.history.problem(f"{key}: granted {sorted(fences)} for {selection.body}")
        acquired = lease["acquired_at"]
        if not (
            self.history.to_wall(sent) - CLOCK_TOLERANCE_S
            <= acquired
            <= self.history.to_wall(answered) + CLOCK_TOLERANCE_S
        ):
            self.history.problem(f"{key}: acquired at {acquired}, outside its request")
        grant = Grant(
            key=key,
            api="v2",
            worker=self.index,
            token=lease["token"],
            fences=fences,
            sent_at=sent,
            granted_at=answered,
            ttl=lease["ttl"],
            deadlines=[] if lease["expires_at"] is None else [lease["expires_at"]],
            lease_id=lease["id"],
            via_ticket=via_ticket,
            recovered=self._recovering,
        )
        self.history.add(grant)
        self.counts["v2 grants"] += 1
        return grant if active else None

    def _hold(self, grant: Grant, plan: str) -> None:
        """Hold a lease: let it expire, renew it too late on purpose, or hold a while
        (renewing in time, sometimes) and release it."""
        deadline = grant.expires_at
        if deadline is not None and plan == "expire":
            self.counts["left to expire"] += 1
            return
        if deadline is not None and plan == "renew late":
            self._sleep(deadline + 0.3 - time.time(), grant)
            self._renew(grant, late=True)
            self._release(grant)
            return
        until = time.monotonic() + self.rng.uniform(0.05, 0.5)
        if deadline is not None and self.rng.random() < 0.5:
            for _ in range(self.rng.randint(1, 2)):
                current = grant.expires_at
                assert current is not None
                margin = current - time.time()
                if margin < 0.2:
                    break
                self._sleep(self.rng.uniform(0.0, min(margin - 0.2, 0.4)), grant)
                if not self._renew(grant, late=False):
                    break
        self._sleep(until - time.monotonic(), grant)
        self._release(grant)

    def _renew(self, grant: Grant, *, late: bool, ttl: float | None = None) -> bool:
        """Renew (for `ttl` seconds, else at random); True when it was renewed."""

        def lost(sent: float) -> None:
            grant.renew_unknown = True
            self.pending_leases.append(grant)
            self.history.lost(Unknown("renew", Selection({}, frozenset(), 0), None, sent))

        before = grant.expires_at
        assert before is not None
        options: dict[str, Any] = {"headers": auth(grant.token)}
        if ttl is not None:
            options["json"] = {"ttl": ttl}
        elif self.rng.random() < 0.7:
            options["json"] = {"ttl": round(self.rng.uniform(0.5, 2.0), 2)}
        path = f"/api/v2/leases/{grant.lease_id}/renew"
        answer, sent, answered = self._request("POST", path, lost, **options)
        if answer.status_code == 200:
            lease = answer.json()["lease"]
            grant.renewals.append(Renewal(sent, answered, before, "ok"))
            grant.deadlines.append(lease["expires_at"])
            shown = {r["id"]: r["fence"] for r in lease["resources"]}
            if shown != grant.fences:
                self.history.problem(f"{grant.key}: renewed holding {shown}, not {grant.fences}")
            self.counts["late renewals accepted" if late else "renewals"] += 1
            return True
        assert answer.status_code == 403, answer.text
        assert answer.json()["error"]["code"] == "lease_ended", answer.text
        grant.renewals.append(Renewal(sent, answered, before, "refused"))
        self.counts["late renewals refused" if late else "renewals refused"] += 1
        return False

    def _release(self, grant: Grant) -> None:
        def lost(sent: float) -> None:
            grant.release, grant.release_sent_at = "unknown", sent
            self.pending_leases.append(grant)
            self.history.lost(Unknown("release", Selection({}, frozenset(), 0), None, sent))

        path = f"/api/v2/leases/{grant.lease_id}"
        answer, sent, answered = self._request("DELETE", path, lost, headers=auth(grant.token))
        if answer.status_code == 200:
            assert answer.json()["lease"]["state"] == "released", answer.text
            grant.release = "ok"
            self.counts["releases"] += 1
        else:
            assert answer.status_code == 403, answer.text
            assert answer.json()["error"]["code"] == "lease_ended", answer.text
            grant.release = "refused"
            self.counts["releases refused"] += 1
        grant.release_sent_at, grant.release_answered_at = sent, answered

    # ------------------------------------------------------------------ v1 locks

    def _v1_episode(self) -> None:
        params: dict[str, str | float] = {"ttl": V1_TTL_S}
        if self.rng.random() < 0.3:
            tag = self.rng.choice(["x", "pool"])
            path, params["tag"] = f"{V1}/resources/lock", tag
            candidates = self.inventory.tagged(tag)
        else:
            resource_id = self.rng.choice(self.inventory.ids)
            path = f"{V1}/resources/{resource_id}/lock"
            candidates = frozenset([resource_id])
        selection = Selection({"v1": path}, candidates, 1)

        def lost(sent: float) -> None:
            self.history.lost(Unknown("v1 lock", selection, None, sent))

        # Half wait in the queue (`?wait=`: one request, answered once granted); the others
        # are answered at once and retry a few times. The lock's deadline is the server's
        # clock at the grant plus its TTL: somewhere in the request, closely known without a
        # wait.
        tries = 6
        if self.rng.random() < 0.5:
            params["wait"], tries = round(self.rng.uniform(0.5, 2.0), 2), 1
            self.counts["v1 waits"] += 1
        for _ in range(tries):
            answer, sent, answered = self._request("POST", path, lost, params=params)
            if answer.status_code != 403:
                break
            self.counts["v1 busy"] += 1
            self._pause(self.rng.uniform(0.05, 0.2))
        else:
            return
        assert answer.status_code == 200, answer.text
        token: str = answer.json()["lock-token"]
        resource_id = answer.json()["resource"]["id"]
        if resource_id not in candidates:
            self.history.problem(f"v1 lock {path} granted resource {resource_id}")
        grant = Grant(
            key=f"v1:{token}",
            api="v1",
            worker=self.index,
            token=token,
            fences={resource_id: None},
            sent_at=sent,
            granted_at=answered,
            ttl=V1_TTL_S,
            deadlines=[self.history.to_wall(sent) + V1_TTL_S],
            deadline_slack=answered - sent,
        )
        self.history.add(grant)
        self.counts["v1 grants"] += 1
        if self.rng.random() < 0.25:
            self.counts["v1 left to expire"] += 1
            return
        self._sleep(self.rng.uniform(0.05, 0.8), grant)
        self._unlock(grant)

    def _unlock(self, grant: Grant) -> None:
        (resource_id,) = grant.fences

        def lost(sent: float) -> None:
            if grant.release != "unknown":  # else the first one may have been the one
                grant.release, grant.release_sent_at = "unknown", sent
            self.pending_leases.append(grant)
            self.history.lost(Unknown("v1 unlock", Selection({}, frozenset(), 0), None, sent))

        path = f"{V1}/resources/{resource_id}/unlock"
        answer, sent, answered = self._request(
            "POST", path, lost, params={"lock-token": grant.token}
        )
        if answer.status_code == 200:
            # Held until now: an earlier unlock whose answer was lost did not happen.
            grant.release = "ok"
            grant.release_sent_at, grant.release_answered_at = sent, answered
            self.counts["v1 unlocks"] += 1
            return
        assert answer.status_code == 403, answer.text
        self.counts["v1 unlocks refused"] += 1
        if grant.release != "unknown":  # else the first unlock may have been the one
            grant.release = "refused"
            grant.release_sent_at, grant.release_answered_at = sent, answered

    def keep(self, base_url: str, select: Json, ttl: float | None) -> Grant:
        """Acquire these resources (waiting for them) and hold them until `recover`: a lease
        renewed to `ttl` seconds, or one without TTL."""
        body: Json = {"select": select, "wait": 5.0, "request_id": f"keep-{uuid.uuid4()}"}
        if ttl is not None:
            body["ttl"] = 5.0
        ids = frozenset(select["ids"])
        self.cancel_share = 0.0
        with httpx.Client(
            base_url=base_url, headers=self.headers, timeout=REQUEST_TIMEOUT_S
        ) as client:
            self._client = client
            try:
                grant = self._acquire(body, Selection(select, ids, len(ids)), None)
                assert grant is not None, f"could not acquire {body}"
                if ttl is not None:
                    assert self._renew(grant, late=False, ttl=ttl), "a fresh lease refused renewal"
            finally:
                self._client = None
        self.pending_leases.append(grant)
        return grant

    # ------------------------------------------------------------------ after a restart

    def recover(self) -> None:
        """Finish what a kill interrupted: retry an acquire with its request id (it answers
        what the first call got, or acquires now), poll a queued ticket again, and release
        what is still held."""
        self._recovering = True
        try:
            if self.pending_acquire is not None:
                body, selection, first = self.pending_acquire
                self.pending_acquire = None
                self.counts["acquires retried"] += 1
                self._release_if_held(self._acquire(body, selection, first))
            if self.pending_ticket is not None:
                ticket_id, token, selection, first, wait = self.pending_ticket
                self.pending_ticket = None
                self.counts["tickets polled again"] += 1
                self._release_if_held(self._poll(ticket_id, token, selection, first, wait))
            while self.pending_leases:
                self._finish(self.pending_leases.pop(0))
        finally:
            self._recovering = False

    def _release_if_held(self, grant: Grant | None) -> None:
        if grant is not None:
            self._release(grant)

    def _finish(self, grant: Grant) -> None:
        """Release a lease held across a restart, if it still holds anything."""
        if grant.api == "v1":
            if grant.release != "ok":
                self._unlock(grant)
            return
        assert self._client is not None
        answer = self._client.get(f"/api/v2/leases/{grant.lease_id}", headers=auth(grant.token))
        assert answer.status_code == 200, answer.text
        if answer.json()["lease"]["state"] == "active":
            self.counts["released after restart"] += 1
            self._release(grant)


def total(counters: Iterable[Counter[str]]) -> Counter[str]:
    """The sum of the workers' counts."""
    result: Counter[str] = Counter()
    for counter in counters:
        result.update(counter)
    return result
