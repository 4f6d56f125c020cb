"""What the usage section of a page shows, made from the usage service's answers (pure:
formatting only, no rule): the `usage` object `templates/usage_section.html` renders."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from rentabot.domain.usage import History, UsageFigures
from rentabot.web.charts import busy_chart_svg

_ENDINGS = {
    "released": "released",
    "expired": "expired",
    "force_released": "force-released",
    "held": "still held",
}


def duration_text(seconds: float | None) -> str:
    """A duration as people read it: 45 s, 12 min, 3.5 h, 2.1 d; an em dash for none."""
    if seconds is None:
        return "\u2014"
    if seconds < 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    if seconds < 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} d"


def time_text(at: float | None) -> str:
    """A time in UTC to the minute; 'earlier' when it is not known."""
    if at is None:
        return "earlier"
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True, slots=True)
class WindowView:
    """The figures of one window, as text, and its chart (escaped SVG markup)."""

    days: int
    busy: str
    leases: int
    median_hold: str
    p90_hold: str
    median_wait: str
    chart_svg: str


@dataclass(frozen=True, slots=True)
class HoldRow:
    """One hold of the history."""

    holder: str
    #: The holder as a link when the owner is a web address (a CI job); else None.
    holder_url: str | None
    start: str
    end: str
    duration: str
    ended: str
    ended_by: str | None
    reason: str | None


@dataclass(frozen=True, slots=True)
class MaintenanceRow:
    """One maintenance period."""

    start: str
    end: str
    reason: str | None
    actor: str | None


@dataclass(frozen=True, slots=True)
class UsageView:
    """The usage section of a resource's page or of a tag on the tags view."""

    title: str
    windows: tuple[WindowView, ...]
    holds: tuple[HoldRow, ...]
    maintenance: tuple[MaintenanceRow, ...]


def _url(owner: str | None) -> str | None:
    if owner and owner.startswith(("https://", "http://")):
        return owner
    return None


def usage_view(
    title: str, figures: Sequence[UsageFigures], history: History | None, now: float
) -> UsageView:
    """The section's view: one window per figures (7 and 30 days, say), the history's
    holds and maintenance periods newest first (none for a tag)."""
    windows = tuple(
        WindowView(
            days=f.days,
            busy=f"{f.busy * 100:.1f}%",
            leases=f.leases,
            median_hold=duration_text(f.median_hold_s),
            p90_hold=duration_text(f.p90_hold_s),
            median_wait=duration_text(f.median_wait_s),
            chart_svg=busy_chart_svg(
                [(d.day, d.busy) for d in f.daily],
                title=f"{title}: busy per day, last {f.days} days",
                chart_id=f"busy-{f.days}",
            ),
        )
        for f in figures
    )
    holds = tuple(
        HoldRow(
            holder=h.owner or h.principal or f"lease {h.lease_id}",
            holder_url=_url(h.owner),
            start=time_text(h.start),
            end=time_text(h.end) if h.end is not None else "now",
            duration=duration_text(h.duration(now)),
            ended=_ENDINGS.get(h.ended_by, h.ended_by),
            ended_by=h.end_actor,
            reason=h.reason,
        )
        for h in reversed(history.holds if history else ())
    )
    maintenance = tuple(
        MaintenanceRow(
            start=time_text(p.start),
            end=time_text(p.end) if p.end is not None else "now",
            reason=p.reason,
            actor=p.actor,
        )
        for p in reversed(history.maintenance if history else ())
    )
    return UsageView(title, windows, holds, maintenance)
