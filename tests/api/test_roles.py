"""Every route declares the role it needs, and every caller gets exactly what its role allows.

The route table below is the decision for each route: a route added to the app without an
entry here fails `test_the_table_names_every_route_and_its_role`, so whoever adds it decides
who may call it. The role matrix then calls every route as every kind of caller, under each
anonymous role, and checks that the refusals (401 and 403) are exactly the expected ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pytest
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.testclient import TestClient
from starlette.routing import Route

from rentabot.app import create_app
from rentabot.domain.identity import Role
from rentabot.interfaces.auth import Needs
from rentabot.service.bootstrap import prepare_database
from rentabot.settings import Settings
from tests.api.identities import error_code, is_html, revoke_key
from tests.support import EXAMPLES, create_key

V1_PREFIXES = ("/rentabot/api/v1.0", "/api/v1.0")

#: Who may call each route: (method, path as declared, without `:convertor`) → least role.
#: A new route must be added here: the test below fails until it is.
ROUTE_ROLES: dict[tuple[str, str], Role] = {
    **{
        route: role
        for prefix in V1_PREFIXES
        for route, role in {
            ("GET", f"{prefix}/resources"): Role.READ,
            ("GET", f"{prefix}/resources/{{resource_id}}"): Role.READ,
            ("POST", f"{prefix}/resources/lock"): Role.LOCK,
            ("POST", f"{prefix}/resources/{{resource_id}}/lock"): Role.LOCK,
            ("POST", f"{prefix}/resources/{{resource_id}}/unlock"): Role.LOCK,
        }.items()
    },
    ("GET", "/api/v1/resources"): Role.READ,
    ("GET", "/api/v1/resources/{resource_id}"): Role.READ,
    ("POST", "/api/v1/resources/lock"): Role.LOCK,
    ("POST", "/api/v1/resources/{resource_id}/lock"): Role.LOCK,
    ("POST", "/api/v1/resources/{resource_id}/unlock"): Role.LOCK,
    ("POST", "/api/v1/resources/{resource_id}/extend"): Role.LOCK,
    ("GET", "/api/v1/reservations"): Role.READ,
    ("POST", "/api/v1/reservations"): Role.LOCK,
    ("GET", "/api/v1/reservations/{reservation_id}"): Role.READ,
    ("DELETE", "/api/v1/reservations/{reservation_id}"): Role.LOCK,
    ("POST", "/api/v1/reservations/{reservation_id}/claim"): Role.LOCK,
    ("GET", "/health"): Role.NONE,
    ("GET", "/readiness"): Role.NONE,
    ("POST", "/api/v2/leases"): Role.LOCK,
    ("GET", "/api/v2/leases/{lease_id}"): Role.READ,
    ("POST", "/api/v2/leases/{lease_id}/renew"): Role.LOCK,
    ("DELETE", "/api/v2/leases/{lease_id}"): Role.LOCK,
    ("GET", "/api/v2/tickets/{ticket_id}"): Role.LOCK,
    ("DELETE", "/api/v2/tickets/{ticket_id}"): Role.LOCK,
    ("GET", "/api/v2/queue"): Role.READ,
    ("GET", "/api/v2/resources"): Role.READ,
    ("POST", "/api/v2/resources/{resource_id}/maintenance"): Role.ADMIN,
    ("POST", "/api/v2/resources/{resource_id}/force-release"): Role.ADMIN,
    ("GET", "/api/v2/events"): Role.READ,
    ("GET", "/api/v2/resources/{resource_id}/history"): Role.READ,
    ("GET", "/api/v2/resources/{resource_id}/usage"): Role.READ,
    ("GET", "/api/v2/tags/{tag}/usage"): Role.READ,
    ("GET", "/api/v2/tags/usage"): Role.READ,
    ("GET", "/api/v2/queue/estimates"): Role.READ,
    ("GET", "/api/v2/events/stream"): Role.READ,
    ("GET", "/api/v2/whoami"): Role.NONE,
    ("POST", "/api/v2/session"): Role.NONE,
    ("DELETE", "/api/v2/session"): Role.NONE,
    ("GET", "/api/v2/keys"): Role.ADMIN,
    ("POST", "/api/v2/keys"): Role.ADMIN,
    ("DELETE", "/api/v2/keys/{name}"): Role.ADMIN,
    ("GET", "/healthz"): Role.NONE,
    ("GET", "/openapi.json"): Role.NONE,
    ("GET", "/docs"): Role.NONE,
    ("GET", "/"): Role.READ,
    ("GET", "/queue"): Role.READ,
    ("GET", "/tags"): Role.READ,
    ("GET", "/tags/{tag}"): Role.READ,
    ("GET", "/activity"): Role.READ,
    ("GET", "/signin"): Role.NONE,
    ("POST", "/signin"): Role.NONE,
    ("POST", "/signout"): Role.NONE,
    ("GET", "/static/{name}"): Role.NONE,
    ("GET", "/resources/{resource_id}"): Role.READ,
    ("POST", "/actions/reserve"): Role.LOCK,
    ("POST", "/actions/extend"): Role.LOCK,
    ("POST", "/actions/release"): Role.LOCK,
    ("POST", "/actions/cancel"): Role.LOCK,
    ("POST", "/actions/join"): Role.LOCK,
    ("POST", "/actions/maintenance"): Role.ADMIN,
    ("POST", "/actions/force-release"): Role.ADMIN,
}

_CONVERTOR = re.compile(r"\{(\w+):\w+\}")


def _needs_of(dependant: Dependant) -> list[Needs]:
    """Every `Needs` among a FastAPI route's dependencies, however deeply nested."""
    found: list[Needs] = []
    for sub in dependant.dependencies:
        if isinstance(sub.call, Needs):
            found.append(sub.call)
        found += _needs_of(sub)
    return found


