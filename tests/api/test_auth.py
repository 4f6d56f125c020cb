"""Who may act on what, through HTTP: other principals' leases, request ids, sessions and
their origin checks, a single-sign-on proxy's header, keys over the API, and the limits that
keep hostile input and floods out (docs/security.md)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from rentabot.app import create_app
from rentabot.domain.identity import Role
from rentabot.interfaces.auth import SESSION_COOKIE
from rentabot.service.bootstrap import prepare_database
from rentabot.settings import Settings
from tests.api.identities import error_code, is_html, revoke_key
from tests.support import EXAMPLES, V1, create_key, postgres_schema

SAME_ORIGIN = {"Origin": "http://testserver"}


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _key(secret: str) -> dict[str, str]:
    return {"X-API-Key": secret}


def _settings(database_url: str, **overrides: Any) -> Settings:
    """The example resources on that database; long-polls as short as they can be."""
    values: dict[str, Any] = {
        "database_url": database_url,
        "resource_descriptor": EXAMPLES,
        "long_poll_seconds": 0.5,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass(frozen=True)
class Keys:
    """The secrets of this test's keys, by who holds them."""

    alice: str  # lock
    bob: str  # lock
    reader: str  # read
    admin: str  # admin


@pytest.fixture
def settings(database_url: str) -> Settings:
    """The example resources on this test's SQLite database, prepared."""
    made = _settings(database_url)
    prepare_database(made)
    return made


@pytest.fixture
def keys(settings: Settings) -> Keys:
    """Two lock keys (alice-ci and bob-ci), a read key and an admin key."""
    url = settings.database_url
    return Keys(
        alice=create_key(url, "alice-ci", Role.LOCK),
        bob=create_key(url, "bob-ci", Role.LOCK),
        reader=create_key(url, "reader", Role.READ),
        admin=create_key(url, "ops", Role.ADMIN),
    )


@pytest.fixture
def api(settings: Settings, keys: Keys) -> Iterator[TestClient]:
    """An in-process client of the app (anonymous callers have the default lock role)."""
    with TestClient(create_app(settings)) as client:
        yield client


def _acquire(client: TestClient, body: dict[str, Any], **options: Any) -> dict[str, Any]:
    answer = client.post("/api/v2/leases", json=body, **options)
    assert answer.status_code == 201, answer.text
    lease: dict[str, Any] = answer.json()["lease"]
    return lease


def _lease(client: TestClient, lease_id: int, **options: Any) -> dict[str, Any]:
    answer = client.get(f"/api/v2/leases/{lease_id}", **options)
    assert answer.status_code == 200, answer.text
    lease: dict[str, Any] = answer.json()["lease"]
    return lease


def _resource_state(client: TestClient, resource_id: int) -> str:
    listing = client.get("/api/v2/resources").json()["resources"]
    state: str = next(r["state"] for r in listing if r["id"] == resource_id)
    return state


# ---------------------------------------------------------------------- other principals


def test_another_key_cannot_renew_release_or_read_the_token_of_a_lease(
    api: TestClient, keys: Keys
) -> None:
    """Key B cannot renew or release key A's lease (403 not_holder), nor see its token."""
    lease = _acquire(api, {"select": {"ids": [1]}, "ttl": 600}, headers=_key(keys.alice))
    lease_id, token = lease["id"], lease["token"]
    for method, path in [
        ("POST", f"/api/v2/leases/{lease_id}/renew"),
        ("DELETE", f"/api/v2/leases/{lease_id}"),
    ]:
        for extra in ({}, _bearer(str(uuid.uuid4()))):
            refused = api.request(method, path, headers={**_key(keys.bob), **extra})
            assert refused.status_code == 403, refused.text
            assert error_code(refused) == "not_holder"
            assert token not in refused.text
    for headers in (_key(keys.bob), _key(keys.reader), {}):
        seen = _lease(api, lease_id, headers=headers)
        assert seen["token"] is None
        assert (seen["state"], seen["principal"]) == ("active", "alice-ci")
    for listing in ("/api/v2/resources", "/api/v2/events", f"{V1}/resources", f"{V1}/resources/1"):
        assert token not in api.get(listing, headers=_key(keys.bob)).text
    mine = _lease(api, lease_id, headers=_key(keys.alice))
    assert (mine["state"], mine["token"], mine["expires_at"]) == (
        "active",
        token,
        lease["expires_at"],
    )


def test_the_holder_renews_and_releases_by_identity_without_the_token(
    api: TestClient, keys: Keys
) -> None:
    """Key A renews and releases its own lease with only its key; the audit names it."""
    lease = _acquire(api, {"select": {"ids": [2]}, "ttl": 60}, headers=_key(keys.alice))
    renewed = api.post(
        f"/api/v2/leases/{lease['id']}/renew", json={"ttl": 600}, headers=_key(keys.alice)
    )
    assert renewed.status_code == 200, renewed.text
    assert renewed.json()["lease"]["expires_at"] > lease["expires_at"] + 500
    released = api.delete(f"/api/v2/leases/{lease['id']}", headers=_key(keys.alice))
    assert released.status_code == 200, released.text
    assert released.json()["lease"]["state"] == "released"
    assert _resource_state(api, 2) == "available"
    events = api.get("/api/v2/events", params={"lease_id": lease["id"]}).json()["events"]
    assert {(e["kind"], e["actor"]) for e in events} >= {
        ("renewed", "alice-ci"),
        ("released", "alice-ci"),
    }


