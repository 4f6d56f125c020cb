"""docs/deployment.md's recipe, run as written: three replicas on one PostgreSQL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.support import (
    EXAMPLES,
    ROOT,
    environment_without_settings,
    free_port,
    postgres_schema,
)

DEPLOYMENT = ROOT / "docs" / "deployment.md"
#: What the recipe names, and what the test runs it with instead.
RECIPE_URL = "postgresql+psycopg://rentabot@db.example:5432/rentabot"
RECIPE_DESCRIPTOR = "/etc/rentabot/resources.yml"
RECIPE_PORTS = "5001 5002 5003"


def recipe() -> str:
    """The shell block between the recipe markers."""
    text = DEPLOYMENT.read_text()
    block = text.split("<!-- recipe: replicas -->", 1)[1].split("<!-- end recipe -->", 1)[0]
    return block.split("```sh\n", 1)[1].split("```", 1)[0]


def test_the_recipe_names_what_the_test_substitutes() -> None:
    """The test runs the recipe's own commands: only these three values are swapped."""
    script = recipe()
    for value in (RECIPE_URL, RECIPE_DESCRIPTOR, RECIPE_PORTS):
        assert value in script


@pytest.mark.e2e
def test_the_replicas_recipe_works_as_written(tmp_path: Path) -> None:
    """The recipe starts three replicas that answer /healthz; a lock taken on one is seen
    on the others, and a waiter on the third is granted when the first releases."""
    ports = [free_port() for _ in range(3)]
    with postgres_schema() as url:
        script = (
            recipe()
            .replace(RECIPE_URL, url)
            .replace(RECIPE_DESCRIPTOR, str(EXAMPLES))
            .replace(RECIPE_PORTS, " ".join(map(str, ports)))
        )
        environment = environment_without_settings(rentabot_on_path=True)
        shell = subprocess.Popen(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=tmp_path,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        try:
            output, _ = shell.communicate(timeout=90)
            logs = "".join(p.read_text() for p in sorted(tmp_path.glob("replica-*.log")))
            assert shell.returncode == 0, output + logs
            assert output.count('"status":"ok"') == 3, output
            one, two, three = (httpx.Client(base_url=f"http://127.0.0.1:{p}") for p in ports)
            with one, two, three:
                held = one.post("/api/v2/leases", json={"select": {"ids": [1]}})
                assert held.status_code == 201, held.text
                lease = held.json()["lease"]
                shown = two.get("/api/v2/resources").json()["resources"][0]
                assert shown["state"] == "locked"
                waited: list[httpx.Response] = []
                waiter = threading.Thread(
                    target=lambda: waited.append(
                        three.post(
                            "/api/v2/leases",
                            json={"select": {"ids": [1]}, "wait": 20},
                            timeout=30,
                        )
                    )
                )
                waiter.start()
                while not two.get("/api/v2/queue").json()["tickets"]:
                    time.sleep(0.02)
                released = one.delete(
                    f"/api/v2/leases/{lease['id']}",
                    headers={"Authorization": f"Bearer {lease['token']}"},
                )
                assert released.status_code == 200
                waiter.join(30)
                assert len(waited) == 1, "the waiter on the third replica got no answer"
                assert waited[0].status_code == 201, waited[0].text
        finally:
            # The replicas are the recipe's background jobs, in its process group.
            os.killpg(shell.pid, signal.SIGTERM)
            time.sleep(0.5)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(shell.pid, signal.SIGKILL)
