"""The live event stream (server-sent events) through a real server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import skip_or_fail
from tests.support import EXAMPLES, RENTABOT, Replicas, Server, postgres_schema

pytestmark = pytest.mark.e2e


class StreamReader(threading.Thread):
    """Reads events from the stream in a thread, until it has `count` (or 10 s pass).

    `subscribed` is set once the server has answered (it sends `retry:` first, after it
    read where the stream starts): from then on the reader gets everything. A failure in the
    thread is kept in `error` for the test to raise.
    """

    def __init__(self, url: str, count: int, headers: dict[str, str] | None = None) -> None:
        super().__init__(daemon=True)
        self.url, self.count, self.headers = url, count, headers or {}
        self.events: list[dict[str, Any]] = []
        self.subscribed = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._read()
        except BaseException as error:  # reported by `result`
            self.error = error

    def _read(self) -> None:
        with (
            httpx.Client(timeout=httpx.Timeout(10.0)) as client,
            client.stream("GET", self.url, headers=self.headers) as answer,
        ):
            assert answer.headers["content-type"].startswith("text/event-stream")
            event: dict[str, Any] = {}
            for line in answer.iter_lines():
                if line.startswith("retry: "):
                    self.subscribed.set()
                elif line.startswith("id: "):
                    event["id"] = int(line[4:])
                elif line.startswith("event: "):
                    event["event"] = line[7:]
                elif line.startswith("data: "):
                    event["data"] = json.loads(line[6:])
                elif line == "" and event:
                    self.events.append(event)
                    event = {}
                    if len(self.events) >= self.count:
                        return

    def result(self) -> list[dict[str, Any]]:
        """The events read, once the thread has finished; its failure raised here."""
        self.join(timeout=15)
        assert not self.is_alive(), f"the stream gave {len(self.events)} of {self.count} events"
        if self.error is not None:
            raise self.error
        return self.events


def test_the_stream_pushes_grants_and_releases_as_they_commit(tmp_path: Path) -> None:
    """A subscriber sees a lock and an unlock made after it connected, in order, at once;
    reconnecting with Last-Event-ID replays what came after, without gaps."""
    with Server(tmp_path / "db.sqlite", EXAMPLES) as server:
        stream = f"{server.url}/api/v2/events/stream"
        reader = StreamReader(stream, 2)
        reader.start()
        assert reader.subscribed.wait(10), "the stream never answered"
        v1 = f"{server.url}/rentabot/api/v1.0/resources"
        token = httpx.post(f"{v1}/2/lock").json()["lock-token"]
        httpx.post(f"{v1}/2/unlock", params={"lock-token": token})
        received = reader.result()
        assert [e["event"] for e in received] == ["granted", "released"]
        assert all(e["data"]["resource_id"] == 2 for e in received)
        assert token not in json.dumps(received)

        replay = StreamReader(stream, 1, {"Last-Event-ID": str(received[0]["id"])})
        replay.start()
        assert replay.result()[0]["id"] == received[1]["id"]


def test_a_stream_past_the_subscriber_limit_is_refused_with_429(tmp_path: Path) -> None:
    """With RENTABOT_MAX_STREAM_SUBSCRIBERS=1, a second live client gets 429 while the first
    is connected, and is let in once it has gone."""
    env = {"RENTABOT_MAX_STREAM_SUBSCRIBERS": "1"}
    with Server(tmp_path / "db.sqlite", EXAMPLES, env=env) as server:
        stream = f"{server.url}/api/v2/events/stream"
        first = StreamReader(stream, 1)
        first.start()
        assert first.subscribed.wait(10)
        refused = httpx.get(stream, timeout=10)
        assert refused.status_code == 429
        assert refused.json()["error"]["code"] == "too_many_subscribers"
        httpx.post(f"{server.url}/rentabot/api/v1.0/resources/1/lock")
        assert first.result()[0]["event"] == "granted"
        # The first client has gone: a new one gets in (the server notices within 0.5 s).
        for _ in range(50):
            second = StreamReader(stream, 1)
            second.start()
            if second.subscribed.wait(1):
                break
        else:
            pytest.fail("no second subscriber was let in after the first left")
        httpx.post(f"{server.url}/rentabot/api/v1.0/resources/2/lock")
        assert second.result()[0]["event"] == "granted"


def test_many_streams_each_get_every_event_once_in_order(tmp_path: Path) -> None:
    """40 open streams on one server each get the same 10 events, once each, in id order
    (one feed fans them out; none is skipped or repeated for any subscriber)."""
    with Server(tmp_path / "db.sqlite", EXAMPLES) as server:
        stream = f"{server.url}/api/v2/events/stream"
        readers = [StreamReader(stream, 10) for _ in range(40)]
        for reader in readers:
            reader.start()
        for reader in readers:
            assert reader.subscribed.wait(10), "a stream never answered"
        v1 = f"{server.url}/rentabot/api/v1.0/resources"
        with httpx.Client() as client:
            for _ in range(5):
                token = client.post(f"{v1}/2/lock").json()["lock-token"]
                client.post(f"{v1}/2/unlock", params={"lock-token": token})
        received = [[e["id"] for e in reader.result()] for reader in readers]
        assert received[0] == sorted(set(received[0]))
        assert len(received[0]) == 10
        assert all(ids == received[0] for ids in received)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL schema for two replicas."""
    if not RENTABOT.exists():
        skip_or_fail(f"the rentabot console script is not installed at {RENTABOT}")
    with postgres_schema() as url:
        yield url


def test_an_event_on_one_replica_reaches_a_stream_on_another_within_a_second(
    postgres_url: str, tmp_path: Path
) -> None:
    """Two replicas on one PostgreSQL: a lock taken on the first is pushed to a stream open
    on the second within 1 s (its feed hears of other replicas' commits by itself)."""
    replicas = Replicas(postgres_url, EXAMPLES, 2, tmp_path).start()
    try:
        first, second = replicas.urls
        reader = StreamReader(f"{second}/api/v2/events/stream", 1)
        reader.start()
        assert reader.subscribed.wait(10), "the stream never answered"
        began = time.monotonic()
        httpx.post(f"{first}/rentabot/api/v1.0/resources/3/lock", timeout=10)
        reader.join(timeout=5)
        elapsed = time.monotonic() - began
        received = reader.result()
        assert received[0]["event"] == "granted"
        assert received[0]["data"]["resource_id"] == 3
        assert elapsed < 1.0, f"the event took {elapsed:.2f} s to cross replicas"
    finally:
        replicas.stop()
