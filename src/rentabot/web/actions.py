"""What a person does at the page: reserve, extend and release, by identity.

Each action is a form POST (so it works without JavaScript) that calls one service method
as the signed-in person, whose identity the audit trail records; `Locker` refuses a cookie
write that does not come from this server's own page (Origin or CSRF token). The answer is a
redirect back to the view (POST-redirect-GET) with what happened, or why it did not.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from starlette.responses import Response

from rentabot.domain.errors import RentabotError
from rentabot.interfaces.auth import Admin, Locker
from rentabot.interfaces.runtime import runtime
from rentabot.service.acquiring import LeaseTerms
from rentabot.web.forms import back_to, bounded_int, form_fields, selection_of, ttl_of

router = APIRouter(include_in_schema=False)


@router.post("/actions/reserve")
async def reserve(request: Request, caller: Locker) -> Response:
    """Lease a free resource (`resource_id`), or `count` by `tag`, for `ttl` seconds, owned by
    the person: one call to the lease service, as the API's POST /api/v2/leases."""
    form = await form_fields(request)
    selection, ttl = selection_of(form), ttl_of(form)
    try:
        lease = await runtime(request).leases.acquire(
            selection, LeaseTerms(ttl=ttl, owner=caller.name), caller
        )
    except RentabotError as error:
        return back_to(form, f"Not reserved: {error.message}")
    names = ", ".join(r.name for r in getattr(lease, "resources", ()))
    return back_to(form, f"Reserved {names}" if names else "Reserved")


@router.post("/actions/extend")
async def extend(request: Request, caller: Locker) -> Response:
    """Push a lease the person holds to now + `ttl` (by identity: no token in the browser)."""
    form = await form_fields(request)
    ttl = ttl_of(form)
    try:
        await runtime(request).leases.renew(
            bounded_int(form.get("lease_id"), 0, 0, 2**62), None, caller, ttl
        )
    except RentabotError as error:
        return back_to(form, f"Not extended: {error.message}")
    return back_to(form, "Extended")


@router.post("/actions/release")
async def release(request: Request, caller: Locker) -> Response:
    """Release a lease the person holds (by identity); someone else's is refused."""
    form = await form_fields(request)
    try:
        await runtime(request).leases.release(
            bounded_int(form.get("lease_id"), 0, 0, 2**62), None, caller
        )
    except RentabotError as error:
        return back_to(form, f"Not released: {error.message}")
    return back_to(form, "Released")


@router.post("/actions/maintenance")
async def maintenance(request: Request, caller: Admin) -> Response:
    """An admin takes a resource out of service (`on=1`) or puts it back, with a reason
    (shown in its history). Taking a held one out needs `confirm` (the page names the
    holder whose lease runs on to its end)."""
    form = await form_fields(request)
    if not form.get("confirm"):
        return back_to(form, "Not changed: tick the confirmation first")
    try:
        await runtime(request).admin.set_maintenance(
            bounded_int(form.get("resource_id"), 0, 0, 2**62),
            form.get("on") == "1",
            reason=(form.get("reason") or "").strip() or None,
            admin=caller,
        )
    except RentabotError as error:
        return back_to(form, f"Not changed: {error.message}")
    return back_to(form, "Maintenance on" if form.get("on") == "1" else "Maintenance off")


@router.post("/actions/force-release")
async def force_release(request: Request, caller: Admin) -> Response:
    """An admin ends whoever's lease holds the resource, with a reason; needs `confirm`
    (the form names whose lease it is)."""
    form = await form_fields(request)
    if not form.get("confirm"):
        return back_to(form, "Not released: tick the confirmation first")
    try:
        await runtime(request).admin.force_release(
            bounded_int(form.get("resource_id"), 0, 0, 2**62),
            reason=(form.get("reason") or "").strip() or None,
            admin=caller,
        )
    except RentabotError as error:
        return back_to(form, f"Not released: {error.message}")
    return back_to(form, "Force-released")
