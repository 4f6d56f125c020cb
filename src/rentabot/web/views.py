"""View-models of the page: what a person's filters ask, and how a resource row reads."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from rentabot.domain.model import Resource

#: The states a person filters by; `retired` is not one (a retired resource shows while held).
STATES = ("available", "locked", "maintenance")
SORTS = ("id", "name", "expires", "since")
PAGE_SIZES = (25, 50, 100, 200)
#: The lease times a person picks from (s, as read), and how long they may wait in the queue.
DURATION_CHOICES = (
    (900, "15 min"),
    (3600, "1 h"),
    (4 * 3600, "4 h"),
    (8 * 3600, "8 h"),
    (86400, "24 h"),
)
WAIT_CHOICES = (
    (900, "15 min"),
    (3600, "1 h"),
    (4 * 3600, "4 h"),
    (8 * 3600, "8 h"),
    (86400, "24 h"),
)
#: Bounds on what a filter may carry: a URL is hostile text like any other.
MAX_FILTER = 200
MAX_TAGS = 10


def _bounded(value: str | None) -> str | None:
    value = (value or "").strip()[:MAX_FILTER]
    return value or None


def _number(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(value or default)))
    except ValueError:
        return default


@dataclass(frozen=True)
class Filters:
    """The resource view's filters, as they are in the URL (so a view can be bookmarked)."""

    tags: tuple[str, ...] = ()
    state: str | None = None
    holder: str | None = None
    mine: bool = False
    text: str | None = None
    sort: str = "id"
    page: int = 1
    size: int = 50

    @classmethod
    def of(cls, query: dict[str, list[str]]) -> Filters:
        """The filters a query string asks for; anything unknown or out of bounds falls back
        to its default (a bookmark from an older page still opens)."""

        def one(name: str) -> str | None:
            return _bounded((query.get(name) or [""])[0])

        tags: list[str] = []
        for value in query.get("tag", []):
            for tag in value.replace(",", " ").split():
                if tag[:MAX_FILTER] not in tags:
                    tags.append(tag[:MAX_FILTER])
        state = one("state")
        sort = one("sort") or "id"
        size = _number(one("size"), 50, 1, PAGE_SIZES[-1])
        return cls(
            tags=tuple(tags[:MAX_TAGS]),
            state=state if state in STATES else None,
            holder=one("holder"),
            mine=one("mine") in {"1", "on", "yes"},
            text=one("q"),
            sort=sort if sort in SORTS else "id",
            page=_number(one("page"), 1, 1, 1_000_000),
            size=size,
        )

    @property
    def offset(self) -> int:
        """The first row of the page."""
        return (self.page - 1) * self.size

    def query(self, **changes: object) -> str:
        """This view's query string, with `changes` (e.g. another page)."""
        values: dict[str, object] = {
            "tag": " ".join(self.tags) or None,
            "state": self.state,
            "holder": self.holder,
            "mine": "1" if self.mine else None,
            "q": self.text,
            "sort": None if self.sort == "id" else self.sort,
            "size": None if self.size == 50 else self.size,
            "page": None if self.page == 1 else self.page,
        }
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v is not None and v != ""})


def web_link(owner: str | None) -> str | None:
    """The owner as a link target when it is an http(s) URL (a CI job), else None: never a
    `javascript:` or other scheme, which would run in the page."""
    if not owner:
        return None
    try:
        parts = urlsplit(owner.strip())
    except ValueError:
        return None
    if parts.scheme.lower() in {"http", "https"} and parts.netloc:
        return owner.strip()
    return None


def state_label(resource: Resource) -> tuple[str, str]:
    """(css class, text) of a resource's state as a person reads it."""
    if resource.holder is not None:
        if resource.retired:
            return "retired", f"{resource.lock_details} (retired: gone once released)"
        if resource.maintenance:
            return "locked", f"{resource.lock_details} (maintenance next)"
        return "locked", resource.lock_details
    if resource.maintenance:
        return "maintenance", "In maintenance"
    return "available", resource.lock_details


def snippets(base_url: str, resource: Resource | None = None, tag: str | None = None) -> list[str]:
    """The `rentabot run` line and the curl line that lock this resource (by id) or one
    resource of this tag, quoted for a POSIX shell (names and tags are hostile text)."""
    url = shlex.quote(base_url.rstrip("/"))
    if resource is not None:
        run = f"rentabot run --url {url} --id {resource.id} --ttl 10m --wait 30m -- ./job.sh"
        select: dict[str, object] = {"ids": [resource.id]}
    else:
        quoted = shlex.quote(tag or "")
        run = f"rentabot run --url {url} --tag {quoted} --ttl 10m --wait 30m -- ./job.sh"
        select = {"tags": [tag or ""], "count": 1}
    body = shlex.quote(json.dumps({"select": select, "ttl": 600}))
    curl = (
        f"curl -sS -X POST {shlex.quote(base_url.rstrip('/') + '/api/v2/leases')}"
        ' -H "X-API-Key: $RENTABOT_API_KEY" -H "Content-Type: application/json"'
        f" -d {body}"
    )
    return [run, curl]
