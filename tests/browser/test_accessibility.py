"""The page is usable without sight of it and without a mouse, in a real Chromium against a
real server: every control on every view has a name a screen reader can say, all text
meets WCAG AA contrast in the light and the dark scheme, `/` and Tab reach the filters and a
row's action with a visible focus ring, and native controls follow the dark scheme."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Literal

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from rentabot.domain.identity import Role
from tests.browser.conftest import STILL_PAGE
from tests.support import EXAMPLES, Server

pytestmark = pytest.mark.browser

#: Every view, with the example resources staged as `server` stages them: 1 held by ada,
#: 3 in maintenance, 4 held by bob (ada waits for it), 2 and 5 free. `ble` is a tag whose
#: pool someone waits for (Join only), `tool` one with a free resource (Reserve too).
VIEWS: tuple[str, ...] = ("/", "/resources/1", "/resources/3", "/resources/4", "/tags", "/tags/ble")
VIEWS += ("/tags/tool", "/queue", "/activity", "/signin")
#: Buttons each view shows ada, an admin, so that the names test sees every kind of form.
ADMIN_BUTTONS = {
    "/": (
        *("Sign out", "Leave the queue", "Filter", "Extend 1 h", "Release", "Reserve"),
        "Join the queue for nrf52-board-1",
    ),
    "/resources/1": ("Extend", "Release", "Maintenance on", "Force-release", "Copy the curl line"),
    "/resources/3": ("Maintenance off",),
    "/resources/4": ("Join the queue", "Force-release"),
    "/tags/tool": ("Reserve", "Join the queue", "Copy the rentabot run line"),
    "/queue": ("Cancel",),
}
#: WCAG 2.1 AA, success criterion 1.4.3, for text of normal size.
AA_NORMAL_TEXT = 4.5
Scheme = Literal["light", "dark"]

#: Each control (button, input other than hidden, select, textarea, link) without an
#: accessible name, computed as browsers do, in order: aria-labelledby, aria-label, its
#: labels (their text without the controls inside them), its own text (buttons and links,
#: an input button's value, an image's alt), then title. A placeholder does not count.
UNNAMED_CONTROLS = """() => {
  const text = (node) => {
    if (node.nodeType === Node.TEXT_NODE) return node.textContent;
    if (node.nodeType !== Node.ELEMENT_NODE) return "";
    if (node.matches("input, select, textarea, button")) return "";
    if (node.matches("img")) return node.getAttribute("alt") || "";
    return [...node.childNodes].map(text).join("");
  };
  const contents = (el) => (el ? [...el.childNodes].map(text).join("") : "");
  const name = (el) => {
    const ids = (el.getAttribute("aria-labelledby") || "").split(/\\s+/).filter(Boolean);
    const candidates = [
      ids.map((id) => contents(document.getElementById(id))).join(" "),
      el.getAttribute("aria-label") || "",
      [...(el.labels || [])].map(contents).join(" "),
      el.matches("button, a") ? contents(el) : "",
      el.matches("input[type=submit], input[type=button], input[type=reset]") ? el.value : "",
      el.matches("input[type=image]") ? el.getAttribute("alt") || "" : "",
      el.getAttribute("title") || "",
    ];
    return candidates.map((c) => c.replace(/\\s+/g, " ").trim()).find((c) => c) || "";
  };
  const controls = [
    ...document.querySelectorAll("button, input:not([type=hidden]), select, textarea, a"),
  ];
  return {
    count: controls.length,
    unnamed: controls.filter((el) => !name(el)).map((el) => el.outerHTML.slice(0, 200)),
  };
}"""

#: Each visible piece of text whose colour is below `min` contrast against what is behind
#: it (WCAG's relative luminance), and a description of every text it checked. Text: each
#: element with text of its own, the value and the placeholder of each field and select,
#: and SVG text (painted with `fill`). Behind it: the first background colour up its
#: ancestors that is not transparent (translucent ones composited on it), else the canvas.
LOW_CONTRAST = """([min, canvas]) => {
  const parse = (value) => {
    const m = /^rgba?\\(([^)]*)\\)$/.exec(value.trim());
    if (!m) return null;
    const parts = m[1].split(/[\\s,\\/]+/).filter(Boolean).map(Number);
    return [parts[0], parts[1], parts[2], parts.length > 3 ? parts[3] : 1];
  };
  const over = (top, bottom) =>
    [0, 1, 2].map((i) => top[i] * top[3] + bottom[i] * (1 - top[3])).concat(1);
  const background = (el) => {
    const layers = [];
    for (let node = el; node; node = node.parentElement) {
      const colour = parse(getComputedStyle(node).backgroundColor);
      if (colour && colour[3] > 0) layers.push(colour);
      if (colour && colour[3] >= 1) break;
    }
    return layers.reverse().reduce((below, layer) => over(layer, below), parse(canvas));
  };
  const luminance = (rgb) => {
    const [r, g, b] = rgb.slice(0, 3).map((v) => {
      const c = v / 255;
      return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4;
    });
    return 0.2126 * r + 0.7152 * g + 0.0722 * b;
  };
  const ratio = (fg, bg) => {
    const [a, b] = [luminance(fg), luminance(bg)].sort((x, y) => y - x);
    return (a + 0.05) / (b + 0.05);
  };
  const shown = (el) => {
    if (!el.checkVisibility({ visibilityProperty: true, opacityProperty: true })) return false;
    const box = el.getBoundingClientRect();
    return box.width > 1 && box.height > 1;  // not the 1x1 clipped .sr text
  };
  const ownText = (el) =>
    [...el.childNodes].some((n) => n.nodeType === Node.TEXT_NODE && n.textContent.trim());
  const describe = (el) => {
    const classes = (el.getAttribute("class") || "").split(/\\s+/);
    const words = (el.textContent || el.value || "").trim().slice(0, 40);
    return [el.tagName.toLowerCase(), ...classes.filter(Boolean)].join(".") +
      (el.id ? "#" + el.id : "") + ` "${words}"`;
  };
  const checked = [];
  const low = [];
  const check = (el, what, colour) => {
    const [fg, bg] = [parse(colour), background(el)];
    checked.push(what);
    if (!fg || !bg) { low.push([what, colour, "unparsed", 0]); return; }
    const value = ratio(over(fg, bg), bg);
    const behind = `rgb(${bg.slice(0, 3).map(Math.round).join(", ")})`;
    if (value < min) low.push([what, colour, behind, Math.round(value * 100) / 100]);
  };
  const fields = "input:not([type=hidden],[type=checkbox],[type=radio]), select, textarea";
  for (const el of document.body.querySelectorAll("*")) {
    if (el.matches("script, style, option, title") || !shown(el)) continue;
    if (el instanceof SVGElement) {
      if (el.matches("text") && el.textContent.trim()) {
        check(el, describe(el), getComputedStyle(el).fill);
      }
    } else if (el.matches(fields)) {
      check(el, describe(el), getComputedStyle(el).color);
      if (el.placeholder && !el.value) {
        check(el, describe(el) + "::placeholder", getComputedStyle(el, "::placeholder").color);
      }
    } else if (ownText(el)) {
      check(el, describe(el), getComputedStyle(el).color);
    }
  }
  return { checked, low };
}"""

#: What has focus: its tag, id, text (or name), where it is, and the focus ring it draws.
FOCUSED = """() => {
  const el = document.activeElement;
  if (!el || el === document.body) return null;
  const style = getComputedStyle(el);
  const row = el.closest("#resources tbody tr");
  const outlined = style.outlineStyle !== "none" && parseFloat(style.outlineWidth) > 0;
  const ring = `${style.outlineStyle} ${style.outlineWidth} ${style.outlineColor}`;
  return {
    tag: el.tagName.toLowerCase(),
    id: el.id,
    text: (el.textContent || el.getAttribute("name") || "").trim(),
    row: row ? row.dataset.resourceId : null,
    actions: Boolean(el.closest('td[data-label="Actions"]')),
    outline: outlined ? ring : "none",
    shadow: style.boxShadow,
  };
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real server on examples/resources.yml with a row in every state, shared by the
    module: coffee-machine (1) held by ada, another-resource (3) in maintenance,
    nrf52-board-1 (4) held by bob; 3d-printer-1 (2) and nrf52-board-2 (5) free."""
    database = tmp_path_factory.mktemp("accessibility") / "rentabot.db"
    with Server(database, EXAMPLES, env=STILL_PAGE) as running:
        admin = {"X-API-Key": running.key("ada", Role.ADMIN)}
        bob = {"X-API-Key": running.key("bob", Role.LOCK)}
        for resource_id, who in ((1, admin), (4, bob)):
            lease = httpx.post(
                f"{running.url}/api/v2/leases",
                json={"select": {"ids": [resource_id]}, "ttl": 3600},
                headers=who,
                timeout=10,
            )
            assert lease.status_code == 201, lease.text
        maintenance = httpx.post(
            f"{running.url}/api/v2/resources/3/maintenance",
            json={"on": True, "reason": "fan broken"},
            headers=admin,
            timeout=10,
        )
        assert maintenance.status_code == 200, maintenance.text
        yield running


def _sign_in(page: Page, server: Server) -> None:
    """Sign in as ada, an admin, at /signin."""
    page.goto(f"{server.url}/signin")
    page.fill("#key", server.key("ada", Role.ADMIN))
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("#who")).to_contain_text("ada (admin)")


@pytest.fixture(scope="module")
def admin(browser: Browser, server: Server) -> Iterator[BrowserContext]:
    """A desktop browser signed in as ada (admin) who waits in nrf52-board-4's queue, so
    that her places panel (waiting.js) shows on every view and /queue has her Cancel."""
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    _sign_in(page, server)
    page.goto(f"{server.url}/resources/4")
    page.get_by_role("button", name="Join the queue").click()
    expect(page.locator(".notice")).to_contain_text("In the queue: place 1")
    page.close()
    yield context
    context.close()


def _open(page: Page, url: str) -> None:
    """Open a view once its scripts added what they add: Copy buttons (at once, page.js is
    a module run before `load`) and the places panel of a person who waits (after a fetch)."""
    page.goto(url)
    if page.locator("body[data-me]").count():
        expect(page.locator("#my-queue")).to_be_visible()


def _unnamed(page: Page, server: Server, shown: dict[str, tuple[str, ...]]) -> dict[str, list[str]]:
    """Each view's controls without an accessible name (views with none left out), once
    each view shows the buttons `shown` says it must."""
    found: dict[str, list[str]] = {}
    for view in VIEWS:
        _open(page, f"{server.url}{view}")
        for name in shown.get(view, ()):
            expect(page.get_by_role("button", name=name, exact=True).first).to_be_visible()
        controls = page.evaluate(UNNAMED_CONTROLS)
        assert controls["count"] > 0, f"{view} has no control at all"
        if controls["unnamed"]:
            found[view] = controls["unnamed"]
    return found


def test_every_control_on_every_view_has_a_name_anonymous(server: Server, page: Page) -> None:
    """Not signed in, every button, field, select and link of every view has an accessible
    name (what a screen reader says for it)."""
    assert _unnamed(page, server, {"/": ("Filter",), "/signin": ("Sign in",)}) == {}


def test_every_control_on_every_view_has_a_name_signed_in_as_admin(
    server: Server, admin: BrowserContext
) -> None:
    """Signed in as an admin, with a row of each kind (Reserve with its duration, Extend and
    Release, Join queue), the operator's maintenance and force-release forms, the Copy
    buttons, the places panel and a Cancel in the queue, every control of every view has an
    accessible name."""
    page = admin.new_page()
    try:
        assert _unnamed(page, server, ADMIN_BUTTONS) == {}
    finally:
        page.close()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_all_text_meets_wcag_aa_contrast(
    server: Server, admin: BrowserContext, browser: Browser, scheme: Scheme
) -> None:
    """In the light and the dark scheme, every visible text on `/` (rows available, locked,
    in maintenance; filters and their placeholder, buttons, the places panel) and on a held
    resource's page (the operator's forms, the usage figures and charts) has a contrast of
    at least 4.5:1 with its background."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 800},
        color_scheme=scheme,
        storage_state=admin.storage_state(),
    )
    canvas = "rgb(255, 255, 255)" if scheme == "light" else "rgb(18, 18, 18)"
    page = context.new_page()
    try:
        low: dict[str, list[list[object]]] = {}
        checked: dict[str, str] = {}
        for view in ("/", "/resources/1"):
            _open(page, f"{server.url}{view}")
            result = page.evaluate(LOW_CONTRAST, [AA_NORMAL_TEXT, canvas])
            checked[view] = "\n".join(result["checked"])
            if result["low"]:
                low[view] = result["low"]
        for state in ("available", "locked", "maintenance"):
            assert f"td.status.{state} " in checked["/"], f"no {state} row was checked"
        assert "::placeholder" in checked["/"]
        assert "text.chart-label " in checked["/resources/1"], "no chart label was checked"
        assert "button " in checked["/resources/1"]
        assert low == {}
    finally:
        context.close()


