"""What a person does at the page: reserve, extend and release, by identity.

Each action is a form POST (so it works without JavaScript) that calls one service method
as the signed-in person, whose identity the audit trail records; `Locker` refuses a cookie
write that does not come from this server's own page (Origin or CSRF token). The answer is a
redirect back to the view (POST-redirect-GET) with what happened, or why it did not.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import APIRouter, Request
from starlette.responses import RedirectResponse, Response

from rentabot.domain.errors import RentabotError
from rentabot.domain.model import Selection
from rentabot.interfaces.auth import Admin, Locker
from rentabot.interfaces.runtime import runtime
from rentabot.service.acquiring import LeaseTerms

router = APIRouter(include_in_schema=False)
#: The durations a person may pick (seconds), and the default.
DURATIONS = (900, 3600, 4 * 3600, 8 * 3600, 24 * 3600)
MAX_COUNT = 100


async def _form(request: Request) -> dict[str, str]:
    form = parse_qs((await request.body()).decode("utf-8", "replace"))
    return {name: values[0][:500] for name, values in form.items() if values}


def _back(form: dict[str, str], message: str) -> Response:
    """Back to the view the form was on (a path of this site only), saying what happened."""
    target = form.get("back", "/")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//"):
        target = "/"
    query = [p for p in parts.query.split("&") if p and not p.startswith("done=")]
    query.append(urlencode({"done": message}))
    return RedirectResponse(f"{parts.path}?{'&'.join(query)}", status_code=303)


def _int(value: str | None, default: int, low: int, high: int) -> int:
    try:
        return max(low, min(high, int(value or default)))
    except ValueError:
        return default


@router.post("/actions/reserve")
async def reserve(request: Request, caller: Locker) -> Response:
    """Lease a free resource (`resource_id`), or `count` by `tag`, for `ttl` seconds, owned by
    the person: one call to the lease service, as the API's POST /api/v2/leases."""
    form = await _form(request)
    ttl = float(_int(form.get("ttl"), 3600, 60, DURATIONS[-1]))
    if form.get("resource_id"):
        selection = Selection(resource_ids=(_int(form["resource_id"], 0, 0, 2**62),))
    else:
        tags = tuple(form.get("tag", "").replace(",", " ").split())[:10]
        selection = Selection(tags=tags, count=_int(form.get("count"), 1, 1, MAX_COUNT))
    try:
        lease = await runtime(request).leases.acquire(
            selection, LeaseTerms(ttl=ttl, owner=caller.name), caller
        )
    except RentabotError as error:
        return _back(form, f"Not reserved: {error.message}")
    names = ", ".join(r.name for r in getattr(lease, "resources", ()))
    return _back(form, f"Reserved {names}" if names else "Reserved")


@router.post("/actions/extend")
async def extend(request: Request, caller: Locker) -> Response:
    """Push a lease the person holds to now + `ttl` (by identity: no token in the browser)."""
    form = await _form(request)
    ttl = float(_int(form.get("ttl"), 3600, 60, DURATIONS[-1]))
    try:
        await runtime(request).leases.renew(
            _int(form.get("lease_id"), 0, 0, 2**62), None, caller, ttl
        )
    except RentabotError as error:
        return _back(form, f"Not extended: {error.message}")
    return _back(form, "Extended")


@router.post("/actions/release")
async def release(request: Request, caller: Locker) -> Response:
    """Release a lease the person holds (by identity); someone else's is refused."""
    form = await _form(request)
    try:
        await runtime(request).leases.release(_int(form.get("lease_id"), 0, 0, 2**62), None, caller)
    except RentabotError as error:
        return _back(form, f"Not released: {error.message}")
    return _back(form, "Released")


@router.post("/actions/maintenance")
async def maintenance(request: Request, caller: Admin) -> Response:
    """An admin takes a resource out of service (`on=1`) or puts it back, with a reason
    (shown in its history). Taking a held one out needs `confirm` (the page names the
    holder whose lease runs on to its end)."""
    form = await _form(request)
    if not form.get("confirm"):
        return _back(form, "Not changed: tick the confirmation first")
    try:
        await runtime(request).admin.set_maintenance(
            _int(form.get("resource_id"), 0, 0, 2**62),
            form.get("on") == "1",
            reason=(form.get("reason") or "").strip() or None,
            admin=caller,
        )
    except RentabotError as error:
        return _back(form, f"Not changed: {error.message}")
    return _back(form, "Maintenance on" if form.get("on") == "1" else "Maintenance off")


@router.post("/actions/force-release")
async def force_release(request: Request, caller: Admin) -> Response:
    """An admin ends whoever's lease holds the resource, with a reason; needs `confirm`
    (the form names whose lease it is)."""
    form = await _form(request)
    if not form.get("confirm"):
        return _back(form, "Not released: tick the confirmation first")
    try:
        await runtime(request).admin.force_release(
            _int(form.get("resource_id"), 0, 0, 2**62),
            reason=(form.get("reason") or "").strip() or None,
            admin=caller,
        )
    except RentabotError as error:
        return _back(form, f"Not released: {error.message}")
    return _back(form, "Force-released")
