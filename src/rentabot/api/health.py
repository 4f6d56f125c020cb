"""Liveness and readiness for operators and load balancers."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from rentabot import __version__
from rentabot.interfaces.auth import PUBLIC
from rentabot.interfaces.responses import json_response
from rentabot.interfaces.runtime import runtime

log = logging.getLogger("rentabot")

#: Public: load balancers and probes ask without a key.
router = APIRouter(tags=["operations"], dependencies=[Depends(PUBLIC)])


@router.get("/healthz", summary="Is the service up, and can it reach its database?")
async def healthz(request: Request) -> Response:
    """200 with `{"status": "ok"}` when the database answers, 503 otherwise."""
    health = await runtime(request).health.check()
    about = {"version": __version__, "backend": health.backend, "wakeups": health.wakeups}
    if not health.ok:
        # The reason goes to the log: /healthz answers anyone.
        log.error("database unavailable: %s", health.problem)
        return json_response(503, {"status": "unavailable", "database": "unavailable", **about})
    return json_response(200, {"status": "ok", "database": "ok", **about})