@dataclass(frozen=True)
class Declared:
    """What the app's route table says of one route."""

    method: str
    path: str
    #: The role it needs; None when it declares none.
    role: Role | None
    kind: str


def declared_routes(app: FastAPI) -> list[Declared]:
    """Every (method, path) the app serves, with the role it declares.

    FastAPI (since 0.137) keeps an included router as one opaque entry of `app.routes`:
    `iter_route_contexts` flattens them, as the OpenAPI generator does. HEAD, which
    Starlette adds to every GET route, is the GET route itself and is left out."""
    found: list[Declared] = []
    for route in iter_route_contexts(app.routes):
        original = route.original_route
        needs: list[Needs] = []
        if isinstance(original, APIRoute):  # a Starlette Route too: ask it first
            dependant = getattr(route, "dependant", None)
            if isinstance(dependant, Dependant):
                needs = _needs_of(dependant)
        elif isinstance(original, Route):
            needed = getattr(route.endpoint, "needs", None)
            needs = [needed] if isinstance(needed, Needs) else []
        # Several checks: the strictest decides.
        role = max((n.role for n in needs), default=None)
        path = _CONVERTOR.sub(r"{\1}", str(route.path))
        for method in sorted((route.methods or {"?"}) - {"HEAD"}):
            found.append(Declared(method, path, role, type(original).__name__))
    return found


@pytest.fixture(scope="module")
def app_routes(tmp_path_factory: pytest.TempPathFactory) -> list[Declared]:
    """The route table of an app as `rentabot serve` builds it."""
    directory = tmp_path_factory.mktemp("route-table")
    settings = Settings(database_url=f"sqlite:///{directory / 'db.sqlite'}")
    return declared_routes(create_app(settings))


def test_every_route_declares_a_role(app_routes: list[Declared]) -> None:
    """No route is reachable without declaring, through `Needs`, who may call it."""
    undeclared = [f"{r.method} {r.path} ({r.kind})" for r in app_routes if r.role is None]
    assert app_routes, "the walk found no route at all"
    assert not undeclared, "routes without a Needs(role):\n" + "\n".join(undeclared)


def test_the_table_names_every_route_and_its_role(app_routes: list[Declared]) -> None:
    """Every route needs exactly the role ROUTE_ROLES gives it, and ROUTE_ROLES names them all."""
    served = {(r.method, r.path): r.role for r in app_routes}
    assert len(served) == len(app_routes), "a (method, path) is served twice"
    unlisted = sorted(set(served) - set(ROUTE_ROLES))
    gone = sorted(set(ROUTE_ROLES) - set(served))
    assert not unlisted, f"routes missing from ROUTE_ROLES (decide their role): {unlisted}"
    assert not gone, f"ROUTE_ROLES lists routes the app no longer serves: {gone}"
    wrong = {
        f"{method} {path}": (role.label if role is not None else None, ROUTE_ROLES[method, path])
        for (method, path), role in served.items()
        if role is not ROUTE_ROLES[method, path]
    }
    assert not wrong, f"declared role differs from the table (declared, table): {wrong}"


