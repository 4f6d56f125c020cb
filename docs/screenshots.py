"""Take the page's screenshots for the docs: a real `rentabot serve` on a demo lab, a few real
leases, a queue and a maintenance period, photographed by Debian's Chromium (Playwright).

    .venv/bin/python docs/screenshots.py            # writes docs/screenshots/*.png
    .venv/bin/python docs/screenshots.py --out DIR  # elsewhere (the test does this)

Everything runs on 127.0.0.1 with a throw-away SQLite file; nothing is fetched from outside.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import yaml
from playwright.sync_api import Page, sync_playwright

HERE = Path(__file__).resolve().parent
RENTABOT = Path(sys.executable).with_name("rentabot")
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"]

#: A small lab: boards, phones and a licence, tagged as an operator would.
LAB: dict[str, dict[str, object]] = {
    **{
        f"nrf52-board-{n}": {
            "description": f"nRF52840 DK on bench {n}",
            "endpoint": f"ssh://bench{n}.lab/dev/ttyACM0",
            "tags": ["nrf52", "ble", f"bench{n}"],
            "properties": {"serial": f"68301234{n}", "jlink": f"5012345{n}"},
        }
        for n in range(1, 5)
    },
    **{
        f"pixel-{n}": {
            "description": f"Pixel 8, Android 15, rack slot {n}",
            "endpoint": f"adb://phones.lab:{5554 + 2 * n}",
            "tags": ["android", "phone"],
        }
        for n in range(1, 4)
    },
    "x86-runner-1": {"description": "Ubuntu 24.04 runner", "tags": ["x86", "linux"]},
    "x86-runner-2": {"description": "Ubuntu 24.04 runner", "tags": ["x86", "linux"]},
    "matlab-licence": {"description": "Floating MATLAB licence", "tags": ["licence"]},
}


#: The files `shoot` writes: the views (path), light; the resource view dark and on a phone.
VIEWS = {
    "resources": "/",
    "resource": "/resources/1",
    "queue": "/queue",
    "tags": "/tags",
    "tag": "/tags/nrf52",
    "activity": "/activity",
}
NAMES = (*(f"{name}.png" for name in VIEWS), "resources-dark.png", "resources-phone.png")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("RENTABOT_")}


@contextmanager
def demo_server(folder: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A real server on the demo lab; yields its URL and an API key per person."""
    descriptor = folder / "lab.yml"
    descriptor.write_text(yaml.safe_dump(LAB, sort_keys=False))
    database = f"sqlite:///{folder / 'rentabot.db'}"
    keys: dict[str, str] = {}
    port = _free_port()
    command = [str(RENTABOT), "serve", "--host", "127.0.0.1", "--port", str(port)]
    command += ["--database", database, "--descriptor", str(descriptor)]
    with (folder / "server.log").open("ab") as log:
        # The staged waiter does not poll: a long keep-alive keeps it in the queue's picture.
        environment = _environment() | {"RENTABOT_QUEUE_KEEPALIVE": "600"}
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=environment)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            raise RuntimeError((folder / "server.log").read_text())
        for name, role in (("ada", "lock"), ("grace", "admin"), ("ci-jenkins", "lock")):
            made = subprocess.run(
                [str(RENTABOT), "keys", "create", name, "--role", role, "--database", database],
                capture_output=True,
                text=True,
                check=True,
                env=_environment(),
            )
            keys[name] = made.stdout.splitlines()[-1]
        yield url, keys
    finally:
        server.terminate()
        server.wait(timeout=30)


def stage(url: str, keys: dict[str, str]) -> None:
    """Leases, a queue and a maintenance period, made through the API as people and CI do."""

    def call(who: str, method: str, path: str, body: object = None) -> httpx.Response:
        answer = httpx.request(
            method, f"{url}{path}", json=body, headers={"X-API-Key": keys[who]}, timeout=30
        )
        answer.raise_for_status()
        return answer

    job = "https://jenkins.lab/job/firmware/1042/"
    call(
        "ci-jenkins", "POST", "/api/v2/leases", {"select": {"ids": [1]}, "ttl": 1800, "owner": job}
    )
    call(
        "ci-jenkins",
        "POST",
        "/api/v2/leases",
        {"select": {"tags": ["android"], "count": 2}, "ttl": 900},
    )
    first = call("ada", "POST", "/api/v2/leases", {"select": {"ids": [8]}, "ttl": 3600})
    call("ada", "DELETE", f"/api/v2/leases/{first.json()['lease']['id']}")
    call("ada", "POST", "/api/v2/leases", {"select": {"ids": [2]}, "ttl": 7200})
    reason = {"reason": "USB hub flaky: replacing it"}
    call("grace", "POST", "/api/v2/resources/4/maintenance", {"on": True, **reason})
    # Two CI jobs wait for bench 1: each hangs up after a second, and the demo's long
    # keep-alive keeps their tickets in the queue for the pictures.
    for job_number in (1043, 1044):
        wanted = {"select": {"ids": [1]}, "ttl": 600, "wait": 3600}
        wanted["owner"] = f"https://jenkins.lab/job/firmware/{job_number}/"
        with contextlib.suppress(httpx.ReadTimeout):
            httpx.post(
                f"{url}/api/v2/leases",
                json=wanted,
                headers={"X-API-Key": keys["ci-jenkins"]},
                timeout=1,
            )


def _sign_in(page: Page, url: str, key: str) -> None:
    page.goto(f"{url}/signin")
    page.fill("#key", key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_selector("#who")


def shoot(url: str, keys: dict[str, str], out: Path) -> list[Path]:
    """Photograph each view, light and dark, desktop and phone; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        for scheme in ("light", "dark"):
            context = browser.new_context(
                viewport={"width": 1280, "height": 800}, color_scheme=scheme
            )
            page = context.new_page()
            _sign_in(page, url, keys["ada"])
            for name, path in VIEWS.items():
                if scheme == "dark" and name != "resources":
                    continue
                page.goto(f"{url}{path}")
                page.wait_for_timeout(300)
                target = out / (f"{name}.png" if scheme == "light" else f"{name}-dark.png")
                page.screenshot(path=str(target), full_page=True)
                written.append(target)
            context.close()
        phone = browser.new_context(
            viewport={"width": 390, "height": 844}, is_mobile=True, device_scale_factor=2
        )
        page = phone.new_page()
        page.goto(url)
        page.wait_for_timeout(300)
        target = out / "resources-phone.png"
        page.screenshot(path=str(target))
        written.append(target)
        phone.close()
        browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    """Take the screenshots into `--out` (docs/screenshots by default)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "screenshots")
    arguments = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder, demo_server(Path(folder)) as (url, keys):
        stage(url, keys)
        for path in shoot(url, keys, arguments.out):
            print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
