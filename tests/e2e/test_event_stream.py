"""The live event stream (server-sent events) through a real server."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support import EXAMPLES, Server

pytestmark = pytest.mark.e2e


def _read_events(url: str, headers: dict[str, str], count: int, into: list[dict[str, Any]]) -> None:
    """Collect `count` events from the stream (bounded by a timeout)."""
    with (
        httpx.Client(timeout=httpx.Timeout(10.0)) as client,
        client.stream("GET", url, headers=headers) as answer,
    ):
        assert answer.headers["content-type"].startswith("text/event-stream")
        event: dict[str, Any] = {}
        for line in answer.iter_lines():
            if line.startswith("id: "):
                event["id"] = int(line[4:])
            elif line.startswith("event: "):
                event["event"] = line[7:]
            elif line.startswith("data: "):
                event["data"] = json.loads(line[6:])
            elif line == "" and event:
                into.append(event)
                event = {}
                if len(into) >= count:
                    return


def test_the_stream_pushes_grants_and_releases_as_they_commit(tmp_path: Path) -> None:
    """A subscriber sees a lock and an unlock made after it connected, in order, at once."""
    with Server(tmp_path / "db.sqlite", EXAMPLES) as server:
        received: list[dict[str, Any]] = []
        reader = threading.Thread(
            target=_read_events, args=(f"{server.url}/api/v2/events/stream", {}, 2, received)
        )
        reader.start()
        time.sleep(0.5)  # let it subscribe; it only gets what happens from now on
        v1 = f"{server.url}/rentabot/api/v1.0/resources"
        token = httpx.post(f"{v1}/2/lock").json()["lock-token"]
        httpx.post(f"{v1}/2/unlock", params={"lock-token": token})
        reader.join(timeout=10)
        assert [e["event"] for e in received] == ["granted", "released"]
        assert all(e["data"]["resource_id"] == 2 for e in received)
        assert token not in json.dumps(received)

        # Resuming with Last-Event-ID replays what came after, without gaps.
        replay: list[dict[str, Any]] = []
        headers = {"Last-Event-ID": str(received[0]["id"])}
        _read_events(f"{server.url}/api/v2/events/stream", headers, 1, replay)
        assert replay[0]["id"] == received[1]["id"]
