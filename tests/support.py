"""Helpers for tests: descriptors, and real `rentabot serve` processes on free ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "resources.yml"
RENTABOT = Path(sys.executable).with_name("rentabot")
V1 = "/rentabot/api/v1.0"


def write_descriptor(path: Path, resources: dict[str, Any]) -> Path:
    """Write a descriptor file from a mapping of name → fields."""
    path.write_text(yaml.safe_dump(resources, sort_keys=False))
    return path


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    """A real `rentabot serve` process on 127.0.0.1, for end-to-end tests."""

    def __init__(
        self,
        database: Path,
        descriptor: Path | None,
        *,
        workers: int = 1,
        env: dict[str, str] | None = None,
    ) -> None:
        self.database = database
        self.descriptor = descriptor
        self.workers = workers
        self.env = env or {}
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.log = database.with_suffix(".log")

    @property
    def url(self) -> str:
        """The server's base URL."""
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The command line that starts it."""
        command = [str(RENTABOT), "serve", "--host", "127.0.0.1", "--port", str(self.port)]
        command += ["--database", f"sqlite:///{self.database}", "--workers", str(self.workers)]
        if self.descriptor is not None:
            command += ["--descriptor", str(self.descriptor)]
        return command

    def start(self, timeout: float = 30.0) -> Server:
        """Start it and wait until it answers; raise with its log if it does not."""
        environment = {k: v for k, v in os.environ.items() if not k.startswith("RENTABOT_")}
        environment.update(self.env)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"server did not answer within {timeout} s:\n{self.output()}")

    def output(self) -> str:
        """Everything the server printed so far."""
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """`kill -9` the server and all its worker processes."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Stop it gracefully (SIGTERM), or kill it after a few seconds."""
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