def test_slash_on_the_resource_view_focuses_the_search_box(server: Server, page: Page) -> None:
    """Pressing `/` anywhere on `/` (not while typing) puts the cursor in the search box, and
    the `/` is not typed into it."""
    page.goto(server.url)
    expect(page.locator("body")).to_have_attribute("data-live", "open")
    expect(page.locator("#search")).not_to_be_focused()
    page.keyboard.press("/")
    expect(page.locator("#search")).to_be_focused()
    expect(page.locator("#search")).to_have_value("")


def test_tab_reaches_search_filter_and_the_first_rows_action_in_order_each_with_a_ring(
    server: Server, admin: BrowserContext
) -> None:
    """From the top of `/`, Tab reaches the search box, then the filters' submit button,
    then the first row's action button; each of them, focused, draws a focus indicator (an
    outline or a box-shadow)."""
    page = admin.new_page()
    try:
        _open(page, server.url)
        reached: list[dict[str, object]] = []
        for _ in range(60):
            page.keyboard.press("Tab")
            focused = page.evaluate(FOCUSED)
            assert focused is not None, f"Tab left the page after {reached}"
            reached.append(focused)
            if focused["tag"] == "button" and focused["row"] == "1":
                break
        order = [f"{f['tag']} {f['text'] or f['id']}" for f in reached]

        def first(what: str, test: Callable[[dict[str, object]], bool]) -> int:
            found = [index for index, focused in enumerate(reached) if test(focused)]
            assert found, f"Tab never reached {what}: {order}"
            return found[0]

        search = first("the search box", lambda f: f["id"] == "search")
        submit = first(
            "the Filter button", lambda f: f["tag"] == "button" and f["text"] == "Filter"
        )
        action = first("row 1's action", lambda f: f["tag"] == "button" and bool(f["actions"]))
        assert reached[action]["row"] == "1", order
        assert search < submit < action, order
        for index in (search, submit, action):
            ring = reached[index]
            assert ring["outline"] != "none" or ring["shadow"] != "none", (
                f"{order[index]} shows no focus: {ring}"
            )
    finally:
        page.close()


def test_native_controls_follow_the_dark_scheme(browser: Browser, server: Server) -> None:
    """In the dark scheme a `select` on `/` is drawn dark (the page declares `color-scheme:
    light dark`): under half brightness, not the light default (94 %) that glares on a dark
    page; light in the light scheme."""
    luminance = """el => {
      const [r, g, b] = getComputedStyle(el).backgroundColor.match(/\\d+(\\.\\d+)?/g).map(Number);
      return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255;
    }"""
    seen: dict[str, float] = {}
    schemes: tuple[Scheme, ...] = ("dark", "light")
    for scheme in schemes:
        context = browser.new_context(color_scheme=scheme)
        page = context.new_page()
        try:
            page.goto(server.url)
            seen[scheme] = page.locator('select[name="state"]').evaluate(luminance)
        finally:
            context.close()
    assert seen["dark"] < 0.5, seen
    assert seen["light"] > 0.8, seen