def test_without_the_token_nobody_anonymous_releases_and_a_token_holder_with_lock_can(
    api: TestClient, keys: Keys
) -> None:
    """Anonymous callers need the token; with it, any lock caller releases (a read key: 403)."""
    keyed = _acquire(api, {"select": {"ids": [1]}}, headers=_key(keys.alice))
    anonymous = _acquire(api, {"select": {"ids": [2]}})
    for lease in (keyed, anonymous):
        path = f"/api/v2/leases/{lease['id']}"
        refused = api.delete(path)
        assert (refused.status_code, error_code(refused)) == (403, "not_holder")
        by_other_key = api.delete(path, headers=_key(keys.bob))
        assert (by_other_key.status_code, error_code(by_other_key)) == (403, "not_holder")
        reader = api.delete(path, headers={**_key(keys.reader), **_bearer(lease["token"])})
        assert (reader.status_code, error_code(reader)) == (403, "forbidden")
        assert _lease(api, lease["id"])["state"] == "active"
    by_token = api.delete(f"/api/v2/leases/{keyed['id']}", headers=_bearer(keyed["token"]))
    assert by_token.status_code == 200, by_token.text
    handed_on = api.delete(
        f"/api/v2/leases/{anonymous['id']}",
        headers={**_key(keys.bob), **_bearer(anonymous["token"])},
    )
    assert handed_on.status_code == 200, handed_on.text
    assert (_resource_state(api, 1), _resource_state(api, 2)) == ("available", "available")


def test_tickets_are_polled_and_cancelled_by_their_principal_or_with_their_token_only(
    api: TestClient, keys: Keys
) -> None:
    """Only the ticket's key (by identity) or its token's bearer may poll or cancel it."""
    _acquire(api, {"select": {"ids": [3]}}, headers=_key(keys.alice))
    queued = api.post(
        "/api/v2/leases", json={"select": {"ids": [3]}, "wait": 600}, headers=_key(keys.bob)
    )
    assert queued.status_code == 202, queued.text
    ticket_id, token = queued.json()["ticket"]["id"], queued.json()["token"]
    path = f"/api/v2/tickets/{ticket_id}"
    for headers in (_key(keys.alice), {}, _bearer(str(uuid.uuid4()))):
        polled = api.get(path, params={"wait": 0}, headers=headers)
        assert (polled.status_code, error_code(polled)) == (403, "not_holder"), polled.text
        cancelled = api.delete(path, headers=headers)
        assert (cancelled.status_code, error_code(cancelled)) == (403, "not_holder")
        assert token not in polled.text + cancelled.text
    assert token not in api.get("/api/v2/queue").text
    mine = api.get(path, params={"wait": 0}, headers=_key(keys.bob))
    assert mine.status_code == 202, mine.text
    assert mine.json()["ticket"]["state"] == "waiting"
    with_token = api.get(path, params={"wait": 0}, headers=_bearer(token))
    assert with_token.status_code == 202, with_token.text
    cancelled = api.delete(path, headers=_key(keys.bob))
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["ticket"]["state"] == "cancelled"
    assert api.get("/api/v2/queue").json()["tickets"] == []


# ---------------------------------------------------------------------- request ids


def test_an_anonymous_request_id_replays_only_for_the_same_selection_and_owner(
    api: TestClient,
) -> None:
    """An anonymous request id replays only for its selection and owner: else 409, no token."""
    first = _acquire(api, {"select": {"ids": [3]}, "owner": "alice", "request_id": "gitlab-999"})
    for mallory in (
        {"select": {"ids": [5]}, "owner": "mallory", "request_id": "gitlab-999"},
        {"select": {"ids": [3]}, "owner": "mallory", "request_id": "gitlab-999"},
        {"select": {"ids": [3]}, "request_id": "gitlab-999"},
    ):
        refused = api.post("/api/v2/leases", json=mallory)
        assert refused.status_code == 409, refused.text
        assert error_code(refused) == "request_id_conflict"
        assert first["token"] not in refused.text
        assert "lease" not in refused.json()
    assert _resource_state(api, 5) == "available"
    again = api.post(
        "/api/v2/leases",
        json={"select": {"ids": [3]}, "owner": "alice", "request_id": "gitlab-999"},
    )
    assert again.status_code == 201, again.text
    assert (again.json()["lease"]["id"], again.json()["lease"]["token"]) == (
        first["id"],
        first["token"],
    )


