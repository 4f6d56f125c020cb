"""A person who may not read the page without signing in is asked to, and comes back to the
page they asked for; no `next` or `back` sends them to another site."""

from __future__ import annotations

import html
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from rentabot.app import create_app
from rentabot.domain.identity import Role
from rentabot.service.bootstrap import prepare_database
from rentabot.settings import Settings
from rentabot.web.forms import local_path
from tests.support import EXAMPLES, create_key

SAME_ORIGIN = {"Origin": "http://testserver"}
#: Each would take a browser to evil.example (or run script) if followed as a redirect.
ELSEWHERE = [
    "https://evil.example/",
    "//evil.example/x",
    "/\\evil.example/x",
    "\\\\evil.example",
    "/\t/evil.example",
    "javascript:alert(1)",
    "evil.example",
    "",
]


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    """A server whose page anonymous people may not read, and a lock key for `ada`."""
    folder: Path = tmp_path_factory.mktemp("sign-in")
    settings = Settings(
        database_url=f"sqlite:///{folder / 'rentabot.db'}",
        resource_descriptor=EXAMPLES,
        anonymous_role="none",
    )
    prepare_database(settings)
    key = create_key(settings.database_url, "ada", Role.LOCK)
    with TestClient(create_app(settings), base_url="http://testserver") as client:
        yield client, key


def test_an_anonymous_person_is_asked_to_sign_in_with_a_way_back_to_the_page(
    site: tuple[TestClient, str],
) -> None:
    """401 as a page (not JSON, not a bare line): it says to sign in and links to the
    sign-in form, which will bring the person back to the view they asked for."""
    client, _ = site
    answer = client.get("/resources/1?x=1")
    assert answer.status_code == 401
    assert answer.headers["content-type"].startswith("text/html")
    assert "Sign in to see this" in answer.text
    assert '<link rel="stylesheet" href="/static/page.css">' in answer.text
    assert 'href="/signin?next=%2Fresources%2F1%3Fx%3D1"' in answer.text
    form = client.get("/signin?next=%2Fresources%2F1%3Fx%3D1")
    assert 'name="next" value="/resources/1?x=1"' in html.unescape(form.text)


def test_signing_in_goes_back_to_the_page_that_asked(site: tuple[TestClient, str]) -> None:
    """After the key is accepted the person lands on `next`, readable now."""
    client, key = site
    answer = client.post(
        "/signin",
        data={"key": key, "next": "/resources/1"},
        headers=SAME_ORIGIN,
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/resources/1"
    session = answer.cookies["rentabot_session"]
    client.cookies.clear()
    page = client.get("/resources/1", headers={"Cookie": f"rentabot_session={session}"})
    assert page.status_code == 200
    assert "ada" in page.text


def test_the_api_still_answers_json_to_an_anonymous_caller(
    site: tuple[TestClient, str],
) -> None:
    """The page's 401 is for people: machines keep their JSON error and challenge."""
    client, _ = site
    answer = client.get("/api/v2/resources")
    assert answer.status_code == 401
    assert answer.json()["error"]["code"]
    assert "WWW-Authenticate" in answer.headers


@pytest.mark.parametrize("target", ELSEWHERE)
def test_a_sign_in_never_redirects_to_another_site(
    site: tuple[TestClient, str], target: str
) -> None:
    """A link to /signin?next=… from a phishing mail cannot send the person elsewhere."""
    client, key = site
    answer = client.post(
        "/signin", data={"key": key, "next": target}, headers=SAME_ORIGIN, follow_redirects=False
    )
    client.cookies.clear()
    assert answer.status_code == 303
    assert answer.headers["location"] == "/"


@pytest.mark.parametrize("target", ELSEWHERE)
def test_no_target_that_leaves_the_site_is_a_local_path(target: str) -> None:
    """The one rule both `next` and the forms' `back` go through."""
    assert local_path(target) == "/"


@pytest.mark.parametrize("target", ["/", "/queue", "/?tag=lab&state=locked", "/resources/3#use"])
def test_a_path_of_this_site_is_kept(target: str) -> None:
    """What the page itself sends back stays as it is."""
    assert local_path(target) == target


def test_a_form_whose_back_leaves_the_site_returns_to_the_page_instead(
    site: tuple[TestClient, str],
) -> None:
    """`back` with a backslash (read by browsers as `//host`) redirects to `/`, not there."""
    client, key = site
    signed = client.post(
        "/signin", data={"key": key}, headers=SAME_ORIGIN, follow_redirects=False
    ).cookies["rentabot_session"]
    client.cookies.clear()
    answer = client.post(
        "/actions/reserve",
        data={"resource_id": "1", "ttl": "900", "back": "/\\evil.example/x"},
        headers={**SAME_ORIGIN, "Cookie": f"rentabot_session={signed}"},
        follow_redirects=False,
    )
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/?done=")
