"""Liveness and readiness for operators and load balancers: rentabot's `/healthz`, and
upstream rent-a-bot 1.x's `/health` and `/readiness`."""

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


@router.get("/health", summary="Upstream rent-a-bot 1.x's liveness: is the process up?")
async def health() -> Response:
    """1.x's answer, `{"status": "ok"}`: the process answers (the database is not asked)."""
    return json_response(200, {"status": "ok"})


@router.get("/readiness", summary="Upstream rent-a-bot 1.x's readiness: can it serve?")
async def readiness(request: Request) -> Response:
    """1.x's `{"status": "ready"}` when the database answers; 503 `{"status": "not ready"}`
    otherwise (1.x answers ready whatever happens)."""
    checked = await runtime(request).health.check()
    if not checked.ok:
        log.error("database unavailable: %s", checked.problem)
        return json_response(503, {"status": "not ready"})
    return json_response(200, {"status": "ready"})
