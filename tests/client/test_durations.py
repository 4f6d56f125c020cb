"""Durations as CI files write them."""

from __future__ import annotations

import pytest

from rentabot.client import DurationError, format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90", 90),
        ("90s", 90),
        ("10m", 600),
        ("2h", 7200),
        ("1h30m", 5400),
        ("1.5h", 5400),
        ("1d", 86400),
        (" 2 M ", 120),
        ("0.25s", 0.25),
        (3.5, 3.5),
    ],
)
def test_durations_are_read_in_seconds(text: str | float, seconds: float) -> None:
    """Seconds alone, or numbers with s, m, h, d, largest unit first."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "10x", "10m5h", "5h5h", "1h 30", "-3", "nan", "inf"])
def test_anything_else_is_refused_saying_what_is_accepted(text: str) -> None:
    """Unknown units, units out of order or repeated, a number after a unit, negative or
    infinite values: DurationError naming the text."""
    with pytest.raises(DurationError, match="invalid duration"):
        parse_duration(text)


def test_durations_are_written_short() -> None:
    """Whole seconds, at most the two largest units."""
    assert [format_duration(s) for s in (0, 45, 600, 5400, 183600, 3661.4)] == [
        "0s",
        "45s",
        "10m",
        "1h30m",
        "2d3h",
        "1h1m",
    ]
