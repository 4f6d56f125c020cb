"""Malformed requests against a real `rentabot serve`: always a 4xx with a JSON body, never a 5xx.

Requests go over raw sockets, byte for byte as written here: HTTP clients would normalise or
refuse many of them (spaces, `%`, control characters, invalid UTF-8) before they leave.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import skip_or_fail
from tests.support import EXAMPLES, RENTABOT, Server

pytestmark = pytest.mark.e2e

PREFIXES = ("/rentabot/api/v1.0", "/api/v1.0")
V1 = PREFIXES[0]
#: uvicorn's own answer to a request it cannot parse (httptools refuses request lines longer
#: than 64 KiB, raw bytes outside ASCII, control characters and spaces in the target): plain
#: text, before the app ever sees the request. It is a 4xx, but it cannot be JSON.
UVICORN_REFUSAL = (400, "text/plain; charset=utf-8", b"Invalid HTTP request received.")
HUGE = 100 * 1024  # above uvicorn's 64 KiB request-line limit
LARGE = 60 * 1024  # below it: the app itself must answer


@dataclass(frozen=True)
class Answer:
    """A parsed HTTP response."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)


def send(port: int, method: str, target: bytes, body: bytes = b"", **headers: str) -> Answer:
    """Send one request exactly as given on a fresh connection; read the whole answer."""
    head = [f"{method} ".encode() + target + b" HTTP/1.1", b"Host: 127.0.0.1", b"Connection: close"]
    head += [f"{name.replace('_', '-')}: {value}".encode() for name, value in headers.items()]
    head.append(f"Content-Length: {len(body)}".encode())
    chunks: list[bytes] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10.0) as sock:
        # A server refusing a request may answer and close before reading all of it, which
        # resets the connection: what it answered before that is still the answer.
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        with contextlib.suppress(ConnectionResetError):
            while chunk := sock.recv(65536):
                chunks.append(chunk)
    raw = b"".join(chunks)
    header_block, separator, content = raw.partition(b"\r\n\r\n")
    assert separator, f"no complete answer to {method} {target[:200]!r}: {raw[:200]!r}"
    status_line, *header_lines = header_block.decode("latin-1").split("\r\n")
    fields = dict(line.split(":", 1) for line in header_lines)
    parsed = {name.strip().lower(): value.strip() for name, value in fields.items()}
    if "content-length" in parsed:
        content = content[: int(parsed["content-length"])]
    return Answer(int(status_line.split()[1]), parsed, content)


@dataclass(frozen=True)
class Case:
    """One malformed request and what must come back."""

    method: str
    target: str
    #: The exact status when the contract fixes it; None: any 4xx.
    status: int | None = None
    #: uvicorn may refuse it before the app sees it (request line over 64 KiB).
    uvicorn_may_refuse: bool = False
    #: The methods a 405 must list in its `allow` header.
    allow: frozenset[str] = field(default_factory=frozenset)


