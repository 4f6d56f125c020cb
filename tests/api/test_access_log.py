"""The access-log filter: which query values it redacts, and that it is installed once."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from rentabot.app import create_app
from rentabot.interfaces.access_log import RedactSecrets, redact_query
from rentabot.settings import Settings


@pytest.mark.parametrize(
    ("target", "logged"),
    [
        ("/r/1/unlock?lock-token=abc", "/r/1/unlock?lock-token=[redacted]"),
        ("/r?x=1&LOCK-TOKEN=abc&y=2", "/r?x=1&LOCK-TOKEN=[redacted]&y=2"),
        ("/r?lock%2Dtoken=abc", "/r?lock%2Dtoken=[redacted]"),
        ("/r?lock%2dtoken=abc;token=def", "/r?lock%2dtoken=[redacted];token=[redacted]"),
        (
            "/r?api_key=a&api-key=b&key=c&keys=d",
            "/r?api_key=[redacted]&api-key=[redacted]&key=[redacted]&keys=d",
        ),
        ("/r?lock-token=a=b&&", "/r?lock-token=[redacted]&&"),
        ("/r?lock-token", "/r?lock-token"),
        ("/r?tag=token", "/r?tag=token"),
        ("/r", "/r"),
    ],
)
def test_secret_query_values_are_redacted_and_nothing_else(target: str, logged: str) -> None:
    """`lock-token`, `token` and key values, however spelled, become [redacted]; the rest stays."""
    assert redact_query(target) == logged


def test_the_filter_rewrites_uvicorns_record_and_is_installed_once(
    client: TestClient, example_settings: Settings
) -> None:
    """Two apps started in one process install one filter, which redacts uvicorn's record."""
    with TestClient(create_app(example_settings)):  # a second app, a second lifespan
        pass
    logger = logging.getLogger("uvicorn.access")
    installed = [f for f in logger.filters if isinstance(f, RedactSecrets)]
    assert len(installed) == 1
    args = ("127.0.0.1:5", "POST", "/r/1/unlock?lock-token=abc", "1.1", 200)
    record = logger.makeRecord(
        "uvicorn.access", logging.INFO, "h11", 1, '%s - "%s %s HTTP/%s" %d', args, None
    )
    assert installed[0].filter(record)
    assert (
        record.getMessage() == '127.0.0.1:5 - "POST /r/1/unlock?lock-token=[redacted] HTTP/1.1" 200'
    )
