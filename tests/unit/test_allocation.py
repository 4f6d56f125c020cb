"""Pure rules of fair waiting and lease expiry: queue order, allocation, TTLs, keep-alive."""

from __future__ import annotations

import math
from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rentabot.domain.allocation import (
    FreeResource,
    TtlError,
    Waiter,
    allocate,
    is_expired,
    lease_expiry,
    positions,
    queue_order,
)

Grants = list[tuple[Waiter, tuple[int, ...]]]


def waiter(
    id: int,
    *,
    priority: int = 0,
    at: float = 0.0,
    count: int = 1,
    ids: Iterable[int] | None = None,
    tags: Iterable[str] = (),
) -> Waiter:
    """A waiter for tests: explicit ids set `count` to their number."""
    if ids is not None:
        return Waiter(id, priority, at, len(set(ids)), frozenset(ids))
    return Waiter(id, priority, at, count, tags=frozenset(tags))


def free(*ids: int, tags: Iterable[str] = ()) -> list[FreeResource]:
    """Free resources with these ids, all carrying `tags`."""
    return [FreeResource(i, frozenset(tags)) for i in ids]


def by_id(grants: Grants) -> dict[int, tuple[int, ...]]:
    """The grants as waiter id → resource ids."""
    return {w.id: ids for w, ids in grants}


# --- queue order -------------------------------------------------------------------------


def test_priority_beats_arrival() -> None:
    """A higher priority is served first even when it arrived later."""
    early, urgent = waiter(1, at=10.0), waiter(2, priority=5, at=20.0)
    assert queue_order([early, urgent]) == [urgent, early]


def test_arrival_beats_id() -> None:
    """At equal priority the earlier arrival is served first, whatever the ids."""
    late_low_id, early_high_id = waiter(1, at=20.0), waiter(9, at=10.0)
    assert queue_order([late_low_id, early_high_id]) == [early_high_id, late_low_id]


def test_equal_priority_and_arrival_ordered_by_id() -> None:
    """Ties of priority and arrival are broken by the request id, lowest first."""
    ws = [waiter(3), waiter(1), waiter(2)]
    assert [w.id for w in queue_order(ws)] == [1, 2, 3]


def test_positions_are_one_based_places_in_queue_order() -> None:
    """positions gives each waiter id its 1-based place in the queue."""
    ws = [waiter(7, at=3.0), waiter(8, priority=1, at=9.0), waiter(9, at=1.0)]
    assert positions(ws) == {8: 1, 9: 2, 7: 3}
    assert positions([]) == {}


def test_duplicate_waiter_ids_are_refused() -> None:
    """Two waiters with one id would make the order depend on the input, so they are refused."""
    with pytest.raises(ValueError, match="waiter 1 is listed twice"):
        queue_order([waiter(1, at=1.0, count=2), waiter(1, at=1.0)])
    with pytest.raises(ValueError, match="waiter 1 is listed twice"):
        allocate([waiter(1, priority=5), waiter(2, priority=3), waiter(1)], free(1))


def test_waiter_rejects_inconsistent_requests() -> None:
    """A waiter needs at least one resource, and explicit ids with tags or another count fail."""
    with pytest.raises(ValueError, match="at least one"):
        Waiter(1, 0, 0.0, 0)
    with pytest.raises(ValueError, match="explicit"):
        Waiter(1, 0, 0.0, 1, frozenset({1, 2}))
    with pytest.raises(ValueError, match="explicit"):
        Waiter(1, 0, 0.0, 1, frozenset({1}), frozenset({"x"}))
    with pytest.raises(ValueError, match="finite"):
        Waiter(1, 0, math.nan, 1)


# --- allocate: examples ------------------------------------------------------------------


def test_count_is_all_or_nothing() -> None:
    """A waiter for 3 with 2 matching free gets none of them."""
    assert allocate([waiter(1, count=3, tags={"x"})], free(1, 2, tags={"x"})) == []
    assert by_id(allocate([waiter(1, count=2, tags={"x"})], free(1, 2, tags={"x"}))) == {1: (1, 2)}