def test_request_ids_belong_to_each_key(api: TestClient, keys: Keys) -> None:
    """Each key's request ids are its own: B never gets A's lease; A's reuse elsewhere is 409."""
    a_first = _acquire(
        api, {"select": {"ids": [1]}, "request_id": "gitlab-999"}, headers=_key(keys.alice)
    )
    b_first = _acquire(
        api, {"select": {"ids": [2]}, "request_id": "gitlab-999"}, headers=_key(keys.bob)
    )
    assert b_first["id"] != a_first["id"]
    assert b_first["principal"] == "bob-ci"
    same_as_a = api.post(
        "/api/v2/leases",
        json={"select": {"ids": [3]}, "request_id": "gitlab-998"},
        headers=_key(keys.alice),
    )
    assert same_as_a.status_code == 201
    b_asks_the_same = api.post(
        "/api/v2/leases",
        json={"select": {"ids": [3]}, "request_id": "gitlab-998"},
        headers=_key(keys.bob),
    )
    assert (b_asks_the_same.status_code, error_code(b_asks_the_same)) == (409, "busy")
    assert same_as_a.json()["lease"]["token"] not in b_asks_the_same.text
    retry = api.post(
        "/api/v2/leases",
        json={"select": {"ids": [1]}, "request_id": "gitlab-999"},
        headers=_key(keys.alice),
    )
    assert retry.status_code == 201, retry.text
    assert (retry.json()["lease"]["id"], retry.json()["lease"]["token"]) == (
        a_first["id"],
        a_first["token"],
    )
    other = api.post(
        "/api/v2/leases",
        json={"select": {"ids": [4]}, "request_id": "gitlab-999"},
        headers=_key(keys.alice),
    )
    assert (other.status_code, error_code(other)) == (409, "request_id_conflict")
    assert a_first["token"] not in other.text
    assert _resource_state(api, 4) == "available"


# ---------------------------------------------------------------------- sessions


def _cookie_attributes(answer: httpx.Response) -> tuple[str, dict[str, str]]:
    """The session cookie's value and its attributes (names lower-cased) as set by `answer`."""
    for header in answer.headers.get_list("set-cookie"):
        pair, *attributes = (part.strip() for part in header.split(";"))
        name, _, value = pair.partition("=")
        if name == SESSION_COOKIE:
            parsed = {}
            for attribute in attributes:
                key, _, setting = attribute.partition("=")
                parsed[key.lower()] = setting
            return value, parsed
    raise AssertionError(f"no {SESSION_COOKIE} cookie in {answer.headers}")


def _sign_in(client: TestClient, secret: str) -> str:
    """Sign in over the API (the cookie goes into the client's jar); the CSRF token."""
    answer = client.post("/api/v2/session", json={"key": secret})
    assert answer.status_code == 200, answer.text
    csrf: str = answer.json()["csrf_token"]
    return csrf


def _whoami(client: TestClient, **options: Any) -> dict[str, Any]:
    answer = client.get("/api/v2/whoami", **options)
    assert answer.status_code == 200, answer.text
    found: dict[str, Any] = answer.json()
    return found


def test_signing_in_sets_a_strict_http_only_session_cookie(
    api: TestClient, keys: Keys, settings: Settings
) -> None:
    """Signing in sets an HttpOnly, SameSite=Strict, Path=/ cookie with Max-Age, not Secure."""
    answer = api.post("/api/v2/session", json={"key": keys.alice})
    assert answer.status_code == 200, answer.text
    assert (answer.json()["principal"], answer.json()["role"]) == ("alice-ci", "lock")
    value, attributes = _cookie_attributes(answer)
    assert len(value) >= 43
    assert value not in answer.text
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "strict"
    assert attributes["path"] == "/"
    assert attributes["max-age"] == str(int(settings.session_ttl))
    assert "secure" not in attributes
    assert _whoami(api) == {"principal": "alice-ci", "role": "lock", "via": "session"}


def test_the_session_cookie_is_secure_over_https(settings: Settings, keys: Keys) -> None:
    """Signed in over HTTPS, the session cookie is also Secure."""
    with TestClient(create_app(settings), base_url="https://testserver") as client:
        answer = client.post("/api/v2/session", json={"key": keys.alice})
        assert answer.status_code == 200, answer.text
        _, attributes = _cookie_attributes(answer)
        assert "secure" in attributes
        assert _whoami(client)["via"] == "session"


