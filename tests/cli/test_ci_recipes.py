"""Each recipe of docs/ci.md, taken from the page as written, run by a shell with the
variables its CI would set, against a real server: the job runs under a lease, a job killed
outright frees its board when the lease expires, an aborted one at once, and a retried
attempt with the same request id gets the same lease instead of a second one."""

from __future__ import annotations

import getpass
import itertools
import os
import re
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from rentabot.client import Client
from tests.client_support import AnswerDroppingProxy, client_environment, losing_acquires
from tests.support import ROOT, Server

pytestmark = pytest.mark.e2e

CI_DOC = ROOT / "docs" / "ci.md"
RECIPE = re.compile(r"<!-- recipe: (?P<name>[a-z]+) -->\n```[a-z]+\n(?P<text>.*?)```\n", re.S)
#: The job's own work: record what it was given, then take JOB_SECONDS.
JOB_SCRIPT = """#!/bin/sh
env | grep '^RENTABOT_' > "$JOB_DIR/job-environment"
echo "$@" > "$JOB_DIR/job-arguments"
sleep "${JOB_SECONDS:-0}"
"""
#: Build numbers: each simulated job is a new one (a request id names one attempt).
NUMBERS = itertools.count(4242)


def ci_variables(name: str, number: int) -> dict[str, str]:
    """What each CI tells job `number` (the owner a lease gets comes from these)."""
    return {
        "gitlab": {
            "CI": "true",
            "GITLAB_CI": "true",
            "CI_JOB_ID": str(number),
            "CI_JOB_URL": f"https://gitlab.example/lab/firmware/-/jobs/{number}",
            "CI_COMMIT_SHA": "0123abcd",
        },
        "jenkins": {
            "JENKINS_URL": "https://jenkins.example/",
            "JOB_NAME": "firmware",
            "BUILD_NUMBER": str(number),
            "BUILD_TAG": f"jenkins-firmware-{number}",
            "BUILD_URL": f"https://jenkins.example/job/firmware/{number}/",
        },
        "github": {
            "CI": "true",
            "GITHUB_ACTIONS": "true",
            "GITHUB_SERVER_URL": "https://github.com",
            "GITHUB_REPOSITORY": "lab/firmware",
            "GITHUB_RUN_ID": str(number),
            "GITHUB_RUN_ATTEMPT": "1",
        },
        "cron": {},
    }[name]


def expected_owner(name: str, number: int) -> str:
    """The owner `rentabot run` derives from the CI's variables."""
    return {
        "gitlab": f"https://gitlab.example/lab/firmware/-/jobs/{number}",
        "jenkins": f"https://jenkins.example/job/firmware/{number}/",
        "github": f"https://github.com/lab/firmware/actions/runs/{number}",
        "cron": f"{getpass.getuser()}@{socket.gethostname()}",
    }[name]


BOARDS = {"gitlab": "nrf52", "jenkins": "stm32", "github": "esp32", "cron": "nightly"}


def recipes() -> dict[str, str]:
    """The recipes of docs/ci.md by name, as written."""
    return {match["name"]: match["text"] for match in RECIPE.finditer(CI_DOC.read_text())}


def job(
    name: str, text: str, workdir: Path, server_url: str, number: int
) -> tuple[list[str], dict[str, str]]:
    """The command line and environment that run recipe `name` as its CI would run job
    `number`."""
    environment = {
        **client_environment(server_url),
        **ci_variables(name, number),
        "JOB_DIR": str(workdir),
        "HOME": str(workdir),
    }
    simulate: dict[str, Callable[[str, dict[str, str], Path], list[str]]] = {
        "gitlab": _gitlab,
        "jenkins": _jenkins,
        "github": _github,
        "cron": _cron,
    }
    for script in ("ci/flash-and-test.sh", "nightly-tests.sh"):
        path = workdir / script
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(JOB_SCRIPT)
        path.chmod(0o755)
    return simulate[name](text, environment, workdir), environment


