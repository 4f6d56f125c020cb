"""The server-drawn busy chart and the usage section: fixed-size, accessible, inert SVG, and
every hostile text escaped."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date
from html.parser import HTMLParser
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2 import Environment, FileSystemLoader

import rentabot.web
from rentabot.domain.usage import DayBusy, History, HoldPeriod, MaintenancePeriod, UsageFigures
from rentabot.web.charts import HEIGHT, WIDTH, busy_chart_svg
from rentabot.web.usage_view import duration_text, usage_view

SVG = "{http://www.w3.org/2000/svg}"
HOSTILE = "<img src=x onerror=alert(1)></script>\"'&"


class _Tags(HTMLParser):
    """Every element and attribute of some markup, as a browser's tokenizer finds them."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))


def _inert(markup: str, *, links: tuple[str, ...] = ()) -> None:
    """No script element, no event handler or style attribute, no reference to anything
    but the `links` given."""
    parser = _Tags()
    parser.feed(markup)
    parser.close()
    assert parser.tags, "no element at all"
    for tag, attrs in parser.tags:
        assert tag not in ("script", "style", "use", "image", "foreignobject", "iframe")
        for name, value in attrs:
            assert not name.startswith("on"), (tag, name)
            assert name != "style", tag
            if name in ("href", "src", "xlink:href"):
                assert value in links, (tag, name, value)


def test_chart_has_a_bar_per_day_scaled_to_its_fraction() -> None:
    """Three days at 0, 50 and 100%: three bars, the full one the plot's height, the
    half one half of it; the size is fixed; title and description name the values."""
    svg = busy_chart_svg(
        [(date(2026, 1, 1), 0.0), (date(2026, 1, 2), 0.5), (date(2026, 1, 3), 1.0)],
        title="Board a",
    )
    root = ET.fromstring(svg)
    assert (root.get("width"), root.get("height")) == (str(WIDTH), str(HEIGHT))
    assert root.get("role") == "img"
    assert root.findtext(f"{SVG}title") == "Board a"
    assert root.findtext(f"{SVG}desc") == "2026-01-01: 0%; 2026-01-02: 50%; 2026-01-03: 100%"
    heights = [float(bar.get("height", "nan")) for bar in root.iter(f"{SVG}rect")]
    assert len(heights) == 3
    assert heights[0] == 0
    assert heights[1] * 2 == heights[2] > 0
    _inert(svg)


def test_chart_clips_fractions_and_draws_no_bars_without_days() -> None:
    """Below 0, above 1 or not a number: drawn within the plot; no days: an empty plot."""
    svg = busy_chart_svg([("d1", -3.0), ("d2", 7.0), ("d3", float("nan"))])
    heights = [float(b.get("height", "nan")) for b in ET.fromstring(svg).iter(f"{SVG}rect")]
    assert heights[0] == heights[2] == 0
    assert 0 < heights[1] <= HEIGHT
    empty = ET.fromstring(busy_chart_svg([]))
    assert list(empty.iter(f"{SVG}rect")) == []
    assert empty.findtext(f"{SVG}desc") == "no data"


@settings(max_examples=150, deadline=None)
@given(
    st.text(max_size=200), st.text(max_size=50), st.lists(st.floats(allow_nan=True), max_size=40)
)
def test_any_title_day_or_value_gives_well_formed_inert_svg(
    title: str, chart_id: str, values: list[float]
) -> None:
    """Whatever the text: the SVG parses, its title is the text given, nothing runs."""
    # XML 1.0 cannot carry these at all; the page never has them (edge.py refuses them).
    title = "".join(
        c
        for c in title
        if c in "\t\n\r"
        or (c >= " " and not 0xD800 <= ord(c) <= 0xDFFF and c not in "\ufffe\uffff")
    )
    svg = busy_chart_svg(
        [(f"day{i}", v) for i, v in enumerate(values)], title=title, chart_id=chart_id
    )
    root = ET.fromstring(svg)
    assert root.findtext(f"{SVG}title") == title.replace("\r\n", "\n").replace("\r", "\n")
    _inert(svg)


def _figures(days: int) -> UsageFigures:
    return UsageFigures(
        days=days,
        since=0.0,
        until=days * 86400.0,
        resources=1,
        busy=0.25,
        leases=3,
        median_hold_s=90.0,
        p90_hold_s=7200.0,
        median_wait_s=None,
        daily=(DayBusy(date(2026, 1, 1), 0.25),),
    )


def test_usage_section_renders_figures_history_and_escapes_hostile_text() -> None:
    """Both windows' figures, the holds newest first with how they ended, the maintenance
    reason; owners and reasons holding markup come out as text; a URL owner is a link, a
    `javascript:` one is not."""
    history = History(
        holds=(
            HoldPeriod(1, "javascript:alert(1)", "ci", 0.0, 60.0, "released", "ci"),
            HoldPeriod(
                2,
                'https://ci/job/2?a=1&b="x"',
                "ci",
                100.0,
                400.0,
                "force_released",
                "ops",
                HOSTILE,
            ),
            HoldPeriod(3, HOSTILE, "ci", 500.0, None, "held"),
        ),
        maintenance=(MaintenancePeriod(10.0, 20.0, HOSTILE, "ops", "ops"),),
    )
    view = usage_view(HOSTILE, [_figures(7), _figures(30)], history, now=800.0)
    directory = Path(rentabot.web.__file__).with_name("templates")
    env = Environment(loader=FileSystemLoader(directory), autoescape=True)
    page = env.get_template("usage_section.html").render(usage=view)
    assert HOSTILE not in page
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;/script&gt;" in page
    _inert(page, links=('https://ci/job/2?a=1&b="x"',))
    assert page.count('class="chart"') == 2
    assert "Last 7 days" in page
    assert "Last 30 days" in page
    assert page.index("still held") < page.index("force-released") < page.index(">released by ci")
    assert 'href="javascript' not in page
    assert "25.0%" in page
    assert "2 min" in page
    assert "2.0 h" in page
    assert env.get_template("usage_section.html").render(usage=None).strip() == ""


def test_durations_read_as_people_say_them() -> None:
    """Seconds, minutes, hours, days; none is a dash."""
    assert [duration_text(s) for s in (5, 90, 5400, 3 * 86400)] == [
        "5 s",
        "2 min",
        "1.5 h",
        "3.0 d",
    ]
    assert duration_text(None) == "\u2014"
