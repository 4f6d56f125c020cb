"""The tags view `/tags` (every tag as a pool: free, held, in maintenance, total, waiting;
Jenkins' Labels tab) and a tag's page `/tags/{tag}` (its pool, usage figures and the lines
that lock one of its resources).

Each route declares who may call it and calls one service method. A tag in the URL is
hostile text: bounded here, escaped by the templates.
"""

from __future__ import annotations

import time
from urllib.parse import parse_qs

from fastapi import APIRouter, Request
from starlette.responses import Response

from rentabot.domain.errors import RentabotError
from rentabot.interfaces.auth import Reader
from rentabot.interfaces.runtime import runtime
from rentabot.web.pages import render
from rentabot.web.usage_view import usage_view
from rentabot.web.views import MAX_FILTER, snippets

router = APIRouter(include_in_schema=False)


@router.get("/tags")
async def tags_page(request: Request, caller: Reader) -> Response:
    """Every tag a visible resource carries, in tag order: its resources by state and how
    many waiting requests ask for it (`UsageService.tags_overview`, one read)."""
    pools = await runtime(request).usage.tags_overview()
    return render(request, "tags.html", {"caller": caller, "pools": pools})


# `path`: a tag may hold a slash (its links encode it, the router decodes it again).
@router.get("/tags/{tag:path}")
async def tag_page(request: Request, tag: str, caller: Reader) -> Response:
    """One tag: its pool, its usage over 7 and 30 days with busy per day, and the
    `rentabot run` and curl lines that lock one of its resources; 404 for a tag no visible
    resource carries."""
    if not tag or len(tag) > MAX_FILTER:
        # No tag is that long (or empty): say so without asking the database.
        problem = f"No resource carries the tag {tag[:MAX_FILTER]!r}"
        return render(request, "missing.html", {"caller": caller, "problem": problem}, 404)
    try:
        report = await runtime(request).usage.tag_report(tag)
    except RentabotError as error:
        return render(request, "missing.html", {"caller": caller, "problem": error.message}, 404)
    return render(
        request,
        "tag.html",
        {
            "caller": caller,
            "pool": report.pool,
            "usage": usage_view(tag, report.figures, None, time.time()),
            "snippets": snippets(str(request.base_url), tag=tag),
            "notice": (parse_qs(request.url.query).get("done") or [""])[0][:200],
        },
    )
