"""Compact JSON responses, built without FastAPI's response-model machinery.

The v1 lock path answers a few hundred bytes; encoding them directly is measurably cheaper
than validating them through a response model first.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import Response

_encode = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON response with the given status."""
    return Response(
        _encode(body).encode("utf-8"),
        status_code=status,
        media_type="application/json",
        headers=headers,
    )