@pytest.mark.parametrize(
    "refused",
    [
        pytest.param({}, id="no-origin"),
        pytest.param({"Origin": "http://testserver:8001"}, id="another-port"),
        pytest.param({"Origin": "http://evil.example"}, id="another-host"),
        pytest.param({"Origin": "null"}, id="null-origin"),
        pytest.param({"X-CSRF-Token": "0" * 64}, id="wrong-csrf-token"),
    ],
)
def test_a_cookie_authorised_write_must_come_from_this_origin_or_carry_the_csrf_token(
    api: TestClient, keys: Keys, refused: dict[str, str]
) -> None:
    """A write by cookie alone needs this server's Origin or the CSRF token: else 403."""
    csrf = _sign_in(api, keys.alice)
    first = _acquire(api, {"select": {"ids": [1]}}, headers=_key(keys.alice))
    second = _acquire(api, {"select": {"ids": [2]}}, headers=_key(keys.alice))
    assert first["principal"] == "alice-ci"
    answer = api.delete(f"/api/v2/leases/{first['id']}", headers=refused)
    assert (answer.status_code, error_code(answer)) == (403, "cross_origin"), answer.text
    renew = api.post(f"/api/v2/leases/{first['id']}/renew", headers=refused)
    assert (renew.status_code, error_code(renew)) == (403, "cross_origin")
    lock = api.post(f"{V1}/resources/3/lock", headers=refused)
    assert (lock.status_code, error_code(lock)) == (403, "cross_origin")
    assert _resource_state(api, 3) == "available"
    seen = _lease(api, first["id"])
    assert (seen["state"], seen["token"]) == ("active", first["token"])
    same_origin = api.delete(f"/api/v2/leases/{first['id']}", headers=SAME_ORIGIN)
    assert same_origin.status_code == 200, same_origin.text
    with_token = api.delete(f"/api/v2/leases/{second['id']}", headers={"X-CSRF-Token": csrf})
    assert with_token.status_code == 200, with_token.text


def test_an_admin_signed_in_at_the_page_needs_this_origin_for_operator_actions(
    api: TestClient, keys: Keys
) -> None:
    """An admin's cookie alone cannot change maintenance from another origin."""
    _sign_in(api, keys.admin)
    path = "/api/v2/resources/1/maintenance"
    refused = api.post(path, json={"on": True}, headers={"Origin": "http://evil.example"})
    assert (refused.status_code, error_code(refused)) == (403, "cross_origin")
    assert _resource_state(api, 1) == "available"
    done = api.post(path, json={"on": True, "reason": "bench move"}, headers=SAME_ORIGIN)
    assert done.status_code == 200, done.text
    assert _resource_state(api, 1) == "maintenance"


def test_signing_out_ends_the_session_on_the_server(api: TestClient, keys: Keys) -> None:
    """Signing out (from this origin only) ends the session: its old cookie is then nobody."""
    _sign_in(api, keys.alice)
    old = api.cookies[SESSION_COOKIE]
    cross = api.delete("/api/v2/session", headers={"Origin": "http://evil.example"})
    assert (cross.status_code, error_code(cross)) == (403, "cross_origin")
    assert _whoami(api)["via"] == "session"
    ended = api.delete("/api/v2/session", headers=SAME_ORIGIN)
    assert ended.status_code == 204
    assert SESSION_COOKIE not in api.cookies
    api.cookies.clear()
    replayed = _whoami(api, headers={"Cookie": f"{SESSION_COOKIE}={old}"})
    assert replayed == {"principal": None, "role": "lock", "via": "anonymous"}

    _sign_in(api, keys.alice)
    page_old = api.cookies[SESSION_COOKIE]
    cross_page = api.post("/signout", follow_redirects=False)
    assert cross_page.status_code == 403
    page = api.post("/signout", headers=SAME_ORIGIN, follow_redirects=False)
    assert (page.status_code, page.headers["location"]) == (303, "/")
    api.cookies.clear()
    assert _whoami(api, headers={"Cookie": f"{SESSION_COOKIE}={page_old}"})["via"] == "anonymous"


def test_revoking_a_key_ends_its_sessions(api: TestClient, keys: Keys) -> None:
    """A key revoked over the API ends its sessions at once."""
    _sign_in(api, keys.bob)
    assert _whoami(api)["principal"] == "bob-ci"
    assert api.delete("/api/v2/keys/bob-ci", headers=_key(keys.admin)).status_code == 204
    assert _whoami(api) == {"principal": None, "role": "lock", "via": "anonymous"}


def test_a_key_revoked_by_another_process_ends_its_sessions_within_two_seconds(
    api: TestClient, keys: Keys, settings: Settings
) -> None:
    """A key revoked by another process is refused, and its session ends, within 2 s."""
    _sign_in(api, keys.bob)
    assert _whoami(api)["principal"] == "bob-ci"
    assert _whoami(api, headers=_key(keys.bob))["principal"] == "bob-ci"
    revoke_key(settings.database_url, "bob-ci")
    deadline = time.monotonic() + 2.0
    while _whoami(api)["via"] == "session" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _whoami(api)["via"] == "anonymous"
    while api.get("/api/v2/whoami", headers=_key(keys.bob)).status_code == 200:
        assert time.monotonic() < deadline, "the revoked key is still accepted after 2 s"
        time.sleep(0.05)
    assert api.get("/api/v2/whoami", headers=_key(keys.bob)).status_code == 401


