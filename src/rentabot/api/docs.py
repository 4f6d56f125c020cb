"""The OpenAPI document and its interactive page, declared like every other route."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse

from rentabot.interfaces.auth import PUBLIC

#: Public: the contract is no secret, and clients need it before they have a key.
router = APIRouter(include_in_schema=False, dependencies=[Depends(PUBLIC)])


@router.get("/openapi.json")
async def openapi(request: Request) -> JSONResponse:
    """The OpenAPI document of the v2 API."""
    return JSONResponse(request.app.openapi())


@router.get("/docs")
async def swagger_ui() -> HTMLResponse:
    """The interactive OpenAPI page."""
    return get_swagger_ui_html(openapi_url="/openapi.json", title="rentabot: API")
