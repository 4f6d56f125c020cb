"""What a real `rentabot` prints holds no secret: no database password, no lock token."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import httpx
import pytest
from sqlalchemy.engine import make_url

from tests.conftest import skip_or_fail
from tests.support import (
    EXAMPLES,
    RENTABOT,
    V1,
    Server,
    environment_without_settings,
    postgres_schema,
)

pytestmark = pytest.mark.e2e

#: PostgreSQL's trust authentication accepts any password: the URL works and carries it.
PASSWORD = "s3cretpw"


def test_serve_shows_the_database_url_with_its_password_masked(
    servers: list[Server], tmp_path: Path
) -> None:
    """`rentabot serve` on a URL with a password names the database, never the password."""
    with postgres_schema() as schema_url:
        url = make_url(schema_url).set(password=PASSWORD).render_as_string(hide_password=False)
        server = Server(url, EXAMPLES, log=tmp_path / "serve.log")
        servers.append(server)
        server.start()
        server.stop()
    output = server.output()
    assert f"(database {make_url(url).render_as_string(hide_password=True)}," in output
    assert PASSWORD not in output


@pytest.mark.parametrize("command", [["serve"], ["db", "upgrade"]], ids=["serve", "upgrade"])
def test_a_database_error_shows_the_url_with_its_password_masked(
    command: list[str], tmp_path: Path
) -> None:
    """`serve` and `db upgrade` on an unreachable database: the error masks the password."""
    if not RENTABOT.exists():
        skip_or_fail(f"the rentabot console script is not installed at {RENTABOT}")
    url = f"postgresql+psycopg://root:{PASSWORD}@127.0.0.1:1/test"
    done = subprocess.run(
        [str(RENTABOT), *command, "--database", url],
        capture_output=True,
        text=True,
        env=environment_without_settings(),
        cwd=tmp_path,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stderr
    assert "rentabot: error: database postgresql+psycopg://root:***@127.0.0.1:1/test:" in (
        done.stderr
    )
    assert PASSWORD not in done.stdout + done.stderr


def test_the_access_log_redacts_lock_tokens_in_every_worker(
    servers: list[Server], tmp_path: Path
) -> None:
    """With RENTABOT_ACCESS_LOG on and two workers, no `?lock-token=` value reaches the log."""
    server = Server(
        tmp_path / "rentabot.db", EXAMPLES, workers=2, env={"RENTABOT_ACCESS_LOG": "true"}
    )
    servers.append(server)
    server.start()
    secrets: list[str] = []
    # A new connection for each request, so that both workers most likely serve some.
    with httpx.Client(base_url=server.url, timeout=10, headers={"Connection": "close"}) as client:
        token = client.post(f"{V1}/resources/1/lock").json()["lock-token"]
        secrets.append(token)
        unlocked = client.post(f"{V1}/resources/1/unlock?lock-token={token}")
        assert unlocked.status_code == 200, unlocked.text
        # `lock-token` as sent, percent-encoded or in other cases; other names of secrets.
        for name in ["lock-token", "LOCK-TOKEN", "lock%2Dtoken", "lock%2dtoken", "Lock-Token"]:
            for _ in range(4):
                secrets.append(uuid.uuid4().hex)
                client.post(f"{V1}/resources/2/unlock?x=1&{name}={secrets[-1]}&y=2")
        for name in ["token", "api_key", "api-key", "key", "API_KEY"]:
            secrets.append(uuid.uuid4().hex)
            client.get(f"{V1}/resources?{name}={secrets[-1]}")
    server.stop()
    output = server.output()
    assert f'"POST {V1}/resources/1/unlock?lock-token=[redacted] HTTP/1.1" 200' in output
    assert "?x=1&lock%2Dtoken=[redacted]&y=2" in output
    assert "?api-key=[redacted] " in output
    leaked = [secret for secret in secrets if secret in output]
    assert not leaked, output