def _gitlab(text: str, environment: dict[str, str], workdir: Path) -> list[str]:
    """GitLab runs a job's script lines in one shell, stopping at the first failure."""
    (definition,) = yaml.safe_load(text).values()
    environment.update(definition.get("variables", {}))
    environment["CI_PROJECT_DIR"] = str(workdir)
    return ["sh", "-e", "-c", "\n".join(definition["script"])]


def _jenkins(text: str, environment: dict[str, str], workdir: Path) -> list[str]:
    """A Jenkins `sh '…'` step runs its string with `sh -xe`; the stage is STAGE_NAME."""
    (stage,) = re.findall(r"stage\('([^']*)'\)", text)
    (step,) = re.findall(r"\bsh '([^']*)'", text)
    environment.update({"STAGE_NAME": stage, "WORKSPACE": str(workdir)})
    return ["sh", "-xe", "-c", step]


def _github(text: str, environment: dict[str, str], workdir: Path) -> list[str]:
    """A GitHub step runs `run` with `bash -e -o pipefail`, its `env` expanded (only
    `${{ vars.* }}` is supported here: the repository's variables)."""
    repository_variables = {"RENTABOT_URL": environment["RENTABOT_URL"]}
    ((job_name, definition),) = yaml.safe_load(text)["jobs"].items()
    (step,) = [s for s in definition["steps"] if "run" in s]
    for key, value in step.get("env", {}).items():
        expression = re.fullmatch(r"\$\{\{ vars\.(\w+) \}\}", value)
        assert expression, f"unsupported expression in {value!r}"
        environment[key] = repository_variables[expression[1]]
    environment.update({"GITHUB_JOB": job_name, "GITHUB_WORKSPACE": str(workdir)})
    assert "${{" not in step["run"]
    return ["bash", "--noprofile", "--norc", "-e", "-o", "pipefail", "-c", step["run"]]


def _cron(text: str, environment: dict[str, str], workdir: Path) -> list[str]:
    """cron runs the script file."""
    script = workdir / "nightly.sh"
    script.write_text(text)
    script.chmod(0o755)
    return [str(script)]