def test_the_sign_in_form_needs_this_origin_and_redirects_home_with_the_cookie(
    api: TestClient, keys: Keys
) -> None:
    """The sign-in form needs this origin (else 403), then sets the cookie with a 303 to /."""
    for headers in ({}, {"Origin": "http://evil.example"}, {"Origin": "http://testserver:8001"}):
        refused = api.post(
            "/signin", data={"key": keys.alice}, headers=headers, follow_redirects=False
        )
        assert refused.status_code == 403, refused.text
        assert not refused.headers.get_list("set-cookie")
    assert _whoami(api)["via"] == "anonymous"
    bad = api.post(
        "/signin", data={"key": "rbk_" + "x" * 43}, headers=SAME_ORIGIN, follow_redirects=False
    )
    assert (bad.status_code, is_html(bad)) == (401, True)
    assert not bad.headers.get_list("set-cookie")
    signed_in = api.post(
        "/signin", data={"key": keys.alice}, headers=SAME_ORIGIN, follow_redirects=False
    )
    assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/")
    _, attributes = _cookie_attributes(signed_in)
    assert "httponly" in attributes
    assert attributes["samesite"].lower() == "strict"
    assert _whoami(api) == {"principal": "alice-ci", "role": "lock", "via": "session"}


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_a_form_on_another_site_cannot_sign_in_through_the_api(
    api: TestClient, keys: Keys, content_type: str
) -> None:
    """What a cross-site form can post to POST /api/v2/session opens no session (422)."""
    answer = api.post(
        "/api/v2/session",
        content=json.dumps({"key": keys.alice}).encode(),
        headers={"Content-Type": content_type, "Origin": "http://evil.example"},
    )
    assert answer.status_code == 422, answer.text
    assert not answer.headers.get_list("set-cookie")
    assert _whoami(api)["via"] == "anonymous"


# ---------------------------------------------------------------------- single sign-on proxy

PROXIED = {
    "trusted_user_header": "X-Forwarded-User",
    "trusted_proxies": "10.0.0.0/8",
    "admin_users": "alice",
    "trusted_groups_header": "X-Forwarded-Groups",
    "admin_groups": "ops",
}
#: The proxy's address, inside RENTABOT_TRUSTED_PROXIES.
PROXY = ("10.1.2.3", 50000)


@pytest.fixture
def proxied_app(database_url: str) -> FastAPI:
    """An app trusting X-Forwarded-User (and -Groups) from 10.0.0.0/8; alice and the group
    ops are admins."""
    made = _settings(database_url, **PROXIED)
    prepare_database(made)
    return create_app(made)


@pytest.fixture
def through(proxied_app: FastAPI) -> Callable[[tuple[str, int]], Any]:
    """A client of the proxied app whose TCP peer is the given address."""

    @contextmanager
    def client(peer: tuple[str, int]) -> Iterator[TestClient]:
        with TestClient(proxied_app, client=peer) as made:
            yield made

    return client


@pytest.fixture
def keys_of_proxied(proxied_app: FastAPI, database_url: str) -> str:
    """A lock key on the proxied app's database."""
    return create_key(database_url, "erin", Role.LOCK)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-Forwarded-User": "bob"}, {"principal": "bob", "role": "lock", "via": "proxy"}),
        ({"X-Forwarded-User": "alice"}, {"principal": "alice", "role": "admin", "via": "proxy"}),
        (
            {"X-Forwarded-User": "carol", "X-Forwarded-Groups": "dev, ops"},
            {"principal": "carol", "role": "admin", "via": "proxy"},
        ),
        (
            {"X-Forwarded-User": "dave", "X-Forwarded-Groups": "dev,opsx"},
            {"principal": "dave", "role": "lock", "via": "proxy"},
        ),
        ({"X-Forwarded-User": ""}, {"principal": None, "role": "lock", "via": "anonymous"}),
        ({"X-Forwarded-User": "   "}, {"principal": None, "role": "lock", "via": "anonymous"}),
    ],
    ids=["user", "admin-user", "admin-group", "other-groups", "empty", "blank"],
)
def test_a_trusted_proxy_names_the_user_and_its_role(
    through: Callable[[tuple[str, int]], Any], headers: dict[str, str], expected: dict[str, Any]
) -> None:
    """A trusted proxy's header names the user, admin by name or group; a blank name: nobody."""
    with through(PROXY) as client:
        assert _whoami(client, headers=headers) == expected


@pytest.mark.parametrize(
    "peer", [("192.168.5.5", 40000), ("testclient", 50000)], ids=["lan-address", "testclient"]
)
def test_the_user_header_is_ignored_from_anyone_but_a_trusted_proxy(
    through: Callable[[tuple[str, int]], Any], peer: tuple[str, int]
) -> None:
    """From any peer but a trusted proxy, the user header is ignored (anonymous, no admin)."""
    headers = {"X-Forwarded-User": "alice", "X-Forwarded-Groups": "ops"}
    with through(peer) as client:
        assert _whoami(client, headers=headers) == {
            "principal": None,
            "role": "lock",
            "via": "anonymous",
        }
        refused = client.post(
            "/api/v2/resources/1/maintenance",
            json={"on": True},
            headers={**headers, **SAME_ORIGIN},
        )
        assert (refused.status_code, error_code(refused)) == (401, "unauthenticated")