def test_explicit_ids_are_all_or_nothing() -> None:
    """A waiter for explicit ids gets them only when every one of them is free."""
    assert allocate([waiter(1, ids={1, 2, 3})], free(1, 2, 4)) == []
    assert by_id(allocate([waiter(1, ids={3, 1})], free(1, 2, 3))) == {1: (1, 3)}


def test_unserved_head_reserves_its_matches_but_not_others() -> None:
    """Head wants 3 of X with 2 free: a later request for X gets nothing, one for Y is served."""
    head = waiter(1, at=1.0, count=3, tags={"x"})
    later_x = waiter(2, at=2.0, tags={"x"})
    later_y = waiter(3, at=3.0, tags={"y"})
    grants = allocate([head, later_x, later_y], free(1, 2, tags={"x"}) + free(3, tags={"y"}))
    assert by_id(grants) == {3: (3,)}


def test_explicit_waiter_reserves_the_free_part_of_its_set() -> None:
    """A waiter for {1, 2, 3} with 3 held keeps 1 and 2 from later waiters; 4 is still served."""
    head = waiter(1, at=1.0, ids={1, 2, 3})
    wants_two = waiter(2, at=2.0, ids={2})
    wants_any = waiter(3, at=3.0)
    grants = allocate([head, wants_two, wants_any], free(1, 2, 4))
    assert by_id(grants) == {3: (4,)}


def test_empty_tags_match_any_resource() -> None:
    """A waiter without tags or ids is served from any free resource, whatever its tags."""
    grants = allocate([waiter(1, count=2)], [FreeResource(5, frozenset({"a"})), *free(9)])
    assert by_id(grants) == {1: (5, 9)}


def test_tags_must_all_be_carried() -> None:
    """A resource matches a tag request only when it carries every requested tag."""
    resources = [
        FreeResource(1, frozenset({"a"})),
        FreeResource(2, frozenset({"a", "b", "c"})),
        FreeResource(3, frozenset({"b"})),
    ]
    assert by_id(allocate([waiter(1, tags={"a", "b"})], resources)) == {1: (2,)}


def test_lowest_ids_first() -> None:
    """Among more matching resources than needed, the lowest ids are granted."""
    assert by_id(allocate([waiter(1, count=2)], free(30, 4, 12, 7))) == {1: (4, 7)}


def test_grants_come_in_queue_order() -> None:
    """The result lists granted waiters in queue order, each with its ids ascending."""
    ws = [waiter(1, at=5.0, count=2), waiter(2, priority=1, at=9.0), waiter(3, at=1.0)]
    grants = allocate(ws, free(6, 5, 4, 3))
    assert [(w.id, ids) for w, ids in grants] == [(2, (3,)), (3, (4,)), (1, (5, 6))]


def test_duplicate_free_resources_are_refused() -> None:
    """A free resource listed twice could be granted twice, so it is refused."""
    with pytest.raises(ValueError, match="free resource 1 is listed twice"):
        allocate([waiter(1)], free(1, 1))


# --- allocate: properties ----------------------------------------------------------------

RESOURCE_IDS = range(1, 9)
TAGS = ("a", "b", "c")


@st.composite
def waiters(draw: st.DrawFn) -> list[Waiter]:
    """Up to 8 waiters with unique ids; few priorities and arrival times, so ties are common."""
    ids = draw(st.lists(st.integers(1, 50), unique=True, max_size=8))
    result = []
    for waiter_id in ids:
        priority = draw(st.integers(0, 2))
        arrived_at = draw(st.sampled_from([0.0, 1.0, 2.5]))
        if draw(st.booleans()):
            wanted = draw(st.frozensets(st.sampled_from(RESOURCE_IDS), min_size=1, max_size=3))
            result.append(Waiter(waiter_id, priority, arrived_at, len(wanted), wanted))
        else:
            tags = draw(st.frozensets(st.sampled_from(TAGS[:2]), max_size=2))
            count = draw(st.integers(1, 3))
            result.append(Waiter(waiter_id, priority, arrived_at, count, tags=tags))
    return result


