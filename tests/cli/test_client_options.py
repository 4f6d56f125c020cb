"""The pure parts of the client commands: the job's environment, the owner, the progress
line, exit codes (no server needed)."""

from __future__ import annotations

import getpass
import io
import socket

import pytest
from click.testing import CliRunner

from rentabot.cli import main
from rentabot.cli.client_options import (
    EXIT_LEASE_LOST,
    EXIT_NOT_FOUND,
    EXIT_NOT_GRANTED,
    EXIT_REFUSED,
    EXIT_UNREACHABLE,
    QueueProgress,
    default_owner,
    exit_code,
)
from rentabot.cli.environment import child_environment, shell_exports, variable_key
from rentabot.client import (
    BusyError,
    HeldResource,
    InvalidRequestError,
    Lease,
    LeaseEndedError,
    LeaseLostError,
    LeaseNotFoundError,
    NotGrantedError,
    RequestIdReusedError,
    ServerUnreachableError,
    UnavailableError,
)
from rentabot.client.errors import error_from_answer

LEASE = Lease(
    id=7,
    token="secret token",
    state="active",
    acquired_at=0,
    resources=(
        HeldResource(id=1, name="a", endpoint=None, properties={"jlink-id": "5"}, fence=3),
        HeldResource(id=2, name="b", endpoint="ssh://b", properties={}, fence=9),
    ),
)


def test_property_keys_become_variable_names() -> None:
    """Upper case; anything but letters and digits becomes an underscore."""
    assert variable_key("jlink-id") == "JLINK_ID"
    assert variable_key("usb.port 2") == "USB_PORT_2"


def test_the_child_sees_this_lease_and_nothing_of_an_outer_one() -> None:
    """Stale lease variables of an outer job are dropped; settings and other variables stay;
    the unindexed variables describe the first resource, the indexed ones each resource."""
    parent = {
        "RENTABOT_RESOURCE_5": "stale",
        "RENTABOT_PROPERTY_OLD": "stale",
        "RENTABOT_RESOURCE_DESCRIPTOR": "/etc/lab.yml",
        "RENTABOT_API_KEY": "key",
        "PATH": "/bin",
    }
    seen = child_environment(parent, LEASE, "http://lab:5000")
    assert "RENTABOT_RESOURCE_5" not in seen
    assert "RENTABOT_PROPERTY_OLD" not in seen
    assert seen["RENTABOT_RESOURCE_DESCRIPTOR"] == "/etc/lab.yml"
    assert (seen["RENTABOT_API_KEY"], seen["PATH"]) == ("key", "/bin")
    assert (seen["RENTABOT_RESOURCE"], seen["RENTABOT_FENCE"]) == ("a", "3")
    assert (seen["RENTABOT_ENDPOINT"], seen["RENTABOT_ENDPOINT_1"]) == ("", "ssh://b")
    assert seen["RENTABOT_PROPERTY_JLINK_ID"] == seen["RENTABOT_PROPERTY_0_JLINK_ID"] == "5"
    assert (seen["RENTABOT_COUNT"], seen["RENTABOT_LEASE_ID"]) == ("2", "7")


def test_shell_exports_are_quoted() -> None:
    """A value with a space survives `eval`."""
    assert shell_exports({"RENTABOT_TOKEN": "secret token"}) == (
        "export RENTABOT_TOKEN='secret token'\n"
    )


@pytest.mark.parametrize(
    ("environment", "owner"),
    [
        ({"CI_JOB_URL": "https://gl/jobs/1", "BUILD_URL": "x"}, "https://gl/jobs/1"),
        ({"BUILD_URL": "https://jenkins/job/f/2/"}, "https://jenkins/job/f/2/"),
        (
            {"GITHUB_SERVER_URL": "https://gh", "GITHUB_REPOSITORY": "o/r", "GITHUB_RUN_ID": "3"},
            "https://gh/o/r/actions/runs/3",
        ),
    ],
)
def test_the_owner_is_the_ci_jobs_url(environment: dict[str, str], owner: str) -> None:
    """GitLab's job URL, Jenkins' build URL, GitHub's run URL."""
    assert default_owner(environment) == owner


