"""Helpers for the tests of who may call what: revoking keys, reading refusals."""

from __future__ import annotations

import asyncio

import httpx2 as httpx

from rentabot.service.identity import IdentityService
from rentabot.storage.opening import open_database

#: Codes of the answers that refuse the caller, whatever the route would have done.
AUTH_REFUSALS = frozenset({"unauthenticated", "forbidden", "cross_origin"})


def revoke_key(database_url: str, name: str) -> None:
    """Revoke a key as `rentabot keys revoke` does: from another process's point of view
    (a server sees it once its own cache entry runs out, within about a second)."""
    database = open_database(database_url)
    try:
        asyncio.run(IdentityService(database).revoke_key(name))
    finally:
        database.dispose()


def error_code(answer: httpx.Response) -> str | None:
    """The error code of a JSON answer: `{"error": {"code"}}` (v2) or `{"code"}` (v1);
    None for an answer that is not JSON or names no code."""
    if not answer.headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        body = answer.json()
    except ValueError:
        return None
    if not isinstance(body, dict):
        return None
    error = body.get("error")
    code = error.get("code") if isinstance(error, dict) else body.get("code")
    return code if isinstance(code, str) else None


def is_html(answer: httpx.Response) -> bool:
    """Whether the answer is a page for people."""
    return answer.headers.get("content-type", "").startswith("text/html")