#: Up to 8 free resources with unique ids, each carrying some of the tags.
free_resources = st.dictionaries(
    st.sampled_from(RESOURCE_IDS), st.frozensets(st.sampled_from(TAGS))
).map(lambda tags_by_id: [FreeResource(i, tags) for i, tags in tags_by_id.items()])


@given(waiters(), free_resources, st.data())
def test_result_is_the_same_for_every_input_order(
    ws: list[Waiter], fr: list[FreeResource], data: st.DataObject
) -> None:
    """Shuffling the waiters and the free resources never changes the grants."""
    expected = allocate(ws, fr)
    shuffled_ws = data.draw(st.permutations(ws))
    shuffled_fr = data.draw(st.permutations(fr))
    assert allocate(shuffled_ws, shuffled_fr) == expected


@given(waiters(), free_resources)
def test_grants_are_exclusive_matching_and_complete(
    ws: list[Waiter], fr: list[FreeResource]
) -> None:
    """No resource is granted twice, each matches its waiter, and each waiter gets all it needs."""
    resources = {r.id: r for r in fr}
    grants = allocate(ws, fr)
    granted_ids = [i for _, ids in grants for i in ids]
    assert len(granted_ids) == len(set(granted_ids))
    assert [w for w, _ in grants] == [w for w in queue_order(ws) if w in dict(grants)]
    for w, ids in grants:
        assert list(ids) == sorted(ids)
        assert all(i in resources and w.matches(resources[i]) for i in ids)
        assert len(ids) == w.count
        if w.resource_ids is not None:
            assert frozenset(ids) == w.resource_ids


@given(waiters(), free_resources)
def test_no_barging(ws: list[Waiter], fr: list[FreeResource]) -> None:
    """If W got r, every earlier waiter that matches r was itself granted in the same call."""
    resources = {r.id: r for r in fr}
    grants = allocate(ws, fr)
    granted = {w.id for w, _ in grants}
    order = queue_order(ws)
    for w, ids in grants:
        for earlier in order[: order.index(w)]:
            for i in ids:
                if earlier.matches(resources[i]):
                    assert earlier.id in granted, (earlier, w, i)


@given(waiters(), free_resources)
def test_head_is_served_whenever_it_can_be(ws: list[Waiter], fr: list[FreeResource]) -> None:
    """The first waiter in the queue is granted exactly when enough free resources match it."""
    grants = allocate(ws, fr)
    if ws:
        head = queue_order(ws)[0]
        can_be_served = sum(head.matches(r) for r in fr) >= head.count
        assert (bool(grants) and grants[0][0] == head) == can_be_served


# One step of the simulation: a release, or a new waiter for one resource (explicit ids, tags).
RELEASE = "release"
SINGLE_REQUESTS: list[tuple[frozenset[int] | None, frozenset[str]]] = [
    (frozenset({1}), frozenset()),
    (frozenset({2}), frozenset()),
    (frozenset({3}), frozenset()),
    (None, frozenset({"x"})),
    (None, frozenset()),
]
step = st.one_of(st.sampled_from(SINGLE_REQUESTS), st.just(RELEASE))


