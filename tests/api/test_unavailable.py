"""A database that stops answering: a generic 503 for clients, the driver's reason in the log."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.engine import make_url

from rentabot.app import create_app
from rentabot.service.bootstrap import prepare_database
from rentabot.settings import Settings
from tests.conftest import skip_or_fail
from tests.support import EXAMPLES, POSTGRES_URL, postgres_available


@pytest.fixture
def own_database() -> Iterator[str]:
    """A PostgreSQL database of this test's own (only its connections are in it); its name."""
    problem = postgres_available()
    if problem is not None:
        skip_or_fail(problem)
    import psycopg

    conninfo = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://", 1)
    name = f"t_{uuid.uuid4().hex[:16]}"
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        yield name
    finally:
        with psycopg.connect(conninfo, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE {name} WITH (FORCE)")


def _cut_off(name: str) -> None:
    """The database stops answering rentabot: its sessions end, new ones are refused."""
    import psycopg

    conninfo = POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://", 1)
    with psycopg.connect(conninfo, autocommit=True) as admin:
        admin.execute(f"ALTER DATABASE {name} ALLOW_CONNECTIONS false")
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,)
        )


def test_an_unreachable_database_answers_a_generic_503_and_logs_the_reason(
    own_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    """0.x, 1.x, v2, /healthz and /readiness answer 503 (/health, liveness only, 200)
    without the driver's error text; the log has it."""
    url = make_url(POSTGRES_URL).set(database=own_database).render_as_string(hide_password=False)
    settings = Settings(database_url=url, resource_descriptor=EXAMPLES, db_timeout=2)
    prepare_database(settings)
    with TestClient(create_app(settings), raise_server_exceptions=False) as client:
        assert client.get("/healthz").status_code == 200
        assert client.get("/readiness").json() == {"status": "ready"}
        _cut_off(own_database)
        with caplog.at_level(logging.ERROR, logger="rentabot"):
            v2 = client.get("/api/v2/resources")
            v1 = client.post("/rentabot/api/v1.0/resources/1/lock")
            health = client.get("/healthz")
            ready = client.get("/readiness")
            alive = client.get("/health")
            upstream = client.post("/api/v1/resources/1/lock")
    assert (ready.status_code, ready.json()) == (503, {"status": "not ready"})
    assert (alive.status_code, alive.json()) == (200, {"status": "ok"})
    assert (upstream.status_code, upstream.headers.get("retry-after")) == (503, "1")
    assert (v2.status_code, v2.headers.get("retry-after")) == (503, "1")
    assert v2.json() == {
        "error": {"code": "unavailable", "message": "Database unavailable; retry later"}
    }
    assert (v1.status_code, v1.headers.get("retry-after")) == (503, "1")
    assert v1.json() == {"message": "Database unavailable"}
    assert health.status_code == 503
    body = health.json()
    assert set(body) == {"status", "database", "version", "backend", "wakeups"}
    assert (body["status"], body["database"]) == ("unavailable", "unavailable")
    logged = [r.getMessage() for r in caplog.records if r.name == "rentabot"]
    reasons = [m for m in logged if m.startswith("database unavailable: PostgreSQL: ")]
    assert len(reasons) == 5, logged  # each request logged its reason, once