def _cases() -> list[Any]:
    cases: list[Any] = []

    def add(case_id: str, case: Case) -> None:
        cases.append(pytest.param(case, id=case_id))

    bad_ids = {
        "abc": "abc",
        "minus-1": "-1",
        "1.5": "1.5",
        "1e3": "1e3",
        "26-digits": "99999999999999999999999999",
        "nul": "%00",
        # The original's `<int:resource_id>` route (werkzeug: `\d+`) never matched " 1".
        "space-1": "%201",
        "ff": "%ff",
        "overlong-slash": "%c0%af",
    }
    for name, text in bad_ids.items():
        add(f"get-id-{name}", Case("GET", f"{V1}/resources/{text}", 404))
        add(f"lock-id-{name}", Case("POST", f"{V1}/resources/{text}/lock", 404))
        add(f"unlock-id-{name}", Case("POST", f"{V1}/resources/{text}/unlock?lock-token=x", 404))
        if name != "space-1":  # the original may have matched `?id= 1` (SQLite affinity)
            # A NUL in a query value is refused at the edge (no database stores one).
            refused = 422 if name == "nul" else 404
            add(f"lock-query-id-{name}", Case("POST", f"{V1}/resources/lock?id={text}", refused))

    # Beyond the 4,300 digits Python's int() accepts, under both prefixes; and numbers that
    # float() reads as infinite or not a number.
    many = "9" * 5000
    for prefix in PREFIXES:
        add(f"get-id-5000-digits-{prefix}", Case("GET", f"{prefix}/resources/{many}", 404))
        add(f"lock-id-5000-digits-{prefix}", Case("POST", f"{prefix}/resources/{many}/lock", 404))
        target = f"{prefix}/resources/{many}/unlock?lock-token=x"
        add(f"unlock-id-5000-digits-{prefix}", Case("POST", target, 404))
        post = frozenset({"POST"})
        target = f"{prefix}/resources/{many}/lock"
        add(f"GET-lock-5000-digits-{prefix}", Case("GET", target, 405, allow=post))
    numbers = {"5000-digits": many, "1e999": "1e999", "nan": "nan", "inf": "inf", "-inf": "-inf"}
    for name, value in numbers.items():
        for key in ("id", "rid"):
            add(f"lock-{key}-{name}", Case("POST", f"{V1}/resources/lock?{key}={value}", 404))
        for key in ("ttl", "wait"):
            add(f"lock-2-{key}-{name}", Case("POST", f"{V1}/resources/2/lock?{key}={value}", 400))
            target = f"{V1}/resources/lock?tag=ble&{key}={value}"
            add(f"lock-tag-{key}-{name}", Case("POST", target, 400))

    lock = f"{V1}/resources/lock"
    unlock = f"{V1}/resources/3/unlock"
    for case_id, target, status in [
        # Missing parameters.
        ("lock-no-parameter", lock, 400),
        ("lock-empty-name", f"{lock}?name=", 400),
        ("lock-empty-id", f"{lock}?id=", 400),
        ("lock-empty-tag", f"{lock}?tag=", None),
        ("unlock-no-token", unlock, 403),
        ("unlock-empty-token", f"{unlock}?lock-token=", 403),
        # Unknown parameters only.
        ("lock-unknown-parameter", f"{lock}?foo=bar", 400),
        ("lock-upper-case-ID", f"{lock}?ID=1", 400),
        ("lock-names", f"{lock}?names=coffee-machine", 400),
        ("lock-with-lock-token", f"{lock}?lock-token=x", 400),
        ("unlock-unknown-parameter", f"{unlock}?token=x", 403),
        # Large values the app must answer itself (the request line stays under 64 KiB).
        ("lock-large-name", f"{lock}?name={'n' * LARGE}", 404),
        ("lock-large-tag", f"{lock}?tag={'t' * LARGE}", 404),
        ("unlock-large-token", f"{unlock}?lock-token={'k' * LARGE}", 403),
        # NUL (refused at the edge: no database stores it) and control characters.
        ("lock-name-nul", f"{lock}?name=%00", 422),
        ("lock-name-newline", f"{lock}?name=%0a", 404),
        ("lock-name-escape", f"{lock}?name=coffee%1bmachine", 404),
        ("lock-name-del", f"{lock}?name=%7f", 404),
        ("lock-tag-nul", f"{lock}?tag=%00", 422),
        ("lock-tag-newline", f"{lock}?tag=%0a", 404),
        ("lock-tag-nul-inside", f"{lock}?tag=coffee%00&tag=kitchen", 422),
        ("unlock-token-nul", f"{unlock}?lock-token=%00", 422),
        ("unlock-token-newline", f"{unlock}?lock-token=%0a", 403),
        # Invalid percent-encoding and invalid UTF-8.
        ("lock-name-ff", f"{lock}?name=%ff", 404),
        ("lock-name-truncated-utf8", f"{lock}?name=%e2%82", 404),
        ("lock-name-bad-escape", f"{lock}?name=%zz", 404),
        ("lock-name-lone-percent", f"{lock}?name=%", 404),
        ("lock-tag-ff", f"{lock}?tag=%ff", 404),
        ("lock-tag-surrogate", f"{lock}?tag=%ed%a0%80", 404),
        ("unlock-token-ff", f"{unlock}?lock-token=%ff", 403),
        ("get-bad-escape", f"{V1}/resources/%zz", 404),
        ("get-lone-percent", f"{V1}/resources/%", 404),
    ]:
        add(
            case_id,
            Case("POST" if "/lock" in target or "/unlock" in target else "GET", target, status),
        )

    # 100 KB values: uvicorn may refuse the request line itself (see UVICORN_REFUSAL).
    for parameter, target in [("name", lock), ("tag", lock), ("lock-token", unlock)]:
        huge = f"{target}?{parameter}={'h' * HUGE}"
        add(f"huge-{parameter}", Case("POST", huge, None, uvicorn_may_refuse=True))

    # Wrong methods on every v1 path, under both prefixes.
    paths = {
        "resources": ("resources", frozenset({"GET"})),
        "resource": ("resources/1", frozenset({"GET"})),
        "lock-by-criteria": ("resources/lock", frozenset({"POST"})),
        "lock": ("resources/1/lock", frozenset({"POST"})),
        "unlock": ("resources/1/unlock", frozenset({"POST"})),
    }
    for prefix in PREFIXES:
        for path_id, (path, allowed) in paths.items():
            wrong = {"PUT", "DELETE", "PATCH", "GET", "POST"} - allowed
            for method in sorted(wrong):
                target = f"{prefix}/{path}"
                add(f"{method}-{prefix}/{path_id}", Case(method, target, 405, allow=allowed))

    # Unknown paths under both prefixes.
    for prefix in PREFIXES:
        for path in ("nope", "resources/1/nope", "resources/1/lock/now", "resource", ""):
            add(f"unknown-{prefix}/{path}", Case("GET", f"{prefix}/{path}", 404))
            add(f"unknown-POST-{prefix}/{path}", Case("POST", f"{prefix}/{path}", None))
    return cases


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One real server with the example resources, for the whole module."""
    if not RENTABOT.exists():
        skip_or_fail(f"the rentabot console script is not installed at {RENTABOT}")
    directory: Path = tmp_path_factory.mktemp("bad-input")
    with Server(directory / "rentabot.db", EXAMPLES) as running:
        yield running


def assert_json_error(answer: Answer, what: str) -> None:
    """A 4xx from the app: `application/json`, parseable, with a "message"."""
    assert 400 <= answer.status < 500, f"{what}: {answer.status} {answer.body[:300]!r}"
    assert answer.headers.get("content-type") == "application/json", f"{what}: {answer.headers}"
    body = answer.json()
    assert isinstance(body, dict), f"{what}: {body!r}"
    assert isinstance(body.get("message"), str), f"{what}: {body!r}"


@pytest.mark.parametrize("case", _cases())
def test_malformed_request_answers_a_json_4xx(server: Server, case: Case) -> None:
    """Each malformed request: the expected 4xx with a JSON body holding a message, never 5xx."""
    answer = send(server.port, case.method, case.target.encode("ascii"))
    what = f"{case.method} {case.target[:120]}"
    if case.uvicorn_may_refuse and answer.headers.get("server") == "uvicorn":
        refusal = (answer.status, answer.headers.get("content-type"), answer.body)
        if refusal == UVICORN_REFUSAL:
            return  # refused by uvicorn before the app: plain text by design (see above)
    assert_json_error(answer, what)
    if case.status is not None:
        assert answer.status == case.status, f"{what}: {answer.status} {answer.body[:300]!r}"
    if case.status == 405:
        allowed = {m.strip() for m in answer.headers.get("allow", "").split(",")}
        assert case.allow <= allowed, f"{what}: allow {answer.headers.get('allow')!r}"
        assert allowed <= case.allow | {"HEAD"}, f"{what}: allow {answer.headers.get('allow')!r}"


@pytest.mark.parametrize(
    "target",
    [
        pytest.param(b"/rentabot/api/v1.0/resources/ 1", id="space-in-target"),
        pytest.param(b"/rentabot/api/v1.0/resources/\xff", id="raw-ff"),
        pytest.param(b"/rentabot/api/v1.0/resources/1?name=\x00", id="raw-nul"),
    ],
)
def test_an_unparseable_request_line_is_refused_by_uvicorn_with_400(
    server: Server, target: bytes
) -> None:
    """Raw bytes HTTP forbids in a request target never reach the app: uvicorn answers 400."""
    answer = send(server.port, "GET", target)
    assert (answer.status, answer.headers.get("content-type"), answer.body) == UVICORN_REFUSAL


def test_a_body_sent_to_lock_and_unlock_is_ignored(server: Server) -> None:
    """Lock and unlock read no body: one sent along changes nothing, and they still work."""
    json_body = {"Content_Type": "application/json"}
    locked = send(server.port, "POST", f"{V1}/resources/5/lock".encode(), b'{"id": 2}', **json_body)
    assert locked.status == 200, locked.body
    token = locked.json()["lock-token"]
    assert locked.json()["resource"]["id"] == 5

    form = {"Content_Type": "application/x-www-form-urlencoded"}
    in_body = f"lock-token={token}".encode()
    refused = send(server.port, "POST", f"{V1}/resources/5/unlock".encode(), in_body, **form)
    assert refused.status == 403
    assert refused.json()["invalid-lock-token"] is None

    by_criteria = send(server.port, "POST", f"{V1}/resources/lock".encode(), b"name=a", **form)
    assert by_criteria.status == 400

    target = f"{V1}/resources/5/unlock?lock-token={token}".encode()
    unlocked = send(server.port, "POST", target, b"\x00\xff not json {", **json_body)
    assert unlocked.status == 200, unlocked.body
    assert unlocked.json() == {"message": "Resource unlocked"}


# ---------------------------------------------------------------------------------- fuzzing

#: Letters, digits, HTTP delimiters, `%`, unicode (with a lone surrogate) and control chars.
ALPHABET = st.sampled_from(
    [
        *"az09-_.~ +",
        *"%/?&=#;:@!$'()*,[]",
        *"\x00\x01\t\n\r\x1b\x7f\x85",
        *"é中🤖\u2028\ufeff\U0010ffff",
        "\ud800",
    ]
)
TEXT = st.text(ALPHABET, max_size=12)
DANGEROUS = b" \r\n"  # raw, these only break the request line's framing: always escaped


def _encode(text: str, mode: str) -> bytes:
    """The text as it goes on the wire: fully escaped, escaped but for `%/?&=`, or raw UTF-8."""
    if mode == "escaped":
        return quote(text, safe="", errors="surrogatepass").encode()
    if mode == "loose":
        return quote(text, safe="%/?&=+;", errors="surrogatepass").encode()
    raw = text.encode("utf-8", "surrogatepass")
    return b"".join(b"%%%02X" % byte if byte in DANGEROUS else bytes([byte]) for byte in raw)


MODE = st.sampled_from(["escaped", "loose", "raw"])
KEY = st.one_of(st.sampled_from(["id", "rid", "name", "tag", "lock-token"]), TEXT)


@st.composite
def request_targets(draw: st.DrawFn) -> bytes:
    """A request target under an API prefix, with random path segments and query string."""
    prefix = draw(st.sampled_from([*PREFIXES, "/rentabot/api", ""]))
    segments = draw(st.lists(st.tuples(TEXT, MODE), max_size=3))
    tail = draw(st.sampled_from(["", "/lock", "/unlock"]))
    path = prefix.encode() + b"/resources"
    path += b"".join(b"/" + _encode(text, mode) for text, mode in segments) + tail.encode()
    pairs = draw(st.lists(st.tuples(KEY, MODE, TEXT, MODE), max_size=4))
    query = b"&".join(_encode(k, km) + b"=" + _encode(v, vm) for k, km, v, vm in pairs)
    return path + (b"?" + query if query or draw(st.booleans()) else b"")


@settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(method=st.sampled_from(["GET", "POST"]), target=request_targets())
def test_random_paths_and_query_strings_never_answer_5xx(
    server: Server, method: str, target: bytes
) -> None:
    """Random segments and query strings (escaped, half-escaped or raw): never a 5xx."""
    answer = send(server.port, method, target)
    what = f"{method} {target!r}: {answer.status} {answer.body[:300]!r}"
    assert answer.status < 500, what
    from_app = (answer.status, answer.headers.get("content-type"), answer.body) != UVICORN_REFUSAL
    if from_app and answer.status >= 400 and target.startswith((b"/api/", b"/rentabot/api/")):
        assert_json_error(answer, what)


#: JSON text no database stores, as a client's JSON escapes write it: a lone surrogate (not
#: UTF-8 at all; SQLite's driver raises on it) and NUL (PostgreSQL refuses it).
UNSTORABLE = {"lone-surrogate": "\\ud800", "nul": "\\u0000", "surrogate-inside": "ab\\udfffcd"}
#: v2 requests with a place for such text: (name, method, target, JSON with `{text}`).
TEXT_FIELDS = [
    ("owner", "POST", "/api/v2/leases", '{"select": {"ids": [3]}, "owner": "{text}"}'),
    ("description", "POST", "/api/v2/leases", '{"select": {"ids": [3]}, "description": "{text}"}'),
    ("request_id", "POST", "/api/v2/leases", '{"select": {"ids": [3]}, "request_id": "{text}"}'),
    ("names", "POST", "/api/v2/leases", '{"select": {"names": ["{text}"]}}'),
    ("tags", "POST", "/api/v2/leases", '{"select": {"tags": ["{text}"]}}'),
    ("key", "POST", "/api/v2/session", '{"key": "{text}"}'),
]


def _unstorable_requests() -> list[Any]:
    return [
        pytest.param(method, target, body.replace("{text}", text), id=f"{field}-{kind}")
        for field, method, target, body in TEXT_FIELDS
        for kind, text in UNSTORABLE.items()
    ]


@pytest.mark.parametrize(("method", "target", "body"), _unstorable_requests())
def test_text_no_database_stores_in_a_v2_body_answers_422(
    server: Server, method: str, target: str, body: str
) -> None:
    """A lone surrogate or a NUL in a JSON string field is refused with 422 naming the field,
    before it reaches the database driver (which would fail its whole write group)."""
    answer = send(
        server.port, method, target.encode(), body.encode(), Content_Type="application/json"
    )
    what = f"{method} {target} {body}: {answer.status} {answer.body[:300]!r}"
    assert answer.status == 422, what
    error = answer.json()["error"]
    assert error["code"] == "invalid_request", what
    assert any(name in error["message"] for name, *_ in TEXT_FIELDS if f'"{name}"' in body), what


def test_the_server_survived_every_malformed_request(server: Server) -> None:
    """After every malformed request of this module (sent again here, so the check holds
    when this test runs alone), the server is healthy and never logged a traceback."""
    for param in _cases():
        (case,) = param.values
        send(server.port, case.method, case.target.encode())
    for param in _unstorable_requests():
        method, target, body = param.values
        send(server.port, method, target.encode(), body.encode(), Content_Type="application/json")
    health = send(server.port, "GET", b"/healthz")
    assert health.status == 200
    assert health.json()["status"] == "ok"
    log = server.output()
    assert "Traceback" not in log
    assert "Exception in ASGI application" not in log
    assert "unexpected error" not in log
