"""Pure rules of history and usage: holds and maintenance from events, busy fraction,
hold percentiles, waits, busy per UTC day; and the queue's wait estimate."""

from __future__ import annotations

from datetime import date
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rentabot.domain.estimate import PoolResource, QueuedRequest, estimate_waits
from rentabot.domain.model import Event
from rentabot.domain.usage import (
    DAY_S,
    History,
    HoldPeriod,
    LeaseStart,
    build_history,
    median,
    percentile,
    union_length,
    usage_figures,
)

#: 2026-01-10 00:00 UTC: a day boundary, so day arithmetic is easy to read.
T0 = 1_768_003_200.0


def event(
    at: float, kind: str, lease_id: int | None = None, actor: str | None = None, **detail: Any
) -> Event:
    """An event of resource 1."""
    return Event(0, at, kind, 1, lease_id, actor, detail)


def hold(start: float | None, end: float | None, lease_id: int = 1) -> HoldPeriod:
    """A hold period with only its times."""
    return HoldPeriod(lease_id, None, None, start, end, "held" if end is None else "released")


def test_history_tells_who_held_how_long_and_how_each_hold_ended() -> None:
    """Grants pair with their ends; expiry, release and force-release (with its admin and
    reason) are told apart; a grant not ended is still held."""
    history = build_history(
        [
            event(T0, "granted", 1, "ci", owner="job-1", expires_at=T0 + 60),
            event(T0 + 30, "released", 1, "ci"),
            event(T0 + 40, "granted", 2, "bob", owner="bob"),
            event(T0 + 100, "expired", 2),
            event(T0 + 110, "granted", 3, "ci", owner="job-3"),
            event(T0 + 150, "force_released", 3, "admin", reason="stuck <job>"),
            event(T0 + 160, "granted", 4, "ci", owner="job-4"),
        ]
    )
    got = [(h.lease_id, h.owner, h.principal, h.start, h.end, h.ended_by) for h in history.holds]
    assert got == [
        (1, "job-1", "ci", T0, T0 + 30, "released"),
        (2, "bob", "bob", T0 + 40, T0 + 100, "expired"),
        (3, "job-3", "ci", T0 + 110, T0 + 150, "force_released"),
        (4, "job-4", "ci", T0 + 160, None, "held"),
    ]
    forced = history.holds[2]
    assert (forced.end_actor, forced.reason) == ("admin", "stuck <job>")
    assert history.holds[0].expires_at == T0 + 60
    assert history.holds[3].duration(T0 + 200) == 40


def test_history_takes_the_start_of_an_earlier_lease_and_the_current_holder_from_outside() -> None:
    """An end whose grant was not read gets its lease's start; the current holder, granted
    before the events read, is an open hold."""
    history = build_history(
        [event(T0 + 10, "released", 7, "ci")],
        earlier={7: LeaseStart(7, T0 - 50, "job-7", "ci")},
        current=LeaseStart(8, T0 + 20, "job-8", "ci", T0 + 80),
    )
    assert [(h.lease_id, h.start, h.end, h.owner) for h in history.holds] == [
        (7, T0 - 50, T0 + 10, "job-7"),
        (8, T0 + 20, None, "job-8"),
    ]


def test_history_pairs_maintenance_periods_with_their_reasons() -> None:
    """Maintenance on/off become periods with the reason and who did it; a period still on,
    or begun before the events read, is open at its end or its start."""
    history = build_history(
        [
            event(T0 + 5, "maintenance_off", actor="ops"),
            event(T0 + 10, "maintenance_on", actor="ops", reason="fan <broken>"),
            event(T0 + 20, "maintenance_off", actor="amy"),
            event(T0 + 30, "maintenance_on", actor="ops"),
        ],
        in_maintenance=True,
    )
    got = [(p.start, p.end, p.reason, p.actor, p.end_actor) for p in history.maintenance]
    assert got == [
        (None, T0 + 5, None, None, "ops"),
        (T0 + 10, T0 + 20, "fan <broken>", "ops", "amy"),
        (T0 + 30, None, None, "ops", None),
    ]


