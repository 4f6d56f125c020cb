"""Cross-site request forgery in a real Chromium: a person signed in at rentabot's page
visits a page on another port of 127.0.0.1 (another origin, but the same site, so the
`SameSite=Strict` session cookie goes along) that posts forms to rentabot."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, Response, expect

from rentabot.domain.identity import Role
from tests.browser.conftest import STILL_PAGE
from tests.support import EXAMPLES, V1, Server, create_key

pytestmark = pytest.mark.browser

#: What a state change authorised only by the cookie, from another origin, is told (a
#: browser's form gets it as a page, a script as JSON).
CROSS_ORIGIN = "it does not come from this server"


class OtherSite:
    """A plain HTTP server on another port of 127.0.0.1 serving one HTML page at `/`."""

    def __init__(self, html: str) -> None:
        page = html.encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *_args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> OtherSite:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def forging_page(rentabot: str, mallory_key: str) -> str:
    """A page that, as it loads, posts three forms to rentabot, each into its own frame:
    lock resource 1, sign out, and sign in as mallory."""
    return f"""<!doctype html>
<html><body onload="for (const form of document.forms) form.submit()">
<form method="post" action="{rentabot}{V1}/resources/1/lock" target="lock"></form>
<form method="post" action="{rentabot}/signout" target="signout"></form>
<form method="post" action="{rentabot}/signin" target="signin">
  <input type="hidden" name="key" value="{mallory_key}">
</form>
<iframe name="lock"></iframe><iframe name="signout"></iframe><iframe name="signin"></iframe>
</body></html>"""


def shown(response: Response) -> str:
    """An answer as a failure shows it: its URL, status and text (a redirect has none)."""
    if 300 <= response.status < 400:
        return f"{response.url}: {response.status} to {response.headers.get('location')}"
    return f"{response.url}: {response.status} {response.text()}"


def refusal(response: Response) -> tuple[int, bool]:
    """(status, whether the answer says the post came from another origin)."""
    if 300 <= response.status < 400:  # a redirect: it was accepted, and has no body
        return response.status, False
    return response.status, CROSS_ORIGIN in response.text().replace("&#x27;", "'")


def posted_to(url: str) -> Any:
    """A predicate for `expect_response`: the answer to a POST to `url`."""
    return lambda response: response.url == url and response.request.method == "POST"


@dataclass(frozen=True)
class KeysOnly:
    """A server that lets nobody in without a key (so a post without the cookie would be
    401, not 403), whose page does not reload on its own; and two people's lock keys."""

    server: Server
    ada: str
    mallory: str


@pytest.fixture(scope="module")
def keys_only(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KeysOnly]:
    """The module's server, and ada's and mallory's keys."""
    database = tmp_path_factory.mktemp("csrf") / "rentabot.db"
    env = {**STILL_PAGE, "RENTABOT_ANONYMOUS_ROLE": "none"}
    with Server(database, EXAMPLES, env=env) as running:
        ada = create_key(running.database_url, "ada", Role.LOCK)
        yield KeysOnly(running, ada, create_key(running.database_url, "mallory", Role.LOCK))


def whoami_from(page: Page) -> Any:
    """Who rentabot takes the tab's browser for, asked by a script of the tab's page."""
    return page.evaluate("async () => (await fetch('/api/v2/whoami')).json()")


def test_forms_posted_from_another_origin_change_nothing_and_same_origin_fetch_works(
    page: Page, keys_only: KeysOnly
) -> None:
    """Signed in at the page, a visit to a page on another port that posts lock, sign-out
    and sign-in forms gets three 403s: nothing is locked, the person is still signed in as
    themselves; a same-origin fetch from rentabot's page with the same cookie does lock."""
    server = keys_only.server
    page.goto(f"{server.url}/signin")
    page.fill("input[name=key][type=password]", keys_only.ada)
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_contain_text("ada (lock)")
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "rentabot_session"]
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")

    with OtherSite(forging_page(server.url, keys_only.mallory)) as other:
        assert other.url.rsplit(":", 1)[0] == server.url.rsplit(":", 1)[0]  # same host
        visit = page.context.new_page()
        with (
            visit.expect_response(posted_to(f"{server.url}{V1}/resources/1/lock")) as lock,
            visit.expect_response(posted_to(f"{server.url}/signout")) as sign_out,
            visit.expect_response(posted_to(f"{server.url}/signin")) as sign_in,
        ):
            visit.goto(other.url)
        for answer in (lock.value, sign_out.value, sign_in.value):
            sent = answer.request.all_headers()
            assert sent.get("origin") == other.url.rstrip("/"), sent
            assert "rentabot_session=" in sent.get("cookie", ""), "the cookie was not sent"
            assert refusal(answer) == (403, True), shown(answer)
        visit.close()

    headers = {"X-API-Key": keys_only.ada}
    with httpx.Client(base_url=server.url, headers=headers, timeout=10) as api:
        first = api.get("/api/v2/resources").json()["resources"][0]
        assert (first["id"], first["state"]) == (1, "available")
        page.reload()
        expect(page.locator("#who")).to_contain_text("ada (lock)")
        assert whoami_from(page) == {"principal": "ada", "role": "lock", "via": "session"}
        assert [c["value"] for c in page.context.cookies() if c["name"] == cookie["name"]] == [
            cookie["value"]
        ]

        # The same cookie, from rentabot's own page: accepted.
        status, body = page.evaluate(
            """async (url) => {
                const answer = await fetch(url, {method: "POST", credentials: "same-origin"});
                return [answer.status, await answer.json()];
            }""",
            f"{V1}/resources/1/lock",
        )
        assert status == 200, body
        first = api.get("/api/v2/resources").json()["resources"][0]
        assert first["state"] == "locked"
        assert first["holder"]["principal"] == "ada"
        freed = api.post(f"{V1}/resources/1/unlock", params={"lock-token": body["lock-token"]})
        assert freed.status_code == 200, freed.text


def test_a_page_on_another_origin_cannot_sign_a_visitor_in(page: Page, keys_only: KeysOnly) -> None:
    """A visitor who is not signed in opens a page on another port that posts mallory's key
    to rentabot's sign-in form: 403, no session cookie, and rentabot still takes them for
    anonymous."""
    server = keys_only.server
    with OtherSite(forging_page(server.url, keys_only.mallory)) as other:
        with page.expect_response(posted_to(f"{server.url}/signin")) as sign_in:
            page.goto(other.url)
        assert sign_in.value.request.all_headers().get("origin") == other.url.rstrip("/")
        assert refusal(sign_in.value) == (403, True), shown(sign_in.value)
    assert [c for c in page.context.cookies() if c["name"] == "rentabot_session"] == []
    page.goto(f"{server.url}/signin")
    assert whoami_from(page) == {"principal": None, "role": "none", "via": "anonymous"}