# ---------------------------------------------------------------------- the role matrix

#: A key name nobody creates: revoking it answers 404 to whoever may try.
NO_SUCH_KEY = "nobody-has-this-key"
#: Looks like a key, but the server never issued it.
UNKNOWN_KEY = "rbk_" + "x" * 43
CALLERS = ("anonymous", "read", "lock", "admin", "revoked", "unknown")


@dataclass
class Matrix:
    """One app for the matrix, and the secrets of its callers."""

    client: TestClient
    anonymous_role: Role
    keys: dict[str, str] = field(default_factory=dict)


#: How to call each route once: its URL and a minimal valid request (a body where one is
#: needed), given the matrix (sign-in needs a real key). Ids name rows that exist once any
#: caller has locked something; whatever the route then answers (200, 404, 409…) is fine,
#: as long as it is not a refusal of the caller.
Call = Callable[[Matrix], tuple[str, dict[str, Any]]]


def _v1_calls(prefix: str) -> dict[tuple[str, str], Call]:
    base = f"{prefix}/resources"
    return {
        ("GET", base): lambda m: (base, {}),
        ("GET", f"{base}/{{resource_id}}"): lambda m: (f"{base}/1", {}),
        ("POST", f"{base}/lock"): lambda m: (f"{base}/lock", {"params": {"id": 2}}),
        ("POST", f"{base}/{{resource_id}}/lock"): lambda m: (f"{base}/1/lock", {}),
        ("POST", f"{base}/{{resource_id}}/unlock"): lambda m: (
            f"{base}/1/unlock",
            {"params": {"lock-token": "not-the-token"}},
        ),
    }


SAME_ORIGIN = {"Origin": "http://testserver"}

