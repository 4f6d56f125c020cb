"""Helpers for the client and CLI tests: a proxy that loses answers, and `rentabot` client
processes (tests/support.py has the server side)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import BinaryIO

from rentabot.client import Client
from tests.support import (
    RENTABOT,
    Server,
    environment_without_settings,
    free_port,
    write_descriptor,
)


class AnswerDroppingProxy:
    """A TCP proxy in front of a server that loses the answers of chosen requests: the
    request reaches the server (which acts on it), then the connection is cut before the
    answer gets back, as a flaky network would. HTTP/1.1 with Content-Length only, which
    is all rentabot answers."""

    def __init__(self, upstream_port: int, drop: Callable[[bytes], bool]) -> None:
        self.upstream_port = upstream_port
        #: Given each request's first line (b"POST /api/v2/leases HTTP/1.1"): drop its answer?
        self.drop = drop
        self.port = free_port()
        self.dropped: list[bytes] = []
        #: Set: every request is cut before it reaches the server (a network outage).
        self.cut = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", self.port))
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def url(self) -> str:
        """The proxy's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> AnswerDroppingProxy:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        # Closing alone does not wake a thread blocked in accept() on Linux; shutdown does.
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        self._thread.join(timeout=5)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with client, client.makefile("rb") as reader:
            while True:
                request = _read_message(reader)
                if request is None:
                    return
                if self.cut.is_set():
                    self.dropped.append(request.split(b"\r\n", 1)[0])
                    return
                with socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
                    upstream.sendall(request)
                    with upstream.makefile("rb") as answers:
                        answer = _read_message(answers)
                first_line = request.split(b"\r\n", 1)[0]
                if answer is None or self.drop(first_line):
                    self.dropped.append(first_line)
                    return  # the connection closes: the answer is lost
                client.sendall(answer)


def _read_message(reader: BinaryIO) -> bytes | None:
    """One HTTP/1.1 message (head and Content-Length body) from a stream; None at its end."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        line = reader.readline()
        if not line:
            return None
        head += line
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
    return head + reader.read(length)


def rentabot_command(*args: str) -> list[str]:
    """The installed `rentabot` command line with these arguments."""
    return [str(RENTABOT), *args]


def client_environment(url: str, **extra: str) -> dict[str, str]:
    """The environment of a `rentabot` client process: this one's without RENTABOT_*
    variables, plus the server URL, a short retry budget, a fixed terminal width, and the
    installed `rentabot` first on the PATH (for scripts that call it)."""
    environment = environment_without_settings(rentabot_on_path=True)
    environment.update({"RENTABOT_URL": url, "RENTABOT_RETRY_FOR": "3s", "COLUMNS": "80"})
    environment.update(extra)
    return environment


def lab_server(folder: Path, tags: Mapping[str, int]) -> Server:
    """A server (not started) of boards `<tag>-board-<n>` (n from 1) carrying `<tag>`, each
    with an endpoint `ssh://<tag>-<n>.lab` and properties `serial` (`<tag><n>`) and
    `jlink-id` (`<n>`). Long-polls answer within 1 s, so waiting clients see their position
    change; TTLs are allowed up to an hour."""
    boards = {
        f"{tag}-board-{n}": {
            "tags": [tag],
            "endpoint": f"ssh://{tag}-{n}.lab",
            "properties": {"serial": f"{tag}{n}", "jlink-id": str(n)},
        }
        for tag, count in tags.items()
        for n in range(1, count + 1)
    }
    descriptor = write_descriptor(folder / "resources.yml", boards)
    environment = {"RENTABOT_LONG_POLL_SECONDS": "1", "RENTABOT_MAX_TTL": "3600"}
    return Server(folder / "db.sqlite", descriptor, env=environment)


def states(client: Client, tag: str) -> list[str]:
    """The states of the boards carrying `tag`, in id order."""
    return [resource.state for resource in client.resources([tag])]


def wait_for(condition: Callable[[], bool], timeout: float = 15) -> None:
    """Poll `condition` until it holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition never held"
        time.sleep(0.02)


def losing_acquires(count: int) -> Callable[[bytes], bool]:
    """For AnswerDroppingProxy: lose the answers of the first `count` acquires."""
    lost = 0

    def lose(first_line: bytes) -> bool:
        nonlocal lost
        if first_line.startswith(b"POST /api/v2/leases ") and lost < count:
            lost += 1
            return True
        return False

    return lose