@settings(max_examples=200)
@given(st.lists(step, max_size=25))
def test_request_for_three_is_not_starved_by_singles(
    steps: list[tuple[frozenset[int] | None, frozenset[str]] | str],
) -> None:
    """A waiter for 3 gets all 3 as soon as they are free; later singles get none before it."""
    big = Waiter(1, 0, 0.0, 3, tags=frozenset({"x"}))
    queue = [big]
    # Holder of each resource (None: free); all start held by someone outside the queue.
    holders: dict[int, int | None] = {1: 0, 2: 0, 3: 0}
    big_served = False
    for n, event in enumerate(steps, start=2):
        if event == RELEASE:
            held = sorted(i for i, h in holders.items() if h is not None)
            if held:
                holders[held[0]] = None
        else:
            assert not isinstance(event, str)
            ids, tags = event
            queue.append(Waiter(n, 0, float(n), 1, ids, tags))
        frees = [FreeResource(i, frozenset({"x"})) for i, h in holders.items() if h is None]
        for w, granted in allocate(queue, frees):
            assert w is big or big_served, f"single {w} was served before the waiter for 3"
            big_served = big_served or w is big
            queue.remove(w)
            holders.update(dict.fromkeys(granted, w.id))
        assert big_served or any(h is not None for h in holders.values()), "3 free, not served"


# --- lease expiry and keep-alive ---------------------------------------------------------


@pytest.mark.parametrize(
    ("ttl", "default_ttl", "max_ttl", "expected"),
    [
        (30.0, None, None, 1030.0),
        (30.0, 60.0, 3600.0, 1030.0),
        (3600.0, None, 3600.0, 4600.0),  # exactly the maximum is allowed
        (None, 60.0, 3600.0, 1060.0),
        (None, None, 3600.0, 4600.0),  # the cap applies to leases without a TTL too
        (None, 7200.0, 3600.0, 4600.0),  # a default above the cap is cut to the cap
        (None, 60.0, None, 1060.0),
        (None, None, None, None),  # held until unlocked, as in the original
        (0.5, None, None, 1000.5),
    ],
)
def test_lease_expiry(
    ttl: float | None, default_ttl: float | None, max_ttl: float | None, expected: float | None
) -> None:
    """The TTL given, else the default, else the cap, else never; counted from `now`."""
    assert lease_expiry(1000.0, ttl, default_ttl=default_ttl, max_ttl=max_ttl) == expected


@pytest.mark.parametrize(
    ("ttl", "message"),
    [
        (0.0, "ttl must be positive"),
        (-5.0, "ttl must be positive"),
        (math.nan, "ttl must be a finite number of seconds"),
        (math.inf, "ttl must be a finite number of seconds"),
        (-math.inf, "ttl must be a finite number of seconds"),
        (7200.0, "ttl 7200 s exceeds the maximum of 3600 s"),
        (3600.5, "ttl 3600.5 s exceeds the maximum of 3600 s"),
    ],
)
def test_lease_expiry_refuses_bad_ttls(ttl: float, message: str) -> None:
    """A TTL that is not positive and finite, or above the maximum, is refused, not shortened."""
    with pytest.raises(TtlError) as raised:
        lease_expiry(1000.0, ttl, default_ttl=60.0, max_ttl=3600.0)
    assert str(raised.value) == message


@pytest.mark.parametrize("setting", [0.0, -1.0, math.nan, math.inf])
def test_lease_expiry_rejects_bad_settings(setting: float) -> None:
    """A non-positive or non-finite default or maximum is a configuration error, not a TtlError."""
    for kwargs in (
        {"default_ttl": setting, "max_ttl": None},
        {"default_ttl": None, "max_ttl": setting},
    ):
        with pytest.raises(ValueError, match="must be a positive number") as raised:
            lease_expiry(1000.0, 10.0, **kwargs)
        assert not isinstance(raised.value, TtlError)


def test_is_expired_at_the_deadline_and_not_before() -> None:
    """A lease is expired exactly at its deadline, and not a nanosecond (or one float) before."""
    assert is_expired(100.0, 100.0)
    assert is_expired(100.0, 101.0)
    assert not is_expired(100.0, 100.0 - 1e-9)
    # At epoch scale a float cannot tell 1 ns apart: the closest earlier time is one step down.
    deadline = 1_700_000_000.0
    assert is_expired(deadline, deadline)
    assert not is_expired(deadline, math.nextafter(deadline, -math.inf))
    assert not is_expired(None, 1e18)