def _start(command: list[str], environment: dict[str, str], workdir: Path) -> subprocess.Popen[str]:
    # Its own session, like a CI job: the test can signal the whole job as a CI would.
    return subprocess.Popen(
        command,
        env=environment,
        cwd=workdir,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _job_environment(
    workdir: Path, running: subprocess.Popen[str] | None = None, timeout: float = 20
) -> dict[str, str]:
    path = workdir / "job-environment"
    deadline = time.monotonic() + timeout
    while not path.exists() or not path.read_text():
        if running is not None and running.poll() is not None:
            output = running.stdout.read() if running.stdout else ""
            raise AssertionError(f"the job ended with {running.returncode}: {output}")
        assert time.monotonic() < deadline, "the job never started"
        time.sleep(0.02)
    time.sleep(0.05)  # the file is written in one go by `grep`; let it finish
    return dict(line.split("=", 1) for line in path.read_text().splitlines())


def _lease(server: Server, seen: dict[str, str]) -> dict[str, Any]:
    answer = httpx.get(
        f"{server.url}/api/v2/leases/{seen['RENTABOT_LEASE_ID']}",
        headers={"Authorization": f"Bearer {seen['RENTABOT_TOKEN']}"},
    )
    lease: dict[str, Any] = answer.json()["lease"]
    return lease


def _grants(server: Server, lease_id: str) -> list[dict[str, Any]]:
    events = httpx.get(f"{server.url}/api/v2/events", params={"lease_id": lease_id}).json()
    return [e for e in events["events"] if e["kind"] == "granted"]


def test_every_ci_has_a_recipe() -> None:
    """docs/ci.md has the four recipes the tests simulate."""
    assert sorted(recipes()) == ["cron", "github", "gitlab", "jenkins"]


@pytest.mark.parametrize("name", ["gitlab", "jenkins", "github", "cron"])
def test_the_recipe_runs_the_job_under_a_lease_and_releases_it(
    name: str, server: Server, client: Client, tmp_path: Path
) -> None:
    """The job runs with its board in RENTABOT_*, the lease's owner is the CI job, and the
    board is free again when the job has succeeded."""
    number = next(NUMBERS)
    command, environment = job(name, recipes()[name], tmp_path, server.url, number)
    done = subprocess.run(
        command, env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    seen = _job_environment(tmp_path)
    assert seen["RENTABOT_RESOURCE"] == f"{BOARDS[name]}-board-1"
    assert _lease(server, seen)["state"] == "released"
    (grant,) = _grants(server, seen["RENTABOT_LEASE_ID"])
    assert grant["detail"]["owner"] == expected_owner(name, number)
    if name == "gitlab":
        assert (tmp_path / "job-arguments").read_text() == "0123abcd\n"


def test_a_job_killed_outright_frees_its_board_when_the_lease_expires(
    server: Server, client: Client, tmp_path: Path
) -> None:
    """The GitLab job (with a 1 s TTL instead of 10 minutes) is SIGKILLed with all its
    processes, as a runner that gives up does: nobody releases, the lease expires, and the
    board is free within the TTL."""
    text = recipes()["gitlab"].replace("--ttl 10m", "--ttl 1s")
    command, environment = job("gitlab", text, tmp_path, server.url, next(NUMBERS))
    environment["JOB_SECONDS"] = "60"
    with _start(command, environment, tmp_path) as running:
        seen = _job_environment(tmp_path, running)
        os.killpg(running.pid, signal.SIGKILL)
        killed_at = time.monotonic()
        running.wait(10)
    while _lease(server, seen)["state"] == "active":
        assert time.monotonic() - killed_at < 1 + 2, "the lease outlived its TTL"
        time.sleep(0.05)
    assert _lease(server, seen)["state"] == "expired"
    (board,) = client.resources(["nrf52"])
    assert board.state == "available"


def test_an_aborted_build_releases_its_board_at_once(
    server: Server, client: Client, tmp_path: Path
) -> None:
    """The Jenkins build is aborted (SIGTERM to its processes): the lease is released,
    not left to expire, and the build fails."""
    command, environment = job("jenkins", recipes()["jenkins"], tmp_path, server.url, next(NUMBERS))
    environment["JOB_SECONDS"] = "60"
    with _start(command, environment, tmp_path) as running:
        seen = _job_environment(tmp_path, running)
        os.killpg(running.pid, signal.SIGTERM)
        assert running.wait(10) != 0
    # The build's shell may exit before `rentabot run`, also signalled, has released: wait
    # for the lease to end (a lease left to expire would read "expired", not "released").
    deadline = time.monotonic() + 5
    while _lease(server, seen)["state"] == "active" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _lease(server, seen)["state"] == "released"
    (board,) = client.resources(["stm32"])
    assert board.state == "available"


def test_a_retried_attempt_with_the_same_request_id_gets_the_same_lease(
    server: Server, tmp_path: Path
) -> None:
    """The cron script's first attempt is granted the board, but the answer is lost and
    it gives up (exit 123); the second attempt, with the same request id, gets that lease:
    one grant, no second lease, and the job runs once. (The pause between attempts is cut
    from 60 s to 0.1 s.)"""

    text = recipes()["cron"].replace("sleep 60", "sleep 0.1")
    with AnswerDroppingProxy(server.port, losing_acquires(1)) as proxy:
        command, environment = job("cron", text, tmp_path, proxy.url, next(NUMBERS))
        environment["RENTABOT_RETRY_FOR"] = "0"  # give up at once: the script retries
        done = subprocess.run(
            command, env=environment, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.count("cannot reach the rentabot server") == 1
    assert len(proxy.dropped) == 1
    seen = _job_environment(tmp_path)
    assert len(_grants(server, seen["RENTABOT_LEASE_ID"])) == 1
    assert _lease(server, seen)["state"] == "released"
