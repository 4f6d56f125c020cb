"""Charts drawn on the server as SVG: pure functions from figures to markup.

The SVG is inline in the page, so it obeys the page's Content-Security-Policy: no script,
no event handler attribute, no style attribute, no external reference (no `href` at all);
its look comes from the page's classes (`chart`, `chart-bar`, `chart-axis`, `chart-label`).
Every text it holds is escaped here, so the page may include it as is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import date
from html import escape

#: The chart's fixed size (its viewBox), in SVG units; the page scales it to its box.
WIDTH, HEIGHT = 320, 120
_TOP, _BOTTOM, _LEFT, _RIGHT = 8, 20, 34, 4
#: Most bars drawn: a longer series keeps its latest days.
MAX_BARS = 90


def _fraction(value: float) -> float:
    """A busy fraction made drawable: in [0, 1], anything not a number drawn as 0."""
    if not isinstance(value, int | float) or math.isnan(value):
        return 0.0
    return min(1.0, max(0.0, float(value)))


def _number(value: float) -> str:
    return f"{value:.2f}".rstrip("0").rstrip(".")


def busy_chart_svg(
    days: Sequence[tuple[date | str, float]], *, title: str = "Busy per day", chart_id: str = "busy"
) -> str:
    """A bar chart of busy fraction per day: one bar per (day, fraction), oldest first,
    with a 0/50/100 % scale, an accessible title and a description listing every value.

    `chart_id` names the title and description elements (for `aria-labelledby`); it is
    reduced to letters, digits and dashes so it is always a valid, inert id."""
    shown = list(days)[-MAX_BARS:]
    safe_id = "".join(c for c in chart_id if c.isascii() and (c.isalnum() or c == "-")) or "chart"
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    described = (
        "; ".join(f"{day}: {round(_fraction(busy) * 100)}%" for day, busy in shown) or "no data"
    )
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" width="{WIDTH}"'
        f' height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
        f' aria-labelledby="{safe_id}-title {safe_id}-desc">',
        f'<title id="{safe_id}-title">{escape(title)}</title>',
        f'<desc id="{safe_id}-desc">{escape(described)}</desc>',
    ]
    for percent in (0, 50, 100):
        y = _TOP + plot_h * (1 - percent / 100)
        parts.append(
            f'<line class="chart-axis" x1="{_LEFT}" x2="{WIDTH - _RIGHT}"'
            f' y1="{_number(y)}" y2="{_number(y)}"/>'
            f'<text class="chart-label" x="{_LEFT - 3}" y="{_number(y + 3)}"'
            f' text-anchor="end">{percent}%</text>'
        )
    if shown:
        slot = plot_w / len(shown)
        for index, (day, busy) in enumerate(shown):
            height = plot_h * _fraction(busy)
            x = _LEFT + index * slot + slot * 0.1
            parts.append(
                f'<rect class="chart-bar" x="{_number(x)}" y="{_number(_TOP + plot_h - height)}"'
                f' width="{_number(slot * 0.8)}" height="{_number(height)}">'
                f"<title>{escape(f'{day}: {round(_fraction(busy) * 100)}%')}</title></rect>"
            )
        first, last = shown[0][0], shown[-1][0]
        parts.append(
            f'<text class="chart-label" x="{_LEFT}" y="{HEIGHT - 6}">{escape(str(first))}</text>'
            f'<text class="chart-label" x="{WIDTH - _RIGHT}" y="{HEIGHT - 6}"'
            f' text-anchor="end">{escape(str(last))}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)
