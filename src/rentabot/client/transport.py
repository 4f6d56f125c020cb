"""What the sync and async clients share of httpx: the headers every request carries, the
httpx request of a `Call`, and the `Reply` of an httpx response."""

from __future__ import annotations

from importlib.metadata import version

import httpx

from rentabot.client.protocol import Call, Reply


def headers(api_key: str | None) -> dict[str, str]:
    """The headers every request carries."""
    sent = {"User-Agent": f"rentabot-client/{version('rentabot')}"}
    if api_key:
        sent["X-API-Key"] = api_key
    return sent


def build_request(
    http: httpx.Client | httpx.AsyncClient, call: Call, timeout: float
) -> httpx.Request:
    """The httpx request of a call (shared with the async client)."""
    return http.build_request(
        call.method,
        call.path,
        json=call.json,
        params=list(call.params),
        headers={"Authorization": f"Bearer {call.token}"} if call.token else None,
        # A long-poll is held by the server on purpose: wait that much longer for it.
        timeout=httpx.Timeout(timeout, read=timeout + call.hold),
    )


def reply_of(response: httpx.Response) -> Reply:
    """The reply a flow reads, from an httpx response (its JSON body, if it has one)."""
    try:
        body: object = response.json()
    except ValueError:
        body = None
    return Reply(response.status_code, body, response.text)