def test_figures_of_an_exact_week() -> None:
    """Busy fraction, lease count, median/p90 hold, median wait and per-day busy, by hand."""
    until = T0 + 7 * DAY_S
    holds = (
        hold(T0 - 3600, T0 + 3600, 1),  # began before the window: 1 h inside, not counted
        hold(T0 + DAY_S, T0 + DAY_S + 7200, 2),  # 2 h on day 2
        hold(T0 + 2 * DAY_S, T0 + 2 * DAY_S + 600, 3),  # 10 min on day 3
        hold(until - 1800, None, 4),  # still held: the last 30 min
    )
    figures = usage_figures([History(holds, ())], days=7, until=until, waits=[0.0, 30.0, 90.0])
    assert figures.since == T0
    assert figures.busy == (3600 + 7200 + 600 + 1800) / (7 * DAY_S)
    assert figures.leases == 3
    assert figures.median_hold_s == (600 + 7200) / 2
    assert figures.p90_hold_s == 7200
    assert figures.median_wait_s == 30.0
    assert [d.day for d in figures.daily] == [date(2026, 1, 10 + i) for i in range(7)]
    assert [round(d.busy * DAY_S) for d in figures.daily] == [3600, 7200, 600, 0, 0, 0, 1800]


def test_tag_figures_divide_by_resources_times_window() -> None:
    """Two resources, one busy all day, one idle: 50% busy."""
    until = T0 + DAY_S
    busy = History((hold(T0, until, 1),), ())
    idle = History((), ())
    figures = usage_figures([busy, idle], days=1, until=until)
    assert figures.resources == 2
    assert figures.busy == 0.5
    assert figures.daily[0].busy == 0.5
    assert figures.median_wait_s is None


def test_percentile_is_nearest_rank_and_median_averages_the_middle() -> None:
    """p90 of 1..10 is 9, of 1..11 is 10; the median of 1..4 is 2.5."""
    assert percentile([float(v) for v in range(1, 11)], 0.9) == 9
    assert percentile([float(v) for v in range(1, 12)], 0.9) == 10
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert median([]) is None
    assert percentile([], 0.9) is None


intervals = st.lists(
    st.tuples(st.floats(0, 1000), st.floats(0, 500)).map(lambda p: (p[0], p[0] + p[1])),
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(intervals, st.floats(0, 800), st.floats(0, 800))
def test_union_is_bounded_by_the_window_and_counts_overlaps_once(
    spans: list[tuple[float, float]], a: float, b: float
) -> None:
    """The covered time never exceeds the window nor the sum of the parts, is unchanged by
    duplicating every interval, and equals a brute-force count on a grid of integers."""
    start, end = min(a, b), max(a, b)
    covered = union_length(spans, start, end)
    assert 0 <= covered <= end - start + 1e-9
    assert (
        covered
        <= sum(min(y, end) - max(x, start) for x, y in spans if y > start and x < end) + 1e-6
    )
    assert abs(union_length(spans + spans, start, end) - covered) < 1e-6
    whole = [(round(x), round(y)) for x, y in spans]
    lo, hi = round(start), round(end)
    brute = sum(1 for t in range(lo, hi) if any(x <= t < y for x, y in whole))
    assert union_length([(float(x), float(y)) for x, y in whole], lo, hi) == brute


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 6 * DAY_S), st.floats(1, DAY_S)), max_size=8))
def test_busy_is_a_fraction_and_the_daily_figures_add_up_to_it(
    spans: list[tuple[float, float]],
) -> None:
    """Busy is in [0, 1]; over whole UTC days it is the mean of the daily fractions."""
    # Back to back, as one resource's holds are.
    holds, at = [], T0
    for lease_id, (gap, length) in enumerate(spans, 1):
        start = at + gap / 10
        holds.append(hold(start, start + length, lease_id))
        at = start + length
    figures = usage_figures([History(tuple(holds), ())], days=7, until=T0 + 7 * DAY_S)
    assert 0 <= figures.busy <= 1
    assert all(0 <= d.busy <= 1 for d in figures.daily)
    mean = sum(d.busy for d in figures.daily) / len(figures.daily)
    assert abs(mean - figures.busy) < 1e-9


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(0, 10_000), min_size=1, max_size=30))
def test_median_and_p90_lie_within_the_values_in_order(values: list[float]) -> None:
    """min <= median <= p90 <= max, and p90 is one of the values."""
    mid, p90 = median(values), percentile(values, 0.9)
    assert mid is not None
    assert p90 is not None
    assert min(values) <= mid <= max(values)
    assert p90 in values
    assert mid <= p90 + 1e-9