def test_without_a_ci_the_owner_is_user_at_host() -> None:
    """Outside CI: user@host."""
    assert default_owner({}) == f"{getpass.getuser()}@{socket.gethostname()}"


def test_the_progress_line_is_rewritten_on_a_terminal_and_appended_in_a_log() -> None:
    """On a terminal each position overwrites the line (ended by a newline when done); in
    a log file each position is a line of its own."""

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    terminal, log = Terminal(), io.StringIO()
    for stream in (terminal, log):
        progress = QueueProgress("tags nrf52", stream)
        progress(2)
        progress(1)
        progress.done()
    line = "rentabot: waiting in the queue for tags nrf52: position"
    assert terminal.getvalue() == f"\r{line} 2\033[K\r{line} 1\033[K\n"
    assert log.getvalue() == f"{line} 2\n{line} 1\n"


def test_each_error_has_its_documented_exit_code() -> None:
    """120 lease ended or lost, 121 not found, 122 busy or not granted, 123 unreachable or
    unavailable, 124 any other refusal."""
    assert exit_code(LeaseLostError(1, "expired")) == EXIT_LEASE_LOST == 120
    assert exit_code(LeaseEndedError("ended")) == EXIT_LEASE_LOST
    assert exit_code(LeaseNotFoundError("no lease")) == EXIT_NOT_FOUND == 121
    assert exit_code(BusyError("busy")) == exit_code(NotGrantedError("x")) == EXIT_NOT_GRANTED
    assert EXIT_NOT_GRANTED == 122
    assert exit_code(ServerUnreachableError("x")) == exit_code(UnavailableError("x")) == 123
    assert EXIT_UNREACHABLE == 123
    assert exit_code(InvalidRequestError("ttl")) == EXIT_REFUSED == 124
    assert exit_code(RequestIdReusedError("r", 1, "released")) == EXIT_REFUSED


def test_server_error_bodies_map_to_the_tree() -> None:
    """Codes choose the class (a newer code falls back on its status); not_granted keeps
    its reason and position; a body that is not JSON still gives a useful error."""
    granted = error_from_answer(
        409,
        {"error": {"code": "not_granted", "message": "m", "reason": "timed_out", "position": 3}},
        "",
    )
    assert isinstance(granted, NotGrantedError)
    assert (granted.reason, granted.position) == ("timed_out", 3)
    ended = error_from_answer(403, {"error": {"code": "lease_ended", "message": "m"}}, "")
    assert isinstance(ended, LeaseEndedError)
    newer = error_from_answer(404, {"error": {"code": "shelf_not_found", "message": "m"}}, "")
    assert type(newer).__name__ == "NotFoundError"
    proxy = error_from_answer(503, None, "<html>Service Unavailable</html>")
    assert isinstance(proxy, UnavailableError)
    assert "Service Unavailable" in proxy.message


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["run", "--", "true"], "say what to lock: --id, --name or --tag"),
        (["lock", "--id", "1", "--name", "a"], "give --id or --name, not both"),
        (["lock", "--name", "a", "--tag", "t"], "not with --id/--name"),
        (["run", "--tag", "t", "--ttl", "10 minutes", "--", "true"], "invalid duration"),
        (["run", "--tag", "t", "--ttl", "0", "--", "true"], "must be more than 0"),
    ],
)
def test_usage_errors_exit_2_before_asking_the_server(arguments: list[str], complaint: str) -> None:
    """A selection that says nothing (it would lock any resource at all), or mixes ways of
    selecting, or a bad duration: exit 2, and no request is made (the URL goes nowhere)."""
    result = CliRunner().invoke(main, arguments, env={"RENTABOT_URL": "http://127.0.0.1:9"})
    assert result.exit_code == 2, result.output
    assert complaint in result.output