def test_a_proxy_user_needs_this_origin_to_write(
    through: Callable[[tuple[str, int]], Any],
) -> None:
    """A proxy-authenticated write needs this server's (or the forwarded) Origin: else 403."""
    user = {"X-Forwarded-User": "bob"}
    with through(PROXY) as client:
        for origin in ({}, {"Origin": "http://evil.example"}):
            refused = client.post(
                "/api/v2/leases",
                json={"select": {"ids": [1]}},
                headers={**user, **origin},
            )
            assert (refused.status_code, error_code(refused)) == (403, "cross_origin")
        assert _resource_state(client, 1) == "available"
        lease = _acquire(client, {"select": {"ids": [1]}}, headers={**user, **SAME_ORIGIN})
        assert lease["principal"] == "bob"
        forwarded = {
            **user,
            "Origin": "https://rentabot.example",
            "X-Forwarded-Host": "rentabot.example",
        }
        released = client.delete(f"/api/v2/leases/{lease['id']}", headers=forwarded)
        assert released.status_code == 200, released.text


def test_forwarded_host_and_proto_are_believed_only_from_a_trusted_proxy(
    through: Callable[[tuple[str, int]], Any], keys_of_proxied: str
) -> None:
    """X-Forwarded-Host and X-Forwarded-Proto count only when a trusted proxy sends them."""
    https = {"X-Forwarded-Proto": "https"}
    with through(("192.168.5.5", 40000)) as client:
        answer = client.post("/api/v2/session", json={"key": keys_of_proxied}, headers=https)
        assert "secure" not in _cookie_attributes(answer)[1]
        spoofed = client.post(
            "/api/v2/leases",
            json={"select": {"ids": [2]}},
            headers={"Origin": "http://evil.example", "X-Forwarded-Host": "evil.example"},
        )
        assert (spoofed.status_code, error_code(spoofed)) == (403, "cross_origin")
    with through(PROXY) as client:
        answer = client.post("/api/v2/session", json={"key": keys_of_proxied}, headers=https)
        assert "secure" in _cookie_attributes(answer)[1]


# ---------------------------------------------------------------------- keys over the API


def test_admins_create_list_and_revoke_keys_over_the_api(api: TestClient, keys: Keys) -> None:
    """Admins create (secret once), list (no secret), refuse duplicates and revoke keys."""
    admin = _key(keys.admin)
    made = api.post("/api/v2/keys", json={"name": "ci-lab-1", "role": "lock"}, headers=admin)
    assert made.status_code == 201, made.text
    secret = made.json()["secret"]
    assert secret.startswith("rbk_")
    assert len(secret) == len("rbk_") + 43
    assert made.json()["key"]["name"] == "ci-lab-1"
    assert made.json()["key"]["role"] == "lock"
    assert _whoami(api, headers=_key(secret)) == {
        "principal": "ci-lab-1",
        "role": "lock",
        "via": "key",
    }
    listed = api.get("/api/v2/keys", headers=admin)
    assert listed.status_code == 200
    names = {key["name"] for key in listed.json()["keys"]}
    assert names == {"alice-ci", "bob-ci", "reader", "ops", "ci-lab-1"}
    for secret_of_someone in (secret, keys.alice, keys.admin):
        assert secret_of_someone not in listed.text
    assert "rbk_" not in listed.text
    duplicate = api.post("/api/v2/keys", json={"name": "ci-lab-1", "role": "admin"}, headers=admin)
    assert (duplicate.status_code, error_code(duplicate)) == (409, "key_exists")
    assert "rbk_" not in duplicate.text
    revoked = api.delete("/api/v2/keys/ci-lab-1", headers=admin)
    assert revoked.status_code == 204
    refused = api.get("/api/v2/whoami", headers=_key(secret))
    assert (refused.status_code, error_code(refused)) == (401, "unauthenticated")
    gone = api.get("/api/v2/keys", params={"revoked": True}, headers=admin).json()["keys"]
    assert [k["revoked_at"] is not None for k in gone if k["name"] == "ci-lab-1"] == [True]
    assert api.delete("/api/v2/keys/ci-lab-1", headers=admin).status_code == 404
    rotated = api.post("/api/v2/keys", json={"name": "ci-lab-1", "role": "read"}, headers=admin)
    assert rotated.status_code == 201, rotated.text
    assert rotated.json()["secret"] != secret
    assert _whoami(api, headers=_key(rotated.json()["secret"]))["role"] == "read"


def test_only_admins_manage_keys(api: TestClient, keys: Keys) -> None:
    """Keys are managed by admins only: a lock key gets 403, anonymous callers 401."""
    for headers, status, code in (
        (_key(keys.alice), 403, "forbidden"),
        ({}, 401, "unauthenticated"),
    ):
        for answer in (
            api.get("/api/v2/keys", headers=headers),
            api.post("/api/v2/keys", json={"name": "sneaky", "role": "admin"}, headers=headers),
            api.delete("/api/v2/keys/ops", headers=headers),
        ):
            assert (answer.status_code, error_code(answer)) == (status, code), answer.text
    names = {k["name"] for k in api.get("/api/v2/keys", headers=_key(keys.admin)).json()["keys"]}
    assert names == {"alice-ci", "bob-ci", "reader", "ops"}


# ---------------------------------------------------------------------- edge limits


@pytest.fixture
def small(database_url: str) -> Iterator[TestClient]:
    """An app refusing bodies over 2,048 bytes."""
    made = _settings(database_url, max_body_bytes=2048)
    prepare_database(made)
    with TestClient(create_app(made)) as client:
        yield client


