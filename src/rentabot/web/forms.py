"""What every form of the page shares: reading the posted fields, bounding numbers, and the
redirect back to the view the form was on (POST-redirect-GET)."""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import Request
from starlette.responses import RedirectResponse, Response

from rentabot.domain.model import Selection

#: Most resources one form may ask for by tag.
MAX_COUNT = 100
#: Longest lease a person may pick at the page (s).
MAX_TTL = 24 * 3600


async def form_fields(request: Request) -> dict[str, str]:
    """The posted fields, the first value of each, bounded (a form is hostile text)."""
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    return {name: values[0][:500] for name, values in form.items() if values}


def local_path(target: str | None) -> str:
    """`target` when it is a path of this site, else "/": never a way to send a person to
    another site (`//host`, `/\\host`, which browsers read as `//host`, a scheme, or control
    characters that a browser would strip first)."""
    target = target or "/"
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in target)
    ):
        return "/"
    return target


def back_to(form: dict[str, str], message: str) -> Response:
    """Back to the view the form was on (a path of this site only), saying what happened."""
    parts = urlsplit(local_path(form.get("back")))
    query = [p for p in parts.query.split("&") if p and not p.startswith("done=")]
    query.append(urlencode({"done": message}))
    return RedirectResponse(f"{parts.path}?{'&'.join(query)}", status_code=303)


def bounded_int(value: str | None, default: int, low: int, high: int) -> int:
    """`value` as an integer within [low, high]; `default` when it is not a number."""
    try:
        return max(low, min(high, int(value or default)))
    except ValueError:
        return default


def selection_of(form: dict[str, str]) -> Selection:
    """What a reserve or join form asks for: one resource (`resource_id`), or `count`
    resources carrying every one of `tag` (space- or comma-separated)."""
    if form.get("resource_id"):
        return Selection(resource_ids=(bounded_int(form["resource_id"], 0, 0, 2**62),))
    tags = tuple(form.get("tag", "").replace(",", " ").split())[:10]
    return Selection(tags=tags, count=bounded_int(form.get("count"), 1, 1, MAX_COUNT))


def ttl_of(form: dict[str, str]) -> float:
    """The lease time a form picked (s): 1 h unless it says, within 1 min and `MAX_TTL`."""
    return float(bounded_int(form.get("ttl"), 3600, 60, MAX_TTL))
