"""What every request passes before any route: a bounded body, and a storable query.

Pure ASGI (no request object is built), because it sits on every request's path. Refused
here, with a JSON answer that says what is wrong:

- a body larger than RENTABOT_MAX_BODY_BYTES: 413 `too_large` (by its Content-Length at
  once, or as soon as a streamed body passes the limit);
- a NUL character in the query string (`%00`): 422 `invalid_request`. No database stores
  one in text (PostgreSQL refuses it), and a URL cannot carry a lone surrogate (query values
  are decoded as UTF-8, invalid bytes replaced), so this is all the query can hold that the
  database cannot. JSON bodies are checked field by field (`api/v2_schemas.Text`).
"""

from __future__ import annotations

from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rentabot.domain.errors import InvalidRequestError, PayloadTooLargeError, RentabotError
from rentabot.interfaces.responses import json_response


def _answer(scope: Scope, error: RentabotError, status: int) -> Any:
    path: str = scope.get("path", "")
    if path.startswith("/api/v2/"):
        body: dict[str, object] = {"error": {"code": error.code, "message": error.message}}
    else:
        body = {"message": error.message, "code": error.code}
    return json_response(status, body)


class EdgeGuard:
    """Refuses oversized bodies and NUL characters in query strings (see the module).

    Not FastAPI's own `max_body_size`: on the lock path every microsecond counts, and this
    one builds nothing per request (a body with a Content-Length within the limit cannot grow
    past it: the server reads no more than that), and its answer names the setting."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self._too_large = PayloadTooLargeError(
            f"the request body is larger than {max_body_bytes} bytes (RENTABOT_MAX_BODY_BYTES)"
        )
        self._nul = InvalidRequestError("the query must not contain a NUL character (%00)")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        query: bytes = scope.get("query_string", b"")
        if query and b"%00" in query:
            await _answer(scope, self._nul, 422)(scope, receive, send)
            return
        limit = self.max_body_bytes
        streamed = False
        for name, value in scope["headers"]:
            if name == b"content-length":
                if not value.isdigit() or int(value) > limit:
                    await _answer(scope, self._too_large, 413)(scope, receive, send)
                    return
                break
            if name == b"transfer-encoding":
                streamed = True
        if not streamed:
            # Within its Content-Length, or no body at all: nothing more to watch.
            await self.app(scope, receive, send)
            return
        received = 0
        message_text = self._too_large.message

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised into the route reading the body; the app's error handlers
                    # answer it like any HTTP error (api/errors.py).
                    raise HTTPException(413, message_text)
            return message

        await self.app(scope, limited_receive, send)
