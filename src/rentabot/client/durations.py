"""Durations as people write them in CI files: `90`, `90s`, `10m`, `2h`, `1h30m`, `1.5h`, `1d`."""

from __future__ import annotations

import math
import re

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_PART = re.compile(r"(\d+(?:\.\d+)?|\.\d+)([smhd])")


class DurationError(ValueError):
    """The text is not a duration; the message shows what is accepted."""


def parse_duration(text: str | float) -> float:
    """Seconds from `90`, `90s`, `10m`, `2h`, `1h30m`, `1.5h` or `1d` (a number alone is
    seconds). Raises DurationError on anything else, negative or not finite values included."""
    if isinstance(text, int | float):
        seconds = float(text)
    else:
        cleaned = text.strip().lower().replace(" ", "")
        seconds = _parse_text(cleaned, text)
    if not math.isfinite(seconds) or seconds < 0:
        raise DurationError(f"invalid duration {text!r}: must be zero or more seconds")
    return seconds


def _parse_text(cleaned: str, original: str) -> float:
    try:
        return float(cleaned) if cleaned and cleaned[-1] not in _UNITS else _parse_units(cleaned)
    except ValueError:
        raise DurationError(
            f"invalid duration {original!r}: use seconds (90), or a number with a unit:"
            " 90s, 10m, 2h, 1h30m, 1d"
        ) from None


def _parse_units(cleaned: str) -> float:
    position, total, seen = 0, 0.0, ""
    for match in _PART.finditer(cleaned):
        unit = match.group(2)
        # Each unit at most once, largest first: `10m5h` is more likely a typo than a duration.
        if match.start() != position or (seen and "dhms".index(unit) <= "dhms".index(seen[-1])):
            raise ValueError(cleaned)
        total += float(match.group(1)) * _UNITS[unit]
        position, seen = match.end(), seen + unit
    if position != len(cleaned) or not seen:
        raise ValueError(cleaned)
    return total


def format_duration(seconds: float) -> str:
    """A short human form: `45s`, `10m`, `1h30m`, `2d3h` (whole seconds, largest units)."""
    left = max(0, round(seconds))
    parts: list[str] = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            amount, left = divmod(left, size)
            parts.append(f"{amount}{unit}")
    return "".join(parts[:2])
