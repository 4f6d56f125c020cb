"""Bad input on upstream 1.x's `/api/v1`: always a 4xx JSON answer, never a 5xx, including
the values that make 1.x itself answer 500 or grant an already expired lock."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from rentabot.app import create_app
from rentabot.service.bootstrap import prepare_database
from rentabot.settings import Settings
from tests.support import postgres_schema, write_descriptor

API = "/api/v1/resources"

#: Lock bodies 1.x answers with 500 (ttl <= -1e11), or with an expired lock (ttl <= 0).
BAD_TTLS: list[Any] = [
    0,
    -1,
    -(10**11),
    -(10**12),
    10**400,
    86401,
    3 * 10**11,
    1.5,
    "abc",
    "",
    None,
    True,
    [],
    {},
    "\u0000",
]

#: additional-ttl values: 1.x answers 500 from 3e11 up and from -1e11 down.
BAD_ADDITIONAL = [
    "0",
    "-1",
    str(-(10**11)),
    str(3 * 10**11),
    "9" * 5000,
    "1e3",
    "nan",
    "inf",
    "",
    "1.5",
    "%ED%A0%80",
    "%00",
]

#: Path ids and query values no resource has.
BAD_IDS = ["0", "-1", "9" * 30, "1e3", "abc", "%00", "%F0%9F%A4%96", "9" * 5000]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """An app on each database with three resources."""
    directory: Path = tmp_path_factory.mktemp(f"upstream-bad-{request.param}")
    descriptor = write_descriptor(
        directory / "r.yml", {f"r{n}": {"tags": "a,b"} for n in range(1, 4)}
    )

    def run(url: str) -> Iterator[TestClient]:
        settings = Settings(database_url=url, resource_descriptor=descriptor)
        prepare_database(settings)
        with TestClient(create_app(settings), raise_server_exceptions=False) as client:
            yield client

    if request.param == "sqlite":
        yield from run(f"sqlite:///{directory / 'db.sqlite'}")
    else:
        with postgres_schema() as url:
            yield from run(url)


def _refused(answer: Any) -> None:
    assert 400 <= answer.status_code < 500, (answer.status_code, answer.text[:300])
    assert answer.headers["content-type"].startswith("application/json"), answer.text[:200]


@pytest.mark.parametrize("ttl", BAD_TTLS, ids=lambda value: repr(value)[:40])
def test_a_bad_ttl_is_refused_and_locks_nothing(api: TestClient, ttl: Any) -> None:
    """Each bad ttl is a 4xx on both lock routes, and resource 1 stays free."""
    _refused(api.post(f"{API}/1/lock", json={"ttl": ttl}))
    _refused(api.post(f"{API}/lock?id=1", json={"ttl": ttl}))
    assert api.get(f"{API}/1").json()["resource"]["lock-token"] == ""


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[1]",
        b"[" * 100_000,
        b'{"ttl": ' + b"9" * 5000 + b"}",
        b'{"ttl": 1e308}',
        b'"ttl"',
        b"null",
        b"\xff\xfe",
        b'{"ttl": NaN}',
        b'{"ttl": Infinity}',
    ],
    ids=lambda value: repr(value)[:40],
)
def test_a_body_that_is_not_a_usable_json_object_is_refused(api: TestClient, body: bytes) -> None:
    """Malformed JSON, or JSON that is not an object, or NaN: 422, nothing locked."""
    answer = api.post(f"{API}/2/lock", content=body, headers={"content-type": "application/json"})
    assert answer.status_code == 422, answer.text
    assert api.get(f"{API}/2").json()["resource"]["lock-token"] == ""


def test_a_form_body_is_422_as_in_1x(api: TestClient) -> None:
    """A form-encoded body is 422, as 1.x answers it."""
    assert api.post(f"{API}/2/lock", data={"ttl": "60"}).status_code == 422


@pytest.mark.parametrize("additional", BAD_ADDITIONAL, ids=lambda value: repr(value)[:40])
def test_a_bad_additional_ttl_is_refused_and_changes_nothing(
    api: TestClient, additional: str
) -> None:
    """Each bad additional-ttl is a 4xx; the lock keeps its deadline."""
    locked = api.post(f"{API}/3/lock", json={"ttl": 600}).json()
    token = locked["lock-token"]
    try:
        _refused(api.post(f"{API}/3/extend?lock-token={token}&additional-ttl={additional}"))
        shown = api.get(f"{API}/3").json()["resource"]
        assert shown["lock-token"] == "hidden"
        assert shown["lock-expires-at"] == locked["resource"]["lock-expires-at"]
    finally:
        api.post(f"{API}/3/unlock", params={"lock-token": token})


@pytest.mark.parametrize("raw", BAD_IDS, ids=lambda value: repr(value)[:40])
def test_bad_ids_on_every_route_are_4xx(api: TestClient, raw: str) -> None:
    """A path or query id that names nothing: 4xx everywhere (404, 422 or 400)."""
    _refused(api.get(f"{API}/{raw}"))
    _refused(api.post(f"{API}/{raw}/lock"))
    _refused(api.post(f"{API}/{raw}/unlock?lock-token=x"))
    _refused(api.post(f"{API}/{raw}/extend?lock-token=x&additional-ttl=5"))
    _refused(api.post(f"{API}/lock?id={raw}"))


@pytest.mark.parametrize(
    "query",
    [
        "name=%00",
        "name=%ED%A0%80",
        "tag=%00",
        "tag=" + "x" * 5000,
        "name=" + "y" * 5000,
        "tag=a&tag=%ED%A0%80",
        "name=",
        "tag=",
        "id=",
        "unknown=1",
    ],
)
def test_bad_criteria_are_4xx(api: TestClient, query: str) -> None:
    """Unstorable, oversized or empty names and tags: 4xx, never a driver's 500."""
    _refused(api.post(f"{API}/lock?{query}"))


@pytest.mark.parametrize("token", ["%00", "%ED%A0%80", "x" * 5000, ""])
def test_bad_tokens_are_4xx(api: TestClient, token: str) -> None:
    """Unstorable or oversized tokens on unlock and extend: 403, never a 500."""
    _refused(api.post(f"{API}/1/unlock?lock-token={token}"))
    _refused(api.post(f"{API}/1/extend?lock-token={token}&additional-ttl=5"))
