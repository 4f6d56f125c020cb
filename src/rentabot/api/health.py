"""Liveness and readiness for operators and load balancers."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Depends, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from rentabot import __version__
from rentabot.api.auth import PUBLIC
from rentabot.api.responses import json_response
from rentabot.api.runtime import runtime
from rentabot.storage.database import DatabaseUnavailableError

log = logging.getLogger("rentabot")

#: Public: load balancers and probes ask without a key.
router = APIRouter(tags=["operations"], dependencies=[Depends(PUBLIC)])


@router.get("/healthz", summary="Is the service up, and can it reach its database?")
async def healthz(request: Request) -> Response:
    """200 with `{"status": "ok"}` when the database answers, 503 otherwise."""
    database = runtime(request).database
    about = {
        "version": __version__,
        "backend": database.backend,
        # Whether grants made by other replicas wake this one's waiters at once, or only
        # at the next re-check (PostgreSQL's listener down; always so on SQLite).
        "wakeups": "notified" if database.listening else "polling",
    }
    try:
        await run_in_threadpool(database.ping)
    except DatabaseUnavailableError as error:
        # The reason goes to the log: /healthz answers anyone.
        log.error("database unavailable: %s", error)
        return json_response(503, {"status": "unavailable", "database": "unavailable", **about})
    return json_response(200, {"status": "ok", "database": "ok", **about})