def _chunks(body: bytes) -> Iterator[bytes]:
    """The body in 500-byte chunks: httpx sends a generator chunked, without Content-Length."""
    for start in range(0, len(body), 500):
        yield body[start : start + 500]


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_over_the_limit_is_refused_with_413(small: TestClient, framing: str) -> None:
    """A body over RENTABOT_MAX_BODY_BYTES, sized or chunked, is 413 too_large and does nothing."""
    body = json.dumps({"select": {"ids": [1]}, "description": "x" * 4000}).encode()
    content: bytes | Iterator[bytes] = body if framing == "content-length" else _chunks(body)
    answer = small.post(
        "/api/v2/leases", content=content, headers={"Content-Type": "application/json"}
    )
    sent = answer.request.headers
    assert ("content-length" in sent) is (framing == "content-length")
    assert (answer.status_code, error_code(answer)) == (413, "too_large"), answer.text
    assert _resource_state(small, 1) == "available"
    assert small.post("/api/v2/leases", json={"select": {"ids": [1]}}).status_code == 201


def test_a_v1_body_over_the_limit_is_refused_with_413(small: TestClient) -> None:
    """An oversized body to a v1 lock is 413 too_large too, and locks nothing."""
    answer = small.post(f"{V1}/resources/1/lock", content=b"x" * 4096)
    assert (answer.status_code, error_code(answer)) == (413, "too_large"), answer.text
    assert _resource_state(small, 1) == "available"


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("GET", "/api/v2/resources?tag=a%00b"),
        ("POST", f"{V1}/resources/lock?name=a%00b"),
        ("POST", "/api/v1.0/resources/lock?tag=%00"),
        ("POST", f"{V1}/resources/1/unlock?lock-token=%00"),
    ],
)
def test_a_nul_in_the_query_is_refused_with_422(api: TestClient, method: str, url: str) -> None:
    """A %00 in a query string is 422 invalid_request as JSON, and changes nothing."""
    answer = api.request(method, url)
    assert (answer.status_code, error_code(answer)) == (422, "invalid_request"), answer.text
    assert "NUL" in answer.text
    assert api.get("/api/v2/resources", params={"state": "locked"}).json()["total"] == 0


# ---------------------------------------------------------------------- text no database stores


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def stores(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TestClient]:
    """An app on each database, called with an admin key (so every route judges the text)."""

    @contextmanager
    def database() -> Iterator[str]:
        if request.param == "sqlite":
            directory: Path = tmp_path_factory.mktemp("unstorable")
            yield f"sqlite:///{directory / 'db.sqlite'}"
        else:
            with postgres_schema() as url:
                yield url

    with database() as url:
        made = _settings(url)
        prepare_database(made)
        admin = create_key(url, "ops", Role.ADMIN)
        with TestClient(create_app(made), raise_server_exceptions=False) as client:
            client.headers["X-API-Key"] = admin
            yield client


#: Where a client's text is stored: each body has BAD where the text goes.
TEXT_FIELDS = {
    "owner": ("/api/v2/leases", '{"select": {"ids": [1]}, "owner": "BAD"}'),
    "description": ("/api/v2/leases", '{"select": {"ids": [1]}, "description": "BAD"}'),
    "request_id": ("/api/v2/leases", '{"select": {"ids": [1]}, "request_id": "BAD"}'),
    "select.names": ("/api/v2/leases", '{"select": {"names": ["BAD"]}}'),
    "select.tags": ("/api/v2/leases", '{"select": {"tags": ["BAD"]}}'),
    "maintenance.reason": ("/api/v2/resources/1/maintenance", '{"on": true, "reason": "BAD"}'),
    "force-release.reason": ("/api/v2/resources/1/force-release", '{"reason": "BAD"}'),
    "key.name": ("/api/v2/keys", '{"name": "BAD", "role": "read"}'),
    "session.key": ("/api/v2/session", '{"key": "BAD"}'),
}
#: As JSON escapes: httpx cannot even encode a lone surrogate itself.
UNSTORABLE = {"lone-high-surrogate": "\\ud800", "lone-low-surrogate": "a\\udc80", "nul": "\\u0000"}