CALLS: dict[tuple[str, str], Call] = {
    **_v1_calls(V1_PREFIXES[0]),
    **_v1_calls(V1_PREFIXES[1]),
    ("GET", "/api/v1/resources"): lambda m: ("/api/v1/resources", {}),
    ("GET", "/api/v1/resources/{resource_id}"): lambda m: ("/api/v1/resources/2", {}),
    ("POST", "/api/v1/resources/lock"): lambda m: ("/api/v1/resources/lock?name=nope", {}),
    ("POST", "/api/v1/resources/{resource_id}/lock"): lambda m: ("/api/v1/resources/6/lock", {}),
    ("POST", "/api/v1/resources/{resource_id}/unlock"): lambda m: (
        "/api/v1/resources/6/unlock?lock-token=x",
        {},
    ),
    ("POST", "/api/v1/resources/{resource_id}/extend"): lambda m: (
        "/api/v1/resources/6/extend?lock-token=x&additional-ttl=10",
        {},
    ),
    ("GET", "/api/v1/reservations"): lambda m: ("/api/v1/reservations", {}),
    ("POST", "/api/v1/reservations"): lambda m: (
        "/api/v1/reservations",
        {"json": {"tags": ["nope-no-such-tag"], "quantity": 1}},
    ),
    ("GET", "/api/v1/reservations/{reservation_id}"): lambda m: (
        "/api/v1/reservations/res_0",
        {},
    ),
    ("DELETE", "/api/v1/reservations/{reservation_id}"): lambda m: (
        "/api/v1/reservations/res_0",
        {},
    ),
    ("POST", "/api/v1/reservations/{reservation_id}/claim"): lambda m: (
        "/api/v1/reservations/res_0/claim",
        {},
    ),
    ("GET", "/health"): lambda m: ("/health", {}),
    ("GET", "/readiness"): lambda m: ("/readiness", {}),
    ("POST", "/api/v2/leases"): lambda m: ("/api/v2/leases", {"json": {"select": {"ids": [3]}}}),
    ("GET", "/api/v2/leases/{lease_id}"): lambda m: ("/api/v2/leases/1", {}),
    ("POST", "/api/v2/leases/{lease_id}/renew"): lambda m: ("/api/v2/leases/1/renew", {}),
    ("DELETE", "/api/v2/leases/{lease_id}"): lambda m: ("/api/v2/leases/1", {}),
    # wait=0: never a long-poll.
    ("GET", "/api/v2/tickets/{ticket_id}"): lambda m: (
        "/api/v2/tickets/1",
        {"params": {"wait": 0}},
    ),
    ("DELETE", "/api/v2/tickets/{ticket_id}"): lambda m: ("/api/v2/tickets/1", {}),
    ("GET", "/api/v2/queue"): lambda m: ("/api/v2/queue", {}),
    ("GET", "/api/v2/resources"): lambda m: ("/api/v2/resources", {}),
    ("POST", "/api/v2/resources/{resource_id}/maintenance"): lambda m: (
        "/api/v2/resources/4/maintenance",
        {"json": {"on": False}},
    ),
    ("POST", "/api/v2/resources/{resource_id}/force-release"): lambda m: (
        "/api/v2/resources/5/force-release",
        {"json": {"reason": "role matrix"}},
    ),
    ("GET", "/api/v2/events"): lambda m: ("/api/v2/events", {}),
    ("GET", "/api/v2/resources/{resource_id}/history"): lambda m: (
        "/api/v2/resources/1/history",
        {},
    ),
    ("GET", "/api/v2/resources/{resource_id}/usage"): lambda m: ("/api/v2/resources/1/usage", {}),
    ("GET", "/api/v2/tags/{tag}/usage"): lambda m: ("/api/v2/tags/no-such-tag/usage", {}),
    ("GET", "/api/v2/tags/usage"): lambda m: ("/api/v2/tags/usage", {}),
    ("GET", "/api/v2/queue/estimates"): lambda m: ("/api/v2/queue/estimates", {}),
    ("GET", "/api/v2/events/stream"): lambda m: ("/api/v2/events/stream", {}),
    ("GET", "/api/v2/whoami"): lambda m: ("/api/v2/whoami", {}),
    ("POST", "/api/v2/session"): lambda m: ("/api/v2/session", {"json": {"key": m.keys["read"]}}),
    ("DELETE", "/api/v2/session"): lambda m: ("/api/v2/session", {}),
    ("GET", "/api/v2/keys"): lambda m: ("/api/v2/keys", {}),
    ("POST", "/api/v2/keys"): lambda m: (
        "/api/v2/keys",
        {"json": {"name": "made-by-the-matrix", "role": "read"}},
    ),
    ("DELETE", "/api/v2/keys/{name}"): lambda m: (f"/api/v2/keys/{NO_SUCH_KEY}", {}),
    ("GET", "/healthz"): lambda m: ("/healthz", {}),
    ("GET", "/openapi.json"): lambda m: ("/openapi.json", {}),
    ("GET", "/docs"): lambda m: ("/docs", {}),
    ("GET", "/"): lambda m: ("/", {}),
    ("GET", "/queue"): lambda m: ("/queue", {}),
    ("GET", "/tags"): lambda m: ("/tags", {}),
    ("GET", "/tags/{tag}"): lambda m: ("/tags/coffee", {}),
    ("GET", "/activity"): lambda m: ("/activity", {}),
    ("GET", "/signin"): lambda m: ("/signin", {}),
    # The sign-in form is always checked for its origin: send the page's own.
    ("POST", "/signin"): lambda m: (
        "/signin",
        {"data": {"key": m.keys["read"]}, "headers": SAME_ORIGIN},
    ),
    ("POST", "/signout"): lambda m: ("/signout", {}),
    ("GET", "/static/{name}"): lambda m: ("/static/page.css", {}),
    ("GET", "/resources/{resource_id}"): lambda m: ("/resources/1", {}),
    # A lease that does not exist: an allowed caller is told so, and nothing changes.
    ("POST", "/actions/reserve"): lambda m: (
        "/actions/reserve",
        {"data": {"resource_id": "999999"}},
    ),
    ("POST", "/actions/extend"): lambda m: ("/actions/extend", {"data": {"lease_id": "999999"}}),
    ("POST", "/actions/release"): lambda m: ("/actions/release", {"data": {"lease_id": "999999"}}),
    ("POST", "/actions/cancel"): lambda m: ("/actions/cancel", {"data": {"ticket_id": "999999"}}),
    ("POST", "/actions/join"): lambda m: ("/actions/join", {"data": {"resource_id": "999999"}}),
    ("POST", "/actions/maintenance"): lambda m: (
        "/actions/maintenance",
        {"data": {"resource_id": "999999"}},
    ),
    ("POST", "/actions/force-release"): lambda m: (
        "/actions/force-release",
        {"data": {"resource_id": "999999"}},
    ),
}

