"""The page at `/`: the original's table of resources, readable on a phone."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.templating import Jinja2Templates
from starlette.responses import Response

from rentabot import __version__
from rentabot.api.runtime import runtime

templates = Jinja2Templates(directory=Path(__file__).with_name("templates"))
router = APIRouter(include_in_schema=False)


@router.get("/")
async def index(request: Request) -> Response:
    """The resource table: name, lock status, description, endpoint, tags."""
    app = runtime(request)
    resources = await app.locks.resources()
    return templates.TemplateResponse(
        request,
        "index.html",
        {
            "resources": resources,
            "locked_count": sum(1 for r in resources if r.locked),
            "refresh_seconds": app.settings.page_refresh_seconds,
            "version": __version__,
        },
    )
