"""The docs tell the truth: every setting is documented, the README's commands are real."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

import httpx
import pytest

from rentabot.settings import Settings
from tests.support import EXAMPLES, RENTABOT, ROOT, Server


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme_table() -> None:
    """Each RENTABOT_* variable the Settings class reads has a row in the README's table."""
    documented = set(re.findall(r"^\| `(RENTABOT_[A-Z_]+)` \|", _readme(), re.MULTILINE))
    declared = {f"RENTABOT_{name.upper()}" for name in Settings.model_fields}
    assert declared - documented == set(), "settings missing from the README table"
    assert documented - declared == set(), "README documents settings that do not exist"


def test_readme_gives_the_two_set_up_commands_and_ci_runs_make_test() -> None:
    """The README's set-up block is `make run` then `make test`; the Makefile's `run` serves
    the examples and its `test` runs pytest; `.ci/run` runs `make test` (not in a comment)."""
    block = _section("Set-up").split("```sh\n", 1)[1].split("```", 1)[0]
    commands = [line.split("#", 1)[0].strip() for line in block.splitlines()]
    assert [command for command in commands if command] == ["make run", "make test"]
    makefile = (ROOT / "Makefile").read_text()
    run = makefile.split("\nrun:", 1)[1].split("\n\n", 1)[0]
    assert "rentabot serve --descriptor examples/resources.yml" in run
    test = makefile.split("\ntest:", 1)[1].split("\n\n", 1)[0]
    assert "-m pytest" in test
    ci = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "make test" in [line for line in ci if not line.startswith("#")]


def _section(title: str) -> str:
    """The README's text under a `## ` heading, up to the next one."""
    text = _readme()
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def _curl_lines(section: str) -> list[str]:
    """The curl commands of a README section, continuation lines joined."""
    joined = section.replace("\\\n", " ")
    return [line.strip() for line in joined.splitlines() if line.strip().startswith("curl ")]


@pytest.mark.e2e
def test_the_readme_curl_examples_work_as_written(tmp_path: Path) -> None:
    """Each curl line of the original's examples, run against a real server, answers 200."""
    lines = _curl_lines(_section("Using the API"))
    assert len(lines) == 8
    with Server(tmp_path / "db.sqlite", EXAMPLES) as server:
        token = ""
        statuses = []
        for line in lines:
            # The shell would remove the backslashes; the token placeholder is the last lock's.
            words = shlex.split(line.replace("{resource/lock/token}", token))
            words = [w.replace("http://localhost:5000", server.url) for w in words]
            done = subprocess.run(words, capture_output=True, text=True, timeout=10, check=True)
            statuses.append(int(done.stdout.split()[1]))
            if '"lock-token":"' in done.stdout and "/5/lock" in line:
                token = done.stdout.split('"lock-token":"')[1].split('"')[0]
        assert statuses == [200] * 8


@pytest.mark.e2e
def test_the_readme_v2_examples_work_as_written(tmp_path: Path) -> None:
    """The v2 curl lines, run by a shell with TOKEN from the first answer, all succeed."""
    lines = _curl_lines(_section("The v2 API"))
    assert len(lines) == 3
    with Server(tmp_path / "db.sqlite", EXAMPLES) as server:
        environment = {"PATH": "/usr/bin:/bin"}
        answers = []
        for line in lines:
            command = line.replace("http://localhost:5000", server.url)
            done = subprocess.run(
                ["bash", "-c", command],
                capture_output=True,
                text=True,
                timeout=10,
                check=True,
                env=environment,
            )
            answer = json.loads(done.stdout)
            answers.append(answer)
            if "TOKEN" not in environment:
                environment["TOKEN"] = answer["lease"]["token"]
        assert answers[0]["lease"]["resources"][0]["name"] == "nrf52-board-1"
        assert answers[1]["lease"]["state"] == "active"
        assert answers[2]["lease"]["state"] == "released"


@pytest.mark.e2e
def test_the_readme_admin_steps_work_as_written_after_make_run(tmp_path: Path) -> None:
    """The README's first admin key, made in the directory `make run` serves from, lets the
    next line put a resource in maintenance, and the CI key after it is a real key."""
    section = _section("Keys, roles, and becoming admin")
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    with Server(tmp_path / "rentabot.db", EXAMPLES) as server:
        script = block.replace(".venv/bin/rentabot", str(RENTABOT)).replace(
            "http://localhost:5000", server.url
        )
        environment = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
        done = subprocess.run(
            ["bash", "-ec", script],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
            env=environment,
        )
        answer, ci_key = done.stdout.rsplit("}", 1)
        assert json.loads(answer + "}")["resource"]["state"] == "maintenance"
        assert ci_key.strip().startswith("rbk_")
        who = httpx.get(
            f"{server.url}/api/v2/whoami", headers={"X-API-Key": ci_key.strip()}, timeout=10
        ).json()
        assert (who["principal"], who["role"]) == ("jenkins-lab-1", "lock")