#: Routes whose refusals are pages for people (HTML), not JSON.
PAGES = frozenset(
    {"/", "/signin", "/signout", "/docs", "/static/{name}", "/resources/{resource_id}"}
    | {"/actions/reserve", "/actions/extend", "/actions/release", "/actions/maintenance"}
    | {"/actions/force-release", "/queue", "/actions/cancel", "/actions/join"}
    | {"/tags", "/tags/{tag}", "/activity"}
)


def test_the_matrix_calls_every_route_of_the_table() -> None:
    """The matrix has one request for every route of the table, and nothing else."""
    assert set(CALLS) == set(ROUTE_ROLES)


@pytest.fixture(scope="module", params=[Role.LOCK, Role.READ, Role.NONE], ids=lambda r: r.label)
def matrix(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Matrix]:
    """An app on the example resources with RENTABOT_ANONYMOUS_ROLE set to the parameter,
    and a key of each role, plus one revoked before the app started."""
    anonymous_role: Role = request.param
    directory: Path = tmp_path_factory.mktemp(f"matrix-{anonymous_role.label}")
    settings = Settings(
        database_url=f"sqlite:///{directory / 'db.sqlite'}",
        resource_descriptor=EXAMPLES,
        anonymous_role=anonymous_role.label,  # type: ignore[arg-type]
    )
    prepare_database(settings)
    keys = {
        role.label: create_key(settings.database_url, f"matrix-{role.label}", role)
        for role in (Role.READ, Role.LOCK, Role.ADMIN)
    }
    keys["revoked"] = create_key(settings.database_url, "matrix-revoked", Role.ADMIN)
    revoke_key(settings.database_url, "matrix-revoked")
    keys["unknown"] = UNKNOWN_KEY
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        yield Matrix(client, anonymous_role, keys)


def expected_refusal(anonymous_role: Role, caller: str, needed: Role) -> int | None:
    """The status refusing `caller` a route that needs `needed` (None: it may call it).

    An invalid key is refused everywhere, public routes included (it is never taken for an
    anonymous caller); anonymous callers never reach admin routes."""
    if caller in ("revoked", "unknown"):
        return 401
    if caller == "anonymous":
        allowed = needed is not Role.ADMIN and anonymous_role >= needed
        return None if allowed else 401
    return None if Role[caller.upper()] >= needed else 403


@dataclass(frozen=True)
class Answer:
    """What one matrix request got."""

    status: int
    code: str | None
    html: bool
    text: str


def call(matrix: Matrix, caller: str, method: str, path: str) -> Answer:
    """Call one route as one caller, with nothing left behind for the next request (no
    cookie from a sign-in, no open stream)."""
    client = matrix.client
    url, options = CALLS[method, path](matrix)
    headers = dict(options.pop("headers", {}))
    if caller != "anonymous":
        headers["X-API-Key"] = matrix.keys[caller]
    try:
        if path == "/api/v2/events/stream":
            # It never ends: the status and the first chunk, then hang up.
            with client.stream(method, url, headers=headers, **options) as streamed:
                if streamed.status_code != 200:
                    streamed.read()
                    return _answer(streamed)
                first = next(streamed.iter_bytes())
                return Answer(200, None, False, first.decode())
        answer = client.request(method, url, headers=headers, follow_redirects=False, **options)
    finally:
        client.cookies.clear()
    return _answer(answer)


def _answer(answer: httpx.Response) -> Answer:
    return Answer(answer.status_code, error_code(answer), is_html(answer), answer.text[:300])


MATRIX_CASES = [
    pytest.param(caller, method, path, id=f"{caller}-{method} {path}")
    for caller in CALLERS
    for method, path in ROUTE_ROLES
]


@pytest.mark.parametrize(("caller", "method", "path"), MATRIX_CASES)
def test_role_matrix(matrix: Matrix, caller: str, method: str, path: str) -> None:
    """Each caller is refused (401, 403 forbidden) exactly where its role does not reach."""
    needed = ROUTE_ROLES[method, path]
    refusal = expected_refusal(matrix.anonymous_role, caller, needed)
    got = call(matrix, caller, method, path)
    if refusal is None:
        refused = got.status == 401 or (
            got.status == 403 and (got.html or got.code in ("forbidden", "cross_origin"))
        )
        assert not refused, f"{caller} may call it, but got {got.status}: {got.text}"
        return
    assert got.status == refusal, f"{caller} should get {refusal}, got {got.status}: {got.text}"
    if path in PAGES:
        assert got.html, got.text
    else:
        assert got.code == ("unauthenticated" if refusal == 401 else "forbidden"), got.text
