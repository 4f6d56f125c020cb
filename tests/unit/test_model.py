"""Pure rules of the domain: ids, the v1 criteria priority, tags and lock texts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rentabot.domain.model import (
    MAX_ID,
    Holder,
    Resource,
    V1Selection,
    is_plausible_text,
    parse_resource_id,
    split_tags,
    v1_criteria_selector,
)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1", 1),
        ("007", 7),
        ("+3", 3),
        (" 4 ", 4),
        (str(MAX_ID), MAX_ID),
        ("0", None),
        ("-1", None),
        ("1.5", None),
        ("1e3", None),
        ("abc", None),
        ("", None),
        ("٣", None),  # a non-ASCII digit names no resource
        (str(MAX_ID + 1), None),
        ("9" * 40, None),
    ],
)
def test_parse_resource_id_accepts_only_ids_a_resource_can_have(
    text: str, expected: int | None
) -> None:
    """Only positive ASCII integers within the database's range are ids."""
    assert parse_resource_id(text) == expected


@given(st.text(max_size=30))
def test_parse_resource_id_never_raises_and_stays_in_range(text: str) -> None:
    """Whatever a client sends, the answer is None or an id in 1..MAX_ID."""
    parsed = parse_resource_id(text)
    assert parsed is None or 1 <= parsed <= MAX_ID


def test_v1_criteria_priority_is_id_then_name_then_tags() -> None:
    """A non-empty id wins over a name, which wins over tags; nothing usable gives None."""
    assert v1_criteria_selector(["3"], ["x"], ["t"]) == V1Selection(resource_id=3, raw_id="3")
    assert v1_criteria_selector([""], ["x"], ["t"]) == V1Selection(name="x")
    assert v1_criteria_selector([], [""], ["t", "u"]) == V1Selection(tags=("t", "u"))
    assert v1_criteria_selector([], [], []) is None
    assert v1_criteria_selector([""], [""], []) is None


def test_an_unparseable_id_still_selects_by_id() -> None:
    """`?id=abc` is an id lookup that finds nothing, not a fall-through to the name."""
    selector = v1_criteria_selector(["abc"], ["coffee"], [])
    assert selector == V1Selection(raw_id="abc")
    assert selector is not None
    assert selector.resource_id is None
    assert selector.name is None


def test_selector_names_exactly_one_criterion() -> None:
    """A selector with two criteria, or none at all, is a programming error."""
    with pytest.raises(ValueError, match="exactly one"):
        V1Selection(resource_id=1, name="x")
    with pytest.raises(ValueError, match="exactly one"):
        V1Selection()


def test_split_tags_keeps_order_and_drops_duplicates() -> None:
    """The original's space-separated tags become distinct tags in written order."""
    assert split_tags("b a  b\tc") == ("b", "a", "c")
    assert split_tags("") == ()
    assert split_tags(None) == ()


def _resource(held: bool, fence: int, *, maintenance: bool = False) -> Resource:
    holder = Holder(7, "ci/job/1", 1.0, None) if held else None
    return Resource(1, "r", None, None, None, {}, maintenance, fence, holder)


def test_lock_details_follow_the_original_texts() -> None:
    """Never locked, locked, and free again read as the original wrote them."""
    assert _resource(False, 0).lock_details == "Resource is available"
    assert _resource(True, 1).lock_details == "Resource locked"
    assert _resource(False, 1).lock_details == "Resource available"


def test_a_resource_is_locked_exactly_when_it_has_a_holder() -> None:
    """`locked` and `state` come from the holder: held wins over maintenance."""
    assert (_resource(True, 1).locked, _resource(True, 1).state) == (True, "locked")
    assert _resource(True, 1, maintenance=True).state == "locked"
    assert _resource(False, 1, maintenance=True).state == "maintenance"
    assert (_resource(False, 0).locked, _resource(False, 0).state) == (False, "available")


def test_plausible_text_rejects_control_characters_and_oversize() -> None:
    """Names, tags and tokens with control characters or over the limit match nothing."""
    assert is_plausible_text("board-1")
    assert not is_plausible_text("")
    assert not is_plausible_text("a\x00b")
    assert not is_plausible_text("a\nb")
    assert not is_plausible_text("x" * 201)
    assert is_plausible_text("x" * 64, 64)
    assert not is_plausible_text("x" * 65, 64)