# ------------------------------------------------------------------------- the estimate


def test_estimate_of_a_pool_of_two_with_a_median_hold_of_an_hour() -> None:
    """Both held for 40 and 10 min of a 60 min median: free in 20 and 50 min; the first
    waiter gets the one free in 20, the second the one in 50, the third the first again
    after its median hour (80 min)."""
    now = T0
    pool = [
        PoolResource(1, frozenset({"b"}), held_since=now - 2400, median_hold_s=3600),
        PoolResource(2, frozenset({"b"}), held_since=now - 600, median_hold_s=3600),
    ]
    queue = [QueuedRequest(i, 1, None, frozenset({"b"})) for i in (10, 11, 12)]
    assert estimate_waits(queue, pool, now) == {10: 1200, 11: 3000, 12: 4800}


def test_estimate_is_capped_by_expiry_and_unknown_without_history_or_expiry() -> None:
    """A lease expiring sooner than its median says frees it then; a resource with no
    history and no expiry, or in maintenance, gives no estimate; a free one: zero wait."""
    now = T0
    expiring = PoolResource(1, frozenset(), held_since=now, expires_at=now + 60, median_hold_s=600)
    unknown = PoolResource(2, frozenset(), held_since=now)
    down = PoolResource(3, frozenset(), maintenance=True)
    free = PoolResource(4, frozenset(), median_hold_s=100)
    assert estimate_waits([QueuedRequest(1, 1, frozenset({1}), frozenset())], [expiring], now) == {
        1: 60
    }
    assert estimate_waits([QueuedRequest(1, 1, frozenset({2}), frozenset())], [unknown], now) == {
        1: None
    }
    assert estimate_waits([QueuedRequest(1, 1, frozenset({3}), frozenset())], [down], now) == {
        1: None
    }
    assert estimate_waits([QueuedRequest(1, 1, frozenset({4}), frozenset())], [free], now) == {1: 0}


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0, 3600), st.floats(1, 3600)), min_size=1, max_size=5),
    st.lists(st.integers(1, 3), min_size=1, max_size=8),
)
def test_estimates_never_decrease_down_a_single_pool_queue(
    holders: list[tuple[float, float]], counts: list[int]
) -> None:
    """In one pool, a later waiter is never expected sooner than an earlier one, and every
    waiter asking for no more than the pool gets an estimate."""
    now = T0
    pool = [
        PoolResource(i, frozenset({"p"}), held_since=now - age, median_hold_s=hold_s)
        for i, (age, hold_s) in enumerate(holders, 1)
    ]
    queue = [QueuedRequest(i, c, None, frozenset({"p"})) for i, c in enumerate(counts, 1)]
    found = estimate_waits(queue, pool, now)
    served = [found[r.id] for r in queue if r.count <= len(pool)]
    assert all(s is not None for s in served)
    known = [s for s in served if s is not None]
    assert known == sorted(known)
    assert all(found[r.id] is None for r in queue if r.count > len(pool))


@settings(max_examples=100, deadline=None)
@given(
    st.lists(st.tuples(st.floats(-DAY_S, 4 * DAY_S), st.floats(0, 2 * DAY_S)), max_size=10),
    st.floats(1, DAY_S - 1),
)
def test_each_days_figure_is_the_union_of_holds_inside_that_day(
    spans: list[tuple[float, float]], offset: float
) -> None:
    """Overlapping holds of two resources, a window not on a day boundary: every day's
    fraction is the time covered inside that day's part of the window, resource by resource."""
    until = T0 + 3 * DAY_S + offset
    since = until - 3 * DAY_S
    first = tuple(hold(T0 + a, T0 + a + length, i) for i, (a, length) in enumerate(spans))
    second = first[::2]
    figures = usage_figures([History(first, ()), History(second, ())], days=3, until=until)
    assert len(figures.daily) == 4
    for day in figures.daily:
        start = max(since, (day.day - date(1970, 1, 1)).days * DAY_S)
        end = min(until, start - start % DAY_S + DAY_S)
        expected = sum(
            union_length([(h.start or 0, h.end or until) for h in holds], start, end)
            for holds in (first, second)
        ) / (2 * (end - start))
        assert abs(day.busy - expected) < 1e-9