@pytest.mark.parametrize("bad", list(UNSTORABLE.values()), ids=list(UNSTORABLE))
@pytest.mark.parametrize("field", list(TEXT_FIELDS))
def test_text_no_database_can_store_is_refused_with_422(
    stores: TestClient, field: str, bad: str
) -> None:
    """A lone surrogate or NUL in any stored text is 422 (never 500/503); the app serves on."""
    path, template = TEXT_FIELDS[field]
    answer = stores.post(
        path,
        content=template.replace("BAD", bad).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 422, answer.text
    assert error_code(answer) == "invalid_request"
    assert field.split(".")[-1] in answer.json()["error"]["message"]
    after = stores.get("/api/v2/resources", params={"state": "available"})
    assert after.status_code == 200
    assert after.json()["total"] == 5


def test_text_with_a_surrogate_pair_is_stored_on_both_databases(stores: TestClient) -> None:
    """A surrogate pair is a real character: stored and read back as sent, on both databases."""
    answer = stores.post(
        "/api/v2/leases",
        content=b'{"select": {"ids": [2]}, "owner": "ci \\ud83d\\ude00", "request_id": "r-1"}',
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 201, answer.text
    lease = answer.json()["lease"]
    try:
        assert lease["owner"] == "ci \U0001f600"
        assert (
            stores.get(f"/api/v2/leases/{lease['id']}").json()["lease"]["owner"] == lease["owner"]
        )
    finally:
        stores.post("/api/v2/resources/2/force-release", json={"reason": "test over"})


# ---------------------------------------------------------------------- waiting and streams


def _wait_for(client: TestClient, resource_id: int, headers: dict[str, str]) -> httpx.Response:
    """Ask for a held resource, willing to wait long: 202 after the 0.5 s long-poll."""
    return client.post(
        "/api/v2/leases", json={"select": {"ids": [resource_id]}, "wait": 600}, headers=headers
    )


def test_waiting_requests_are_limited_per_principal_and_in_all(
    database_url: str,
) -> None:
    """Waiting past the per-principal limit is 429 too_many_waiting; past the total, queue_full."""
    made = _settings(database_url, max_waiting=3, max_waiting_per_principal=2)
    prepare_database(made)
    alice = _key(create_key(database_url, "alice-ci", Role.LOCK))
    bob = _key(create_key(database_url, "bob-ci", Role.LOCK))
    with TestClient(create_app(made)) as client:
        _acquire(client, {"select": {"ids": [1]}})
        for _ in range(2):
            assert _wait_for(client, 1, alice).status_code == 202
        third = _wait_for(client, 1, alice)
        assert (third.status_code, error_code(third)) == (429, "too_many_waiting"), third.text
        assert _wait_for(client, 1, bob).status_code == 202
        for headers in (bob, {}):
            full = _wait_for(client, 1, headers)
            assert (full.status_code, error_code(full)) == (429, "queue_full"), full.text
        waiting = client.get("/api/v2/queue").json()["tickets"]
        assert sorted(t["principal"] for t in waiting) == ["alice-ci", "alice-ci", "bob-ci"]


def test_anonymous_callers_share_one_allowance_of_waiting_requests(database_url: str) -> None:
    """Anonymous callers share one waiting allowance, whatever owner they write."""
    made = _settings(database_url, max_waiting_per_principal=2)
    prepare_database(made)
    alice = _key(create_key(database_url, "alice-ci", Role.LOCK))
    with TestClient(create_app(made)) as client:
        _acquire(client, {"select": {"ids": [1]}}, headers=alice)
        for owner in ("job-1", "job-2"):
            queued = client.post(
                "/api/v2/leases", json={"select": {"ids": [1]}, "wait": 600, "owner": owner}
            )
            assert queued.status_code == 202
        third = client.post(
            "/api/v2/leases", json={"select": {"ids": [1]}, "wait": 600, "owner": "job-3"}
        )
        assert (third.status_code, error_code(third)) == (429, "too_many_waiting"), third.text
        assert _wait_for(client, 1, alice).status_code == 202


def test_event_stream_clients_are_limited_and_a_leaving_one_frees_its_place(
    database_url: str,
) -> None:
    """Event-stream clients past the limit get 429; a client that leaves frees its place."""
    made = _settings(database_url, max_stream_subscribers=1)
    prepare_database(made)
    with TestClient(create_app(made)) as client:
        with client.stream("GET", "/api/v2/events/stream") as first:
            assert first.status_code == 200
            # Keep the iterator: dropping it would close the stream.
            chunks = first.iter_bytes()
            assert next(chunks).startswith(b"retry:")
            with client.stream("GET", "/api/v2/events/stream") as second:
                assert second.status_code == 429  # before reading: a stream never ends
                second.read()
                assert error_code(second) == "too_many_subscribers"
        deadline = time.monotonic() + 2.0
        while True:
            with client.stream("GET", "/api/v2/events/stream") as again:
                if again.status_code == 200:
                    next(again.iter_bytes())
                    break
                again.read()
            assert time.monotonic() < deadline, "the place of the first client never came back"
            time.sleep(0.05)


def test_a_stream_closed_before_its_first_event_gives_its_place_back(database_url: str) -> None:
    """Clients that connect and hang up before reading anything (the stream's code never
    ran) still free their places: the next client gets in, not a 429."""
    made = _settings(database_url, max_stream_subscribers=1)
    prepare_database(made)
    with TestClient(create_app(made)) as client:
        for _ in range(5):
            with client.stream("GET", "/api/v2/events/stream") as gone:
                assert gone.status_code == 200
        deadline = time.monotonic() + 2.0
        while True:
            with client.stream("GET", "/api/v2/events/stream") as last:
                if last.status_code == 200:
                    assert next(last.iter_bytes()).startswith(b"retry:")
                    break
            assert time.monotonic() < deadline, "a client that never read kept its place"
            time.sleep(0.05)
