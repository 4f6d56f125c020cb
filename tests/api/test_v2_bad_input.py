"""Malformed v2 requests get a JSON 4xx saying what is wrong, never a 500."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rentabot.app import create_app
from rentabot.service.bootstrap import prepare_database
from rentabot.settings import Settings

HUGE = 2**70
BEARER = {"Authorization": "Bearer x"}


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app on the example resources for the whole table, called with an admin key (so
    every route judges the input, not the caller)."""
    from tests.support import EXAMPLES, create_key

    directory = tmp_path_factory.mktemp("v2-bad-input")
    settings = Settings(
        database_url=f"sqlite:///{directory / 'db.sqlite'}", resource_descriptor=EXAMPLES
    )
    prepare_database(settings)
    admin = create_key(settings.database_url, "admin")
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        client.headers["X-API-Key"] = admin
        yield client


CASES: list[tuple[str, str, dict[str, Any]]] = [
    ("post", "/api/v2/leases", {"json": {"select": {"ids": [HUGE]}}}),
    ("post", "/api/v2/leases", {"json": {"select": {"ids": [0]}}}),
    ("post", "/api/v2/leases", {"json": {"select": {"ids": [-5]}}}),
    ("post", "/api/v2/leases", {"json": {"select": {"names": ["a\x00b"]}}}),
    ("post", "/api/v2/leases", {"json": {"select": {"tags": ["x"]}, "owner": "a\x00b"}}),
    ("post", "/api/v2/leases", {"json": {"select": {"tags": ["x"]}, "request_id": "\x00"}}),
    ("post", "/api/v2/leases", {"json": {"select": {"tags": ["x"]}, "ttl": -1}}),
    ("post", "/api/v2/leases", {"json": {"select": {"tags": ["x"]}, "wait": -1}}),
    ("post", "/api/v2/leases", {"json": {"select": {"count": 0}}}),
    ("post", "/api/v2/leases", {"json": ["not", "an", "object"]}),
    (
        "post",
        "/api/v2/leases",
        {"content": b"\xff\xfe", "headers": {"content-type": "application/json"}},
    ),
    ("get", f"/api/v2/leases/{HUGE}", {"headers": BEARER}),
    ("get", "/api/v2/leases/0", {"headers": BEARER}),
    ("get", "/api/v2/leases/abc", {"headers": BEARER}),
    ("get", "/api/v2/leases/1", {}),
    ("get", "/api/v2/leases/1", {"headers": {"Authorization": "Basic eDp5"}}),
    ("post", f"/api/v2/leases/{HUGE}/renew", {"headers": BEARER}),
    ("delete", f"/api/v2/leases/{HUGE}", {"headers": BEARER}),
    ("get", f"/api/v2/tickets/{HUGE}", {"headers": BEARER}),
    ("get", "/api/v2/tickets/1", {"headers": BEARER, "params": {"wait": -1}}),
    ("delete", f"/api/v2/tickets/{HUGE}", {"headers": BEARER}),
    ("post", f"/api/v2/resources/{HUGE}/maintenance", {"json": {"on": True}}),
    ("post", "/api/v2/resources/1/maintenance", {"json": {"on": "maybe"}}),
    ("post", f"/api/v2/resources/{HUGE}/force-release", {"json": {}}),
    ("get", "/api/v2/events", {"params": {"since": HUGE}}),
    ("get", "/api/v2/events", {"params": {"resource_id": HUGE}}),
    ("get", "/api/v2/events", {"params": {"limit": 0}}),
    ("get", "/api/v2/resources", {"params": {"offset": HUGE}}),
    ("get", "/api/v2/resources", {"params": {"state": "sleeping"}}),
    ("get", "/api/v2/nothing-here", {}),
    ("put", "/api/v2/leases", {}),
]


@pytest.mark.parametrize(("method", "path", "options"), CASES)
def test_malformed_v2_request_answers_json_4xx(
    api: TestClient, method: str, path: str, options: dict[str, Any]
) -> None:
    """Every malformed request: 4xx, JSON, an error code and a message."""
    answer = getattr(api, method)(path, **options)
    assert 400 <= answer.status_code < 500, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert error["code"]
    assert error["message"]


#: Past the 4,300 digits Python's int() accepts, and what float() reads as inf or nan.
NUMBERS = {"5000-digits": "9" * 5000, "1e999": "1e999", "nan": "nan", "inf": "inf", "-inf": "-inf"}
NUMBER_CASES = [
    pytest.param(method, path.format(n=number), options, id=f"{label}-{name}")
    for name, number in NUMBERS.items()
    for label, method, path, options in [
        ("get-lease", "get", "/api/v2/leases/{n}", {"headers": BEARER}),
        ("renew", "post", "/api/v2/leases/{n}/renew", {"headers": BEARER}),
        ("release", "delete", "/api/v2/leases/{n}", {"headers": BEARER}),
        ("poll", "get", "/api/v2/tickets/{n}", {"headers": BEARER}),
        ("cancel", "delete", "/api/v2/tickets/{n}", {"headers": BEARER}),
        ("poll-wait", "get", "/api/v2/tickets/1?wait={n}", {"headers": BEARER}),
        ("maintenance", "post", "/api/v2/resources/{n}/maintenance", {"json": {"on": True}}),
        ("force-release", "post", "/api/v2/resources/{n}/force-release", {"json": {}}),
        ("resources-offset", "get", "/api/v2/resources?offset={n}", {}),
        ("resources-limit", "get", "/api/v2/resources?limit={n}", {}),
        ("events-since", "get", "/api/v2/events?since={n}", {}),
        ("events-resource", "get", "/api/v2/events?resource_id={n}", {}),
        ("events-lease", "get", "/api/v2/events?lease_id={n}", {}),
        ("events-limit", "get", "/api/v2/events?limit={n}", {}),
        ("stream-since", "get", "/api/v2/events/stream?since={n}", {}),
    ]
]


@pytest.mark.parametrize(("method", "path", "options"), NUMBER_CASES)
def test_huge_or_non_finite_numbers_answer_404_or_422(
    api: TestClient, method: str, path: str, options: dict[str, Any]
) -> None:
    """A 5,000-digit, infinite or NaN id, offset, limit or wait: 404 or 422 with a JSON error."""
    answer = getattr(api, method)(path, **options)
    assert answer.status_code in (404, 422), answer.text[:300]
    assert answer.json()["error"]["code"] in ("not_found", "invalid_request")
