"""The docs tell the truth: every setting is documented, the README's commands are real."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from rentabot.settings import Settings
from tests.support import EXAMPLES, ROOT, Server


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme_table() -> None:
    """Each RENTABOT_* variable the Settings class reads has a row in the README's table."""
    documented = set(re.findall(r"^\| `(RENTABOT_[A-Z_]+)` \|", _readme(), re.MULTILINE))
    declared = {f"RENTABOT_{name.upper()}" for name in Settings.model_fields}
    assert declared - documented == set(), "settings missing from the README table"
    assert documented - declared == set(), "README documents settings that do not exist"


def test_readme_gives_the_two_set_up_commands_and_ci_runs_make_test() -> None:
    """`make run` and `make test` are in the README; `.ci/run` calls `make test`."""
    readme = _readme()
    assert "make run" in readme
    assert "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.e2e
def test_the_readme_curl_examples_work_as_written(tmp_path: pytest.TempPathFactory) -> None:
    """Each curl line of the README, run against a real server, gets the answer it promises."""
    lines = [line for line in _readme().splitlines() if line.startswith("curl ")]
    assert len(lines) == 7
    with Server(tmp_path / "db.sqlite", EXAMPLES) as server:  # type: ignore[operator]
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
        assert statuses == [200, 200, 200, 200, 200, 200, 200]
