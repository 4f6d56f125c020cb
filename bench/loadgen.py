"""loadgen: rentabot's load generator and benchmark driver (a benchmark, not a test).

Modes (see bench/README.md for how to read the output):

    run        drive a workload against a server that is already running (--url)
    compare    alternate the reference server and rentabot, same workload, R rounds;
               report rentabot's throughput as a fraction of the reference's
    scale      100,000 resources: time to ready, lock-by-tag latency, resident memory
    selfcheck  feed the overlap checker and the HTTP parser synthetic input

Every client speaks raw keep-alive HTTP/1.1 over asyncio streams; the clients of a run are
spread over several processes because one Python process saturates before the server does.
After each run the hold intervals of all clients are merged per resource and any overlap (a
double grant) is reported; the exit status is non-zero on any overlap or error.

Linux only: it reads /proc and relies on CLOCK_MONOTONIC being shared by all processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing as mp
import multiprocessing.synchronize as mps
import os
import secrets
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote, urlsplit

PREFIX = "/rentabot/api/v1.0"
HOST = "127.0.0.1"

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"

WORKLOAD_NAMES = ("uncontended-id", "contended-id", "tag")
#: The tag every generated resource carries; the `tag` workload locks by it.
SHARED_TAG = "any"

#: Server start commands.  Each word is formatted with the placeholders of `_placeholders`
#: after splitting, so paths with spaces survive.
REFERENCE_CMD = (
    "{python} -m uvicorn --app-dir {reference_dir} reference_server:app"
    " --host {host} --port {port} --no-access-log"
)
RENTABOT_CMD = (
    "{venv}/bin/rentabot serve --host {host} --port {port}"
    " --descriptor {descriptor} --database sqlite:///{tmpdir}/bench.db"
)
#: bench/broken_server.py: the reference server, but it sometimes grants a busy resource.
BROKEN_CMD = (
    "{python} -m uvicorn --app-dir {bench_dir} broken_server:app"
    " --host {host} --port {port} --no-access-log"
)
#: Upstream rent-a-bot 1.0 itself (`pip install rentabot==1.0.0` into a scratch venv outside
#: any repository: $UPSTREAM10_VENV, default /tmp/upstream10/venv), as its users start it; it
#: reads RENTABOT_RESOURCE_DESCRIPTOR. Its API is at `--prefix /api/v1`; it refuses YAML tag
#: lists, so compare it with `--comma-tags`.
UPSTREAM10_CMD = (
    "{upstream10_venv}/bin/python -m uvicorn --app-dir {tmpdir} rentabot.main:app"
    " --host {host} --port {port} --no-access-log"
)
CMD_ALIASES = {
    "reference": REFERENCE_CMD,
    "rentabot": RENTABOT_CMD,
    "broken": BROKEN_CMD,
    "upstream-1.0": UPSTREAM10_CMD,
}

MAX_SAMPLES = 5  # error bodies and overlapping pairs kept for the report

#: API keys (--api-key-role, --api-key): the key's name and the header every request carries.
KEY_NAME = "bench"
KEY_ROLES = ("read", "lock", "admin")
WHOAMI = "/api/v2/whoami"


def key_header(secret: str) -> bytes:
    """The extra header line that sends an API key (see Connection.request)."""
    return b"X-API-Key: %s\r\n" % secret.encode("ascii")


def decoy_key() -> str:
    """A random string shaped like a rentabot key ("rbk_" and 43 URL-safe characters): what
    the reference server is sent in the same header, so that it parses the same bytes."""
    return "rbk_" + secrets.token_urlsafe(32)


# =========================================================================== HTTP client


class HttpError(Exception):
    """The server's answer could not be parsed as HTTP/1.1."""


class Response(NamedTuple):
    """One HTTP answer, with the client's clock readings around it."""

    status: int
    body: bytes
    sent: float  # time.monotonic() just before the request was written
    received: float  # time.monotonic() once the whole body was read


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """Read one HTTP/1.1 response: (status, body, whether the server will close).

    Handles Content-Length and chunked bodies, which is all a lock service on uvicorn sends.
    """
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head[:-4].split(b"\r\n")
    status_line = lines[0].split(b" ", 2)
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/1."):
        raise HttpError(f"bad status line {lines[0][:80]!r}")
    status = int(status_line[1])
    length = -1
    chunked = False
    close = status_line[0] == b"HTTP/1.0"
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            close = value.strip().lower() == b"close"
    if chunked:
        parts = []
        while True:
            size_line = await reader.readuntil(b"\r\n")
            size = int(size_line.split(b";", 1)[0], 16)
            if size == 0:
                await reader.readuntil(b"\r\n")  # no trailers expected: the empty line
                break
            parts.append(await reader.readexactly(size))
            await reader.readexactly(2)
        return status, b"".join(parts), close
    if length >= 0:
        return status, await reader.readexactly(length), close
    if status in (204, 304) or 100 <= status < 200:
        return status, b"", close
    return status, await reader.read(), True  # body delimited by the end of the connection


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects lazily after an error or a close."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._host_header = f"{host}:{port}".encode("ascii")
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        """Open the connection now (so that connecting is not part of any measurement)."""
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
            sock = self._writer.get_extra_info("socket")
            if sock is not None:  # small request/response pairs: never wait for Nagle
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        """Drop the connection; the next request opens a new one."""
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def request(
        self, method: str, target: str, body: bytes = b"", headers: bytes = b""
    ) -> Response:
        """Send a request and read the whole answer.

        `headers` are extra header lines, already encoded, each ending in CRLF (callers build
        them once per client rather than once per request).
        """
        if self._writer is None:
            await self.connect()
        assert self._reader is not None
        assert self._writer is not None
        data = b"%s %s HTTP/1.1\r\nHost: %s\r\n%sContent-Length: %d\r\n\r\n%s" % (
            method.encode("ascii"),
            target.encode("ascii"),
            self._host_header,
            headers,
            len(body),
            body,
        )
        sent = time.monotonic()
        # No drain(): one small request fits the socket buffer, and the answer we wait for
        # next is the back-pressure; drain() would only add a scheduling round per request.
        self._writer.write(data)
        try:
            status, body, close = await read_response(self._reader)
        except BaseException:
            self.close()  # the stream is out of step now: never reuse it
            raise
        received = time.monotonic()
        if close:
            self.close()
        return Response(status, body, sent, received)


#: What a request can raise when the network or the server misbehaves.
NETWORK_ERRORS = (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, HttpError)


def http_get_status(
    host: str, port: int, target: str, timeout: float = 2.0, headers: bytes = b""
) -> int | None:
    """Status of one GET on a fresh connection, or None when the server does not answer."""

    async def once() -> int:
        conn = Connection(host, port)
        try:
            async with asyncio.timeout(timeout):
                return (await conn.request("GET", target, b"", headers)).status
        finally:
            conn.close()

    try:
        return asyncio.run(once())
    except (*NETWORK_ERRORS, ValueError, TimeoutError):
        return None


def http_get_json(
    host: str, port: int, target: str, timeout: float = 30.0, headers: bytes = b""
) -> Any:
    """Decoded JSON body of one GET that must answer 200."""

    async def once() -> Response:
        conn = Connection(host, port)
        try:
            async with asyncio.timeout(timeout):
                return await conn.request("GET", target, b"", headers)
        finally:
            conn.close()

    resp = asyncio.run(once())
    if resp.status != 200:
        raise SystemExit(f"loadgen: GET {target} answered {resp.status}: {resp.body[:300]!r}")
    return json.loads(resp.body)


# =========================================================================== workloads


@dataclass(frozen=True)
class ClientPlan:
    """What one client locks: by id (`expect_id` set) or by tag."""

    index: int
    lock_target: str  # the path and query of the lock request
    expect_id: int | None


@dataclass(frozen=True)
class RunConfig:
    """Everything a load run needs; picklable so that worker processes receive it."""

    workload: str
    host: str
    port: int
    prefix: str = PREFIX
    clients: int = 16
    procs: int = 2
    duration: float = 10.0
    max_cycles: int = 100_000  # per client
    hold_s: float = 0.002
    backoff_s: float = 0.001
    contended_resources: int = 2
    tag: str = SHARED_TAG
    grace_s: float = 10.0  # how long a request may still be pending after the run's end
    #: Several servers of one deployment (replicas sharing a database): client i connects to
    #: ports[i % len(ports)]. Empty (the default): every client connects to `port`.
    ports: tuple[int, ...] = ()
    #: Extra header lines sent with every request, encoded, each ending in CRLF (an API key:
    #: `key_header`). Never printed or saved: it may hold a secret.
    headers: bytes = field(default=b"", repr=False)

    def client_port(self, index: int) -> int:
        """The port client `index` connects to."""
        return self.ports[index % len(self.ports)] if self.ports else self.port


def plan_clients(cfg: RunConfig) -> list[ClientPlan]:
    """The clients of a workload: whom each one locks."""
    res = cfg.prefix + "/resources"
    plans = []
    for i in range(cfg.clients):
        if cfg.workload == "uncontended-id":
            rid = i + 1  # its own resource
        elif cfg.workload == "contended-id":
            rid = i % cfg.contended_resources + 1
        elif cfg.workload == "tag":
            plans.append(ClientPlan(i, f"{res}/lock?tag={quote(cfg.tag, safe='')}", None))
            continue
        else:
            raise ValueError(f"unknown workload {cfg.workload!r}")
        plans.append(ClientPlan(i, f"{res}/{rid}/lock", rid))
    return plans


def required_ids(cfg: RunConfig) -> set[int]:
    """The resource ids a by-id workload locks (empty for the tag workload)."""
    return {p.expect_id for p in plan_clients(cfg) if p.expect_id is not None}


class Hold(NamedTuple):
    """A hold as one client observed it: [lock answer received, unlock request sent).

    It lies inside the server-side hold (granted before the answer left, released after the
    unlock arrived), so two observed holds of one resource that overlap prove a double grant.
    """

    resource: int
    start: float
    end: float
    client: int
    fence: int | None = None  # the grant's fence, where the API gives one (v2)


@dataclass
class ClientStats:
    """What a group of clients observed; summed over clients and processes."""

    cycles: int = 0
    busy: int = 0
    errors: int = 0
    leaked: int = 0  # locks granted whose unlock did not answer 200
    error_samples: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)  # seconds, successful locks only
    #: Latencies of other requests by name ("renew", "release"…), seconds.
    op_latencies: dict[str, list[float]] = field(default_factory=dict)
    holds: list[Hold] = field(default_factory=list)
    finished: float = 0.0  # time.monotonic() when the last client stopped

    def error(self, text: str) -> None:
        """Count an error, keeping the first few descriptions."""
        self.errors += 1
        if len(self.error_samples) < MAX_SAMPLES:
            self.error_samples.append(text[:300])

    def merge(self, other: ClientStats) -> None:
        """Add another group's observations to these."""
        self.cycles += other.cycles
        self.busy += other.busy
        self.leaked += other.leaked
        self.errors += other.errors
        room = MAX_SAMPLES - len(self.error_samples)
        self.error_samples.extend(other.error_samples[: max(room, 0)])
        self.latencies.extend(other.latencies)
        for name, values in other.op_latencies.items():
            self.op_latencies.setdefault(name, []).extend(values)
        self.holds.extend(other.holds)
        self.finished = max(self.finished, other.finished)


async def run_client(
    cfg: RunConfig, plan: ClientPlan, conn: Connection, start: float, stats: ClientStats
) -> None:
    """Lock, hold, unlock in a loop until the run's end or the cycle cap."""
    deadline = start + cfg.duration
    loop = asyncio.get_running_loop()
    lock_target = plan.lock_target
    unlock_fmt = cfg.prefix + "/resources/{}/unlock?lock-token={}"
    headers = cfg.headers  # b"" unless a key is sent: the same request either way
    latencies = stats.latencies
    holds = stats.holds
    cycles = 0
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    # One timer for the whole loop rather than one per request (which costs ~8 us each): a
    # request that hangs surfaces as an error at most grace_s after the run's end.
    try:
        async with asyncio.timeout_at(loop.time() + (deadline + cfg.grace_s - time.monotonic())):
            while cycles < cfg.max_cycles and time.monotonic() < deadline:
                try:
                    resp = await conn.request("POST", lock_target, b"", headers)
                except NETWORK_ERRORS as exc:
                    stats.error(f"lock {lock_target}: {type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.01)  # don't spin on a dead server
                    continue
                if resp.status == 403:
                    stats.busy += 1
                    await asyncio.sleep(cfg.backoff_s)
                    continue
                if resp.status != 200:
                    stats.error(f"lock {lock_target} -> {resp.status}: {resp.body[:200]!r}")
                    await asyncio.sleep(cfg.backoff_s)
                    continue
                try:
                    answer = json.loads(resp.body)
                    token = str(answer["lock-token"])
                    rid = int(answer["resource"]["id"])
                except (ValueError, KeyError, TypeError) as exc:
                    stats.error(
                        f"lock {lock_target} -> 200 unreadable ({exc}): {resp.body[:200]!r}"
                    )
                    continue
                latencies.append(resp.received - resp.sent)
                if plan.expect_id is not None and rid != plan.expect_id:
                    stats.error(f"lock {lock_target} granted resource {rid}")
                await asyncio.sleep(cfg.hold_s)
                unlock_target = unlock_fmt.format(rid, quote(token, safe=""))
                try:
                    uresp = await conn.request("POST", unlock_target, b"", headers)
                except NETWORK_ERRORS as exc:
                    # The request may have left: the hold ended no later than now.
                    holds.append(Hold(rid, resp.received, time.monotonic(), plan.index))
                    stats.leaked += 1
                    stats.error(f"unlock {rid}: {type(exc).__name__}: {exc}")
                    continue
                holds.append(Hold(rid, resp.received, uresp.sent, plan.index))
                if uresp.status != 200:
                    stats.leaked += 1
                    stats.error(f"unlock {rid} -> {uresp.status}: {uresp.body[:200]!r}")
                    continue
                cycles += 1
    except TimeoutError:
        stats.error(
            f"client {plan.index}: a request was still pending {cfg.grace_s} s after the end"
        )
    finally:
        stats.cycles += cycles
        stats.finished = max(stats.finished, time.monotonic())


#: A client's loop: (config, plan, its connection, the common start, stats to fill).
ClientLoop = Callable[[RunConfig, ClientPlan, Connection, float, ClientStats], Awaitable[None]]


async def run_clients(
    cfg: RunConfig,
    plans: Sequence[ClientPlan],
    ready: Any,
    go: mps.Event,
    start_at: Any,
    client: ClientLoop = run_client,
) -> ClientStats:
    """Connect every client, signal ready, wait for the common start, run them."""
    conns = [Connection(cfg.host, cfg.client_port(p.index)) for p in plans]
    stats = ClientStats()
    try:
        for conn in conns:
            try:
                await conn.connect()
            except OSError as exc:
                stats.error(f"connect {conn.host}:{conn.port}: {exc}")
        ready.put(os.getpid())
        if not go.wait(timeout=60):  # the parent gave up: nothing to measure
            return stats
        start = float(start_at.value)
        await asyncio.gather(
            *(client(cfg, p, c, start, stats) for p, c in zip(plans, conns, strict=True))
        )
    finally:
        for conn in conns:
            conn.close()
    return stats


def worker_main(
    cfg: RunConfig,
    plans: Sequence[ClientPlan],
    ready: Any,
    go: mps.Event,
    start_at: Any,
    out: Any,
    client: ClientLoop = run_client,
) -> None:
    """Entry point of a generator process: runs its clients, sends back what they saw."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the parent's handler is for the parent
    try:
        stats = asyncio.run(run_clients(cfg, plans, ready, go, start_at, client))
    except KeyboardInterrupt:
        return
    out.put(stats)


# =========================================================================== checker


def find_overlaps(holds: Iterable[Hold]) -> tuple[int, list[tuple[Hold, Hold]]]:
    """Count holds that overlap an earlier hold of the same resource; sample a few pairs.

    Holds are half-open, so one that starts exactly when another ends does not overlap it.
    Per resource, sweep in start order keeping the hold that ends last: a new hold overlaps
    some earlier one if and only if it starts before that one ends.
    """
    per_resource: dict[int, list[Hold]] = defaultdict(list)
    for h in holds:
        per_resource[h.resource].append(h)
    count = 0
    samples: list[tuple[Hold, Hold]] = []
    for rid in sorted(per_resource):
        ordered = sorted(per_resource[rid], key=lambda h: (h.start, h.end))
        last = ordered[0]
        for h in ordered[1:]:
            if h.start < last.end:
                count += 1
                if len(samples) < MAX_SAMPLES:
                    samples.append((last, h))
            if h.end > last.end:
                last = h
    return count, samples


def describe_overlap(pair: tuple[Hold, Hold], origin: float) -> str:
    """One overlapping pair, times in ms from `origin`."""
    a, b = pair
    return (
        f"resource {a.resource}: client {a.client} held [{(a.start - origin) * 1e3:.3f},"
        f" {(a.end - origin) * 1e3:.3f}) ms, client {b.client} held"
        f" [{(b.start - origin) * 1e3:.3f}, {(b.end - origin) * 1e3:.3f}) ms"
    )


def percentile(values: Sequence[float], pct: float) -> float:
    """Nearest-rank percentile of values (NaN when empty)."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


# =========================================================================== one load run


@dataclass
class RunResult:
    """The report of one load run."""

    workload: str
    server: str
    url: str
    clients: int
    procs: int
    duration_s: float
    hold_ms: float
    wall_s: float
    cycles: int
    cycles_per_s: float
    locks: int
    lock_p50_ms: float
    lock_p99_ms: float
    hold_mean_ms: float  # observed: the asked hold plus timer lateness
    busy: int
    errors: int
    leaked: int
    overlaps: int
    error_samples: list[str]
    overlap_samples: list[str]
    #: Open /api/v2/events/stream connections held during the run (--streams).
    streams: int = 0
    #: The server's resident memory (VmRSS, KiB) once ready, and with the streams open.
    rss_idle_kib: int = 0
    rss_kib: int = 0

    @property
    def ok(self) -> bool:
        """No double grant and no error."""
        return self.overlaps == 0 and self.errors == 0

    def line(self) -> str:
        """The one-line text report."""
        return (
            f"{self.workload:<15} {self.server:<10} {self.cycles_per_s:9.1f} cycles/s"
            f"  lock p50 {self.lock_p50_ms:6.2f} ms  p99 {self.lock_p99_ms:6.2f} ms"
            f"  busy {self.busy}  errors {self.errors}  overlaps: {self.overlaps}"
            f"  streams {self.streams}  rss {self.rss_idle_kib / 1024:.1f}"
            f" -> {self.rss_kib / 1024:.1f} MiB"
        )


def run_load(cfg: RunConfig, server: str = "server") -> RunResult:
    """Run one workload with cfg.clients clients spread over cfg.procs processes."""
    return run_load_with_stats(cfg, server)[0]


def run_load_with_stats(
    cfg: RunConfig,
    server: str = "server",
    *,
    client: ClientLoop = run_client,
    plans: Sequence[ClientPlan] | None = None,
) -> tuple[RunResult, ClientStats]:
    """`run_load`, with the client loop and plans of the caller's choice.

    `client` and `plans` default to the v1 lock/unlock loop and `plan_clients(cfg)`; other
    benchmarks (bench/leases.py) pass their own. Returns the report and the merged raw
    observations (holds with their fences, per-operation latencies).
    """
    if plans is None:
        plans = plan_clients(cfg)
    procs = max(1, min(cfg.procs, len(plans)))
    # fork: a worker needs nothing but its arguments, and fork starts in milliseconds.
    ctx = mp.get_context("fork")
    ready = ctx.Queue()
    out = ctx.Queue()
    go = ctx.Event()
    start_at = ctx.Value("d", 0.0)
    workers = [
        ctx.Process(
            target=worker_main,
            args=(cfg, plans[k::procs], ready, go, start_at, out, client),
            name=f"loadgen-{k}",
            daemon=True,
        )
        for k in range(procs)
    ]
    stats = ClientStats()
    try:
        for w in workers:
            w.start()
        for _ in workers:
            ready.get(timeout=60)
        # A common start a little ahead, so every process begins on the same clock reading.
        start = time.monotonic() + 0.05
        start_at.value = start
        go.set()
        limit = time.monotonic() + cfg.duration + cfg.grace_s + 30
        for _ in workers:
            stats.merge(out.get(timeout=max(1.0, limit - time.monotonic())))
        for w in workers:
            w.join(timeout=10)
    finally:
        for w in workers:
            if w.is_alive():
                w.terminate()
                w.join(timeout=5)
    wall = max(stats.finished - start, 1e-9)
    overlaps, pairs = find_overlaps(stats.holds)
    lat = stats.latencies
    result = RunResult(
        workload=cfg.workload,
        server=server,
        url=f"http://{cfg.host}:{cfg.port}{cfg.prefix}",
        clients=cfg.clients,
        procs=procs,
        duration_s=cfg.duration,
        hold_ms=cfg.hold_s * 1e3,
        wall_s=round(wall, 4),
        cycles=stats.cycles,
        cycles_per_s=round(stats.cycles / wall, 1),
        locks=len(lat),
        lock_p50_ms=round(percentile(lat, 50) * 1e3, 3),
        lock_p99_ms=round(percentile(lat, 99) * 1e3, 3),
        hold_mean_ms=round(
            statistics.fmean(h.end - h.start for h in stats.holds) * 1e3 if stats.holds else 0.0, 3
        ),
        busy=stats.busy,
        errors=stats.errors,
        leaked=stats.leaked,
        overlaps=overlaps,
        error_samples=stats.error_samples,
        overlap_samples=[describe_overlap(p, start) for p in pairs],
    )
    return result, stats


def print_problems(result: RunResult) -> None:
    """Print the sampled error bodies and overlapping pairs of a run, if any."""
    for text in result.error_samples:
        print(f"    error: {text}")
    for text in result.overlap_samples:
        print(f"    OVERLAP {text}")


# =========================================================================== servers


def generate_descriptor(path: Path, count: int, *, comma_tags: bool = False) -> None:
    """Write a seed-format descriptor of `count` resources, board-000001 ... .

    Tags are a YAML list: [family-<i%50>, site-<i%7>, any] (with `comma_tags`, upstream 1.x's
    one string "family-<i%50>,site-<i%7>,any"); 2 properties each.
    """
    with path.open("w", encoding="utf-8") as f:
        f.write(f"# {count} resources generated by bench/loadgen.py\n")
        for i in range(1, count + 1):
            tags = (
                f'"family-{i % 50},site-{i % 7},{SHARED_TAG}"'
                if comma_tags
                else f"[family-{i % 50}, site-{i % 7}, {SHARED_TAG}]"
            )
            f.write(
                f"board-{i:06d}:\n"
                f'    description: "Bench board {i} in rack {i // 40}"\n'
                f'    endpoint: "ssh://bench{i % 7}.lab/dev/ttyACM{i % 4}"\n'
                f"    tags: {tags}\n"
                f"    properties:\n"
                f'      serial: "SN{i:08d}"\n'
                f'      slot: "{i % 16}"\n'
            )


def matching_ids(count: int, family: int, site: int) -> list[int]:
    """Ids in a generated descriptor that carry both family-<family> and site-<site>."""
    return [i for i in range(1, count + 1) if i % 50 == family and i % 7 == site]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        port: int = s.getsockname()[1]
        return port


def resolve_reference_dir(given: str | None) -> Path:
    """The directory holding reference_server.py: `shared/` or `shared/bench` both work."""
    base = Path(given) if given else REPO_ROOT.parent / "shared"
    for cand in (base, base / "bench"):
        if (cand / "reference_server.py").is_file():
            return cand.resolve()
    raise SystemExit(f"loadgen: no reference_server.py in {base} or {base / 'bench'}")


def default_venv() -> Path:
    """The project's venv (for {venv}/bin/rentabot), else the running interpreter's."""
    venv = REPO_ROOT / ".venv"
    return venv if venv.is_dir() else Path(sys.prefix)


@dataclass(frozen=True)
class ServerSpec:
    """How to start one side of a comparison."""

    name: str
    cmd: str  # template; see CMD_ALIASES


def server_argv(cmd: str, values: dict[str, str]) -> list[str]:
    """Split a command template, then fill in its placeholders word by word."""
    template = CMD_ALIASES.get(cmd, cmd)
    try:
        return [word.format(**values) for word in shlex.split(template)]
    except KeyError as exc:
        raise SystemExit(f"loadgen: unknown placeholder {exc} in command {template!r}") from None


class Server:
    """A server process under our control: started in its own session, always stopped."""

    def __init__(
        self,
        spec: ServerSpec,
        descriptor: Path,
        reference_dir: Path,
        workdir: Path,
        env: Mapping[str, str] | None = None,
    ):
        self.spec = spec
        self.port = free_port()
        # A fresh directory per start: rentabot's database never carries locks between runs.
        self.tmpdir = Path(tempfile.mkdtemp(prefix=f"{spec.name}-", dir=workdir))
        self.log_path = self.tmpdir / "server.log"
        values = {
            "python": sys.executable,
            "venv": str(default_venv()),
            "host": HOST,
            "port": str(self.port),
            "descriptor": str(descriptor),
            "tmpdir": str(self.tmpdir),
            "reference_dir": str(reference_dir),
            "bench_dir": str(BENCH_DIR),
            "upstream10_venv": os.environ.get("UPSTREAM10_VENV", "/tmp/upstream10/venv"),
        }
        self.argv = server_argv(spec.cmd, values)
        self.env = dict(os.environ)
        self.env.update(
            RENTABOT_RESOURCE_DESCRIPTOR=str(descriptor),
            BENCH_REFERENCE_DIR=str(reference_dir),
            PYTHONUNBUFFERED="1",
        )
        self.env.update(env or {})  # settings of the caller's (RENTABOT_*), last: they win
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0

    def start(self) -> None:
        """Start the process; `started` is the clock reading just before."""
        with self.log_path.open("wb") as log:
            self.started = time.monotonic()
            try:
                self.proc = subprocess.Popen(
                    self.argv,
                    env=self.env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own group: workers it forks stop with it
                )
            except OSError as exc:
                raise SystemExit(f"loadgen: cannot start {self.argv[0]}: {exc}") from None

    def wait_ready(self, target: str, timeout: float, headers: bytes = b"") -> float:
        """Poll GET target (with `headers`) until it answers 200; seconds since start."""
        limit = time.monotonic() + timeout
        while time.monotonic() < limit:
            if self.proc is not None and self.proc.poll() is not None:
                raise SystemExit(
                    f"loadgen: {self.spec.name} exited with {self.proc.returncode}"
                    f" before answering\n{self.log_tail()}"
                )
            if http_get_status(HOST, self.port, target, headers=headers) == 200:
                return time.monotonic() - self.started
            time.sleep(0.01)
        raise SystemExit(
            f"loadgen: {self.spec.name} not ready after {timeout} s\n{self.log_tail()}"
        )

    def rss_kib(self) -> int:
        """Resident memory of the server and all its descendants, KiB."""
        if self.proc is None:
            return 0
        return sum(vm_rss_kib(pid) for pid in process_tree(self.proc.pid))

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's output, for error messages."""
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join("    | " + t for t in text[-lines:])

    def stop(self) -> None:
        """SIGTERM the server's process group, SIGKILL it if it lingers."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


@contextlib.contextmanager
def running_server(
    spec: ServerSpec,
    descriptor: Path,
    reference_dir: Path,
    workdir: Path,
    ready_target: str,
    ready_timeout: float,
    env: Mapping[str, str] | None = None,
) -> Iterator[tuple[Server, float]]:
    """Start a server, wait until it is ready, yield it and its time to ready; then stop it.

    `env` adds to (or overrides) the environment the server inherits.
    """
    server = Server(spec, descriptor, reference_dir, workdir, env)
    try:
        server.start()
        ready_s = server.wait_ready(ready_target, ready_timeout)
        yield server, ready_s
    finally:
        server.stop()


def create_key(server: Server, role: str, name: str = KEY_NAME) -> str:
    """Create an API key on the database of a rentabot server (before it starts) and return
    it: `rentabot keys create NAME --role ROLE --database URL`, with the program and the
    `--database` of the server's own command line (so `{venv}`, `{tmpdir}` and wrappers such
    as `env VAR=… rentabot serve` carry over). `keys create` migrates the database first."""
    argv = server.argv
    if "serve" not in argv:
        raise SystemExit(f"loadgen: an API key needs a `rentabot serve` command, not {argv}")
    serve = argv.index("serve")
    database = None
    for i in range(serve + 1, len(argv)):
        if argv[i] == "--database" and i + 1 < len(argv):
            database = argv[i + 1]
        elif argv[i].startswith("--database="):
            database = argv[i].partition("=")[2]
    if database is None:
        raise SystemExit(f"loadgen: an API key needs `--database URL` in the command {argv}")
    command = [*argv[:serve], "keys", "create", name, "--role", role, "--database", database]
    try:
        done = subprocess.run(
            command,
            env=server.env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SystemExit(f"loadgen: {shlex.join(command)}: {exc}") from None
    words = done.stdout.split()
    if done.returncode != 0 or not words:
        raise SystemExit(
            f"loadgen: {shlex.join(command)} exited with {done.returncode}:\n{done.stderr[-2000:]}"
        )
    return words[-1]  # the key is alone on the last line


async def _auth_probes(
    port: int, prefix: str, headers: bytes, wrong: bytes
) -> tuple[Response, Response, Response, Response]:
    conn = Connection(HOST, port)
    lock = f"{prefix}/resources/1/lock"
    try:
        async with asyncio.timeout(30):
            mine = await conn.request("GET", WHOAMI, b"", headers)
            nobody = await conn.request("GET", WHOAMI)
            bare = await conn.request("POST", lock)
            forged = await conn.request("POST", lock, b"", wrong)
    finally:
        conn.close()
    return mine, nobody, bare, forged


def check_key_auth(
    port: int, prefix: str, headers: bytes, name: str, role: str
) -> tuple[str, list[str]]:
    """After a keyed run (the server started with RENTABOT_ANONYMOUS_ROLE=none): whoami with
    the key names it, whoami without one is nobody, and a lock without a key or with a wrong
    one is refused with 401. Returns a one-line report and the problems found."""
    try:
        mine, nobody, bare, forged = asyncio.run(
            _auth_probes(port, prefix, headers, key_header(decoy_key()))
        )
    except (*NETWORK_ERRORS, TimeoutError) as exc:
        return "auth check failed", [f"auth check: {type(exc).__name__}: {exc}"]
    problems = []
    try:
        me = json.loads(mine.body) if mine.status == 200 else {}
        anon = json.loads(nobody.body) if nobody.status == 200 else {}
    except ValueError:
        me, anon = {}, {}
    if (me.get("principal"), me.get("role"), me.get("via")) != (name, role, "key"):
        problems.append(f"whoami with the key -> {mine.status}: {mine.body[:200]!r}")
    if (anon.get("principal"), anon.get("role")) != (None, "none"):
        problems.append(f"whoami without a key -> {nobody.status}: {nobody.body[:200]!r}")
    for what, resp in (("without a key", bare), ("with a wrong key", forged)):
        if resp.status != 401:
            problems.append(f"lock {what} -> {resp.status} (want 401): {resp.body[:200]!r}")
    report = (
        f"auth check: whoami with the key: {me.get('principal')!r} role {me.get('role')}"
        f" via {me.get('via')}; without: role {anon.get('role')}; lock without a key"
        f" -> {bare.status}, with a wrong key -> {forged.status}"
        f"  {'ok' if not problems else 'FAILED'}"
    )
    return report, problems


def process_tree(root: int) -> list[int]:
    """root and every descendant, from the parent links in /proc."""
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the fields follow the last ')'.
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children[ppid].append(int(entry.name))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, ()))
    return found


def vm_rss_kib(pid: int) -> int:
    """VmRSS of one process in KiB (0 when it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


# =========================================================================== results


def save_results(mode: str, payload: dict[str, Any], results_dir: Path) -> Path:
    """Write one JSON document per invocation under bench/results/."""
    results_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    path = results_dir / f"{mode}-{stamp}-{os.getpid()}.json"
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return path


def environment() -> dict[str, Any]:
    """What the figures depend on, for the JSON record."""
    return {
        "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "host": socket.gethostname(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "argv": sys.argv,
    }


def ratio(a: float, b: float) -> float:
    """a / b, NaN when b is 0."""
    return a / b if b else math.nan


# =========================================================================== modes


def cmd_run(args: argparse.Namespace) -> int:
    """`run`: one or more workloads against an already running server."""
    url = urlsplit(args.url)
    if url.hostname is None or url.port is None:
        raise SystemExit("loadgen: --url needs a host and a port, e.g. http://127.0.0.1:8001")
    headers = b""
    if args.api_key_env:
        secret = os.environ.get(args.api_key_env, "").strip()
        if not secret:
            raise SystemExit(f"loadgen: --api-key-env: ${args.api_key_env} is empty or unset")
        headers = key_header(secret)
        print(whoami_line(url.hostname, url.port, headers), flush=True)
    results = []
    for workload in args.workloads:
        cfg = replace(make_config(args, workload, url.hostname, url.port), headers=headers)
        preflight(cfg)
        result = run_load(cfg, server=args.name)
        print(result.line())
        print_problems(result)
        results.append(result)
    path = save_results(
        "run",
        {"mode": "run", "env": environment(), "runs": [asdict(r) for r in results]},
        Path(args.results_dir),
    )
    print(f"results: {path}")
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))
    return 0 if all(r.ok for r in results) else 1


def whoami_line(host: str, port: int, headers: bytes) -> str:
    """Who the server takes the key of `headers` for; refuses to go on unless it is a key.
    Warns when a caller without a key may lock (a key missing from a request would then go
    unnoticed)."""
    me = http_get_json(host, port, WHOAMI, headers=headers)
    anon = http_get_json(host, port, WHOAMI)
    if me.get("via") != "key":
        raise SystemExit(f"loadgen: the server does not take the key for a key: {me}")
    if anon.get("role") in ("lock", "admin"):
        print(
            f"loadgen: warning: callers without a key have the role {anon.get('role')} here,"
            " so a request that lost its key would still succeed"
            " (RENTABOT_ANONYMOUS_ROLE=none makes it fail)",
            file=sys.stderr,
        )
    return (
        f"api key: whoami says {me.get('principal')!r}, role {me.get('role')}, via key;"
        f" callers without a key: role {anon.get('role')}"
    )


def preflight(cfg: RunConfig) -> None:
    """Refuse to run a workload the server's resources cannot carry."""
    listing = http_get_json(cfg.host, cfg.port, cfg.prefix + "/resources", headers=cfg.headers)[
        "resources"
    ]
    if cfg.workload == "tag":
        if not any(cfg.tag in (r.get("tags") or "").split() for r in listing):
            raise SystemExit(f"loadgen: no resource carries the tag {cfg.tag!r} (see --tag)")
        return
    known = {int(r["id"]) for r in listing}
    missing = sorted(required_ids(cfg) - known)
    if missing:
        raise SystemExit(f"loadgen: workload {cfg.workload} needs resource ids {missing[:10]}")
    held = sorted(int(r["id"]) for r in listing if r["id"] in required_ids(cfg) and r["lock-token"])
    if held:
        print(f"loadgen: warning: resources {held[:10]} are locked already", file=sys.stderr)


def make_config(args: argparse.Namespace, workload: str, host: str, port: int) -> RunConfig:
    """The RunConfig of one workload from the command line."""
    return RunConfig(
        workload=workload,
        host=host,
        port=port,
        prefix=args.prefix,
        clients=args.clients,
        procs=args.procs,
        duration=args.duration,
        max_cycles=args.max_cycles,
        hold_s=args.hold_ms / 1e3,
        backoff_s=args.backoff_ms / 1e3,
        contended_resources=args.contended_resources,
        tag=args.tag,
    )


@dataclass(frozen=True)
class Side:
    """One server of a comparison, and what its clients send it."""

    spec: ServerSpec
    #: Create a key of this role on the server's database before it starts, send it with
    #: every request, start the server with RENTABOT_ANONYMOUS_ROLE=none (a request without
    #: the key fails), and check after the run that the key is what let the requests in.
    key_role: str | None = None
    #: Extra header lines sent with every request to a side without a key of its own.
    headers: bytes = field(default=b"", repr=False)


def run_side(
    side: Side,
    args: argparse.Namespace,
    workload: str,
    descriptor: Path,
    reference_dir: Path,
    workdir: Path,
) -> tuple[RunResult, list[str]]:
    """Start one side's server in a fresh directory, run the workload, stop the server.
    Returns the result (a failed auth check counts as errors) and notes to print."""
    env = {"RENTABOT_ANONYMOUS_ROLE": "none"} if side.key_role is not None else {}
    if args.streams:
        env["RENTABOT_MAX_STREAM_SUBSCRIBERS"] = str(args.streams)
    server = Server(side.spec, descriptor, reference_dir, workdir, env)
    notes: list[str] = []
    try:
        headers = side.headers
        if side.key_role is not None:
            headers = key_header(create_key(server, side.key_role))
        server.start()
        server.wait_ready(args.prefix + "/resources", args.ready_timeout, headers)
        cfg = replace(make_config(args, workload, HOST, server.port), headers=headers)
        rss_idle = server.rss_kib()
        with OpenStreams(server.port, args.streams, headers) as streams:
            result = run_load(cfg, server=side.spec.name)
            result.streams = streams.count
            result.rss_idle_kib, result.rss_kib = rss_idle, server.rss_kib()
        if side.key_role is not None:
            report, problems = check_key_auth(
                server.port, args.prefix, headers, KEY_NAME, side.key_role
            )
            notes.append(report)
            result.errors += len(problems)
            result.error_samples.extend(problems)
    finally:
        server.stop()
    return result, notes


class OpenStreams:
    """`count` clients following /api/v2/events/stream, each reading what it is sent, in a
    thread of their own (an event loop holding the sockets) while the load runs."""

    def __init__(self, port: int, count: int, headers: bytes) -> None:
        self.port, self.count, self.headers = port, count, headers
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._tasks: list[asyncio.Future[None]] = []

    async def _follow(self, opened: asyncio.Future[None]) -> None:
        reader, writer = await asyncio.open_connection(HOST, self.port)
        writer.write(
            b"GET /api/v2/events/stream HTTP/1.1\r\nHost: %s\r\n%s\r\n"
            % (HOST.encode(), self.headers)
        )
        status = await reader.readline()
        if b" 200 " not in status:
            opened.set_exception(RuntimeError(f"stream refused: {status!r}"))
            return
        while (await reader.readline()).strip():
            pass  # the headers
        await reader.readline()  # the retry line: subscribed
        opened.set_result(None)
        try:
            while await reader.read(65536):
                pass
        finally:
            writer.close()

    async def _open_all(self) -> None:
        opened = [self._loop.create_future() for _ in range(self.count)]
        self._tasks = [asyncio.ensure_future(self._follow(f)) for f in opened]
        await asyncio.wait_for(asyncio.gather(*opened), 60)

    def __enter__(self) -> OpenStreams:
        if self.count:
            self._thread.start()
            asyncio.run_coroutine_threadsafe(self._open_all(), self._loop).result(70)
        return self

    def __exit__(self, *_exc: object) -> None:
        if self.count:
            asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)

    async def _close_all(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def cmd_compare(args: argparse.Namespace) -> int:
    """`compare`: reference then target, per workload, for R rounds; ratios and medians.

    With --api-key-role, a third server: the target again, with a key on every request."""
    reference_dir = resolve_reference_dir(args.reference_dir)
    target_cmd = "broken" if args.inject_double_grant else args.target_cmd
    target_name = "broken" if args.inject_double_grant else args.target_name
    if target_name == "reference":
        raise SystemExit("loadgen: --target-name must differ from 'reference'")
    if args.api_key_role and args.inject_double_grant:
        raise SystemExit("loadgen: --api-key-role needs a rentabot target, not the broken server")
    keyed = f"{target_name}+key" if args.api_key_role else None
    reference = ServerSpec("reference", args.reference_cmd)
    sides = [Side(reference), Side(ServerSpec(target_name, target_cmd))]
    if keyed is not None:
        # The reference is sent the same header (a key of the same shape, which it ignores),
        # so that it parses the same bytes as the keyed target; the plain target gets none.
        sides[0] = Side(reference, headers=key_header(decoy_key()))
        sides.append(Side(ServerSpec(keyed, target_cmd), key_role=args.api_key_role))
    needed = max(args.clients, args.contended_resources)
    if args.resources < needed:
        raise SystemExit(f"loadgen: --resources must be at least {needed}")
    runs: dict[str, list[dict[str, RunResult]]] = {w: [] for w in args.workloads}
    ok = True
    with tempfile.TemporaryDirectory(prefix="loadgen-") as tmp:
        workdir = Path(tmp)
        descriptor = workdir / f"resources-{args.resources}.yml"
        generate_descriptor(descriptor, args.resources, comma_tags=args.comma_tags)
        for rnd in range(1, args.rounds + 1):
            # Three servers: reversed every other round, so that over two rounds each has the
            # same mean position and a drift of the machine favours none.
            order = sides if keyed is None or rnd % 2 else sides[::-1]
            for workload in args.workloads:
                row: dict[str, RunResult] = {}
                for side in order:
                    result, notes = run_side(
                        side, args, workload, descriptor, reference_dir, workdir
                    )
                    row[side.spec.name] = result
                    ok = ok and result.ok
                    print(f"round {rnd}  {result.line()}", flush=True)
                    for note in notes:
                        print(f"    {note}", flush=True)
                    print_problems(result)
                runs[workload].append(row)
                ref, tgt = row["reference"], row[target_name]
                print(
                    f"round {rnd}  {workload:<15} {target_name}/reference cycles/s ="
                    f" {ratio(tgt.cycles_per_s, ref.cycles_per_s):.3f}",
                    flush=True,
                )
                if keyed is not None:
                    key = row[keyed]
                    print(
                        f"round {rnd}  {workload:<15} {keyed}/reference cycles/s ="
                        f" {ratio(key.cycles_per_s, ref.cycles_per_s):.3f}"
                        f"  {keyed}/{target_name} = {ratio(key.cycles_per_s, tgt.cycles_per_s):.3f}"
                        f" ({extra_us_per_request(key.cycles_per_s, tgt.cycles_per_s):+.1f} us"
                        " per request)",
                        flush=True,
                    )
    summary = summarize(runs, target_name, keyed)
    print()
    print_summary(summary, target_name, keyed)
    payload: dict[str, Any] = {
        "mode": "compare",
        "env": environment(),
        "target": {"name": target_name, "cmd": CMD_ALIASES.get(target_cmd, target_cmd)},
        "reference": {"cmd": CMD_ALIASES.get(args.reference_cmd, args.reference_cmd)},
        "resources": args.resources,
        "summary": summary,
        "rounds": {w: [{k: asdict(v) for k, v in p.items()} for p in ps] for w, ps in runs.items()},
    }
    if keyed is not None:
        payload["keyed"] = {
            "name": keyed,
            "key_name": KEY_NAME,
            "role": args.api_key_role,
            "env": {"RENTABOT_ANONYMOUS_ROLE": "none"},
            "reference_header": "X-API-Key with a random key of the same shape (ignored)",
        }
    path = save_results("compare", payload, Path(args.results_dir))
    print(f"results: {path}")
    if args.json:
        print(json.dumps(payload["summary"], indent=2))
    if not ok:
        print("FAILED: overlaps or errors (see above)")
    return 0 if ok else 1


#: What the issue asks of the keyed target: uncontended, at least this of the reference.
KEYED_TARGET = 0.50


def extra_us_per_request(keyed: float, plain: float) -> float:
    """What a key adds per request, in microseconds, from two cycles/s figures: the
    difference of the times per cycle over its 2 requests. Meaningful when the server is the
    bottleneck (16 clients: it is); NaN when either figure is 0."""
    if not keyed or not plain:
        return math.nan
    return (1 / keyed - 1 / plain) / 2 * 1e6


def summarize(
    runs: dict[str, list[dict[str, RunResult]]], target: str, keyed: str | None = None
) -> dict[str, Any]:
    """Medians over the rounds, per workload (with `keyed`, of the keyed target's too)."""
    out: dict[str, Any] = {}
    for workload, pairs in runs.items():
        if not pairs:
            continue
        ratios = [ratio(p[target].cycles_per_s, p["reference"].cycles_per_s) for p in pairs]
        entry: dict[str, Any] = {"ratio_cycles_per_s_median": round(statistics.median(ratios), 4)}
        entry["ratios"] = [round(r, 4) for r in ratios]
        for side in ("reference", target, *((keyed,) if keyed else ())):
            rs = [p[side] for p in pairs]
            entry[side] = {
                "cycles_per_s_median": round(statistics.median(r.cycles_per_s for r in rs), 1),
                "lock_p50_ms_median": round(statistics.median(r.lock_p50_ms for r in rs), 3),
                "lock_p99_ms_median": round(statistics.median(r.lock_p99_ms for r in rs), 3),
                "busy": sum(r.busy for r in rs),
                "errors": sum(r.errors for r in rs),
                "overlaps": sum(r.overlaps for r in rs),
            }
        if keyed:
            to_ref = [ratio(p[keyed].cycles_per_s, p["reference"].cycles_per_s) for p in pairs]
            to_plain = [ratio(p[keyed].cycles_per_s, p[target].cycles_per_s) for p in pairs]
            extra = [
                extra_us_per_request(p[keyed].cycles_per_s, p[target].cycles_per_s) for p in pairs
            ]
            entry["keyed"] = {
                "name": keyed,
                "ratio_cycles_per_s_median": round(statistics.median(to_ref), 4),
                "ratios": [round(r, 4) for r in to_ref],
                "over_plain_median": round(statistics.median(to_plain), 4),
                "over_plain": [round(r, 4) for r in to_plain],
                "extra_us_per_request_median": round(statistics.median(extra), 1),
            }
        out[workload] = entry
    return out


def print_summary(summary: dict[str, Any], target: str, keyed: str | None = None) -> None:
    """The medians table of a comparison."""
    if keyed is not None:
        print_keyed_summary(summary, target, keyed)
        return
    print(
        f"{'workload':<15} {'ratio':>6}  {'reference c/s':>13} {'p50':>6} {'p99':>6}"
        f"  {target + ' c/s':>13} {'p50':>6} {'p99':>6}  overlaps errors"
    )
    for workload, e in summary.items():
        ref, tgt = e["reference"], e[target]
        print(
            f"{workload:<15} {e['ratio_cycles_per_s_median']:6.3f}"
            f"  {ref['cycles_per_s_median']:13.1f} {ref['lock_p50_ms_median']:6.2f}"
            f" {ref['lock_p99_ms_median']:6.2f}"
            f"  {tgt['cycles_per_s_median']:13.1f} {tgt['lock_p50_ms_median']:6.2f}"
            f" {tgt['lock_p99_ms_median']:6.2f}"
            f"  {ref['overlaps'] + tgt['overlaps']:8d} {ref['errors'] + tgt['errors']:6d}"
        )
    print("(ratio: median over rounds of target/reference cycles/s; p50/p99: lock latency, ms)")


def print_keyed_summary(summary: dict[str, Any], target: str, keyed: str) -> None:
    """The medians table of a three-server comparison: one line per server and workload,
    then what the key costs."""
    width = max(len(keyed), len("reference"))
    print(
        f"{'workload':<15} {'server':<{width}} {'c/s':>9} {'p50':>6} {'p99':>6}"
        f"  {'x reference':>11}  overlaps errors"
    )
    for workload, e in summary.items():
        k = e["keyed"]
        ratios = {"reference": 1.0, target: e["ratio_cycles_per_s_median"]}
        ratios[keyed] = k["ratio_cycles_per_s_median"]
        for side in ("reference", target, keyed):
            r = e[side]
            print(
                f"{workload:<15} {side:<{width}} {r['cycles_per_s_median']:9.1f}"
                f" {r['lock_p50_ms_median']:6.2f} {r['lock_p99_ms_median']:6.2f}"
                f"  {ratios[side]:11.3f}  {r['overlaps']:8d} {r['errors']:6d}"
            )
        verdict = ""
        if workload == "uncontended-id":
            met = k["ratio_cycles_per_s_median"] >= KEYED_TARGET
            verdict = (
                f"; {keyed}/reference target >= {KEYED_TARGET:.2f}: {'met' if met else 'NOT met'}"
            )
        print(
            f"{workload:<15} {keyed}/{target} = {k['over_plain_median']:.3f}"
            f" ({k['extra_us_per_request_median']:+.1f} us per request){verdict}"
        )
    print(
        "(x reference: median over rounds of the per-round ratio of cycles/s; p50/p99: lock"
        " latency, ms; us per request: the key's cost from the two rentabot figures)"
    )


@dataclass
class ScaleResult:
    """The report of one server in scale mode."""

    server: str
    resources: int
    ready_s: float
    rss_ready_mib: float
    rss_after_mib: float
    held: int
    cycles: int
    lock_p50_ms: float
    lock_p99_ms: float
    unlock_p50_ms: float
    errors: int
    overlaps: int
    error_samples: list[str]

    def line(self) -> str:
        """The one-line text report."""
        return (
            f"{self.server:<10} {self.resources} resources  ready {self.ready_s:7.2f} s"
            f"  lock-by-tag p50 {self.lock_p50_ms:7.2f} ms  p99 {self.lock_p99_ms:7.2f} ms"
            f" ({self.cycles} cycles, {self.held} matches held)"
            f"  rss {self.rss_after_mib:7.1f} MiB  errors {self.errors}  overlaps: {self.overlaps}"
        )


async def scale_cycles(
    port: int, prefix: str, tags: Sequence[str], held: int, cycles: int, timeout: float
) -> tuple[list[float], list[float], int, int, list[str]]:
    """Hold `held` matches, then lock-by-tag + unlock `cycles` times from one client.

    Returns lock latencies, unlock latencies, errors, overlaps (a grant of a resource we
    hold), error samples.
    """
    query = "&".join(f"tag={quote(t, safe='')}" for t in tags)
    lock_target = f"{prefix}/resources/lock?{query}"
    conn = Connection(HOST, port)
    held_tokens: dict[int, str] = {}
    stats = ClientStats()
    overlaps = 0
    unlock_lat: list[float] = []

    async def lock() -> tuple[int, str, Response] | None:
        async with asyncio.timeout(timeout):
            resp = await conn.request("POST", lock_target)
        if resp.status != 200:
            stats.error(f"lock {lock_target} -> {resp.status}: {resp.body[:200]!r}")
            return None
        answer = json.loads(resp.body)
        res = answer["resource"]
        if not set(tags) <= set((res.get("tags") or "").split()):
            stats.error(f"lock {lock_target} granted {res['id']} tagged {res.get('tags')!r}")
        return int(res["id"]), str(answer["lock-token"]), resp

    async def unlock(rid: int, token: str) -> Response:
        async with asyncio.timeout(timeout):
            resp = await conn.request(
                "POST", f"{prefix}/resources/{rid}/unlock?lock-token={quote(token, safe='')}"
            )
        if resp.status != 200:
            stats.error(f"unlock {rid} -> {resp.status}: {resp.body[:200]!r}")
        return resp

    try:
        for _ in range(held):
            got = await lock()
            if got is not None:
                held_tokens[got[0]] = got[1]
        for _ in range(cycles):
            got = await lock()
            if got is None:
                continue
            rid, token, resp = got
            stats.latencies.append(resp.received - resp.sent)
            if rid in held_tokens:
                overlaps += 1
            uresp = await unlock(rid, token)
            unlock_lat.append(uresp.received - uresp.sent)
        for rid, token in held_tokens.items():
            await unlock(rid, token)
    except (*NETWORK_ERRORS, TimeoutError, ValueError, KeyError, TypeError) as exc:
        stats.error(f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()
    return stats.latencies, unlock_lat, stats.errors, overlaps, stats.error_samples


def cmd_scale(args: argparse.Namespace) -> int:
    """`scale`: a big descriptor; ready time, lock-by-tag latency and memory per server."""
    reference_dir = resolve_reference_dir(args.reference_dir)
    sides = []
    if not args.skip_reference:
        sides.append(ServerSpec("reference", args.reference_cmd))
    if not args.skip_target:
        sides.append(ServerSpec(args.target_name, args.target_cmd))
    family, site = 7, 3
    tags = [f"family-{family}", f"site-{site}"]
    matches = len(matching_ids(args.resources, family, site))
    if matches < 2:
        raise SystemExit(
            f"loadgen: --resources {args.resources} gives {matches} match(es) of {tags}"
        )
    held = min(args.held, matches - 1)  # leave at least one free match to grant
    results: list[ScaleResult] = []
    with tempfile.TemporaryDirectory(prefix="loadgen-") as tmp:
        workdir = Path(tmp)
        descriptor = workdir / f"resources-{args.resources}.yml"
        t0 = time.monotonic()
        generate_descriptor(descriptor, args.resources)
        print(
            f"descriptor: {args.resources} resources, {descriptor.stat().st_size / 2**20:.1f} MiB,"
            f" written in {time.monotonic() - t0:.1f} s; {matches} match {tags}, holding {held}",
            flush=True,
        )
        for spec in sides:
            with running_server(
                spec,
                descriptor,
                reference_dir,
                workdir,
                args.prefix + "/resources/1",
                args.ready_timeout,
            ) as (server, ready_s):
                rss_ready = server.rss_kib()
                lat, ulat, errors, overlaps, samples = asyncio.run(
                    scale_cycles(
                        server.port, args.prefix, tags, held, args.cycles, args.request_timeout
                    )
                )
                rss_after = server.rss_kib()
            result = ScaleResult(
                server=spec.name,
                resources=args.resources,
                ready_s=round(ready_s, 3),
                rss_ready_mib=round(rss_ready / 1024, 1),
                rss_after_mib=round(rss_after / 1024, 1),
                held=held,
                cycles=len(lat),
                lock_p50_ms=round(percentile(lat, 50) * 1e3, 3),
                lock_p99_ms=round(percentile(lat, 99) * 1e3, 3),
                unlock_p50_ms=round(percentile(ulat, 50) * 1e3, 3),
                errors=errors,
                overlaps=overlaps,
                error_samples=samples,
            )
            print(result.line(), flush=True)
            for text in samples:
                print(f"    error: {text}")
            results.append(result)
    by_name = {r.server: r for r in results}
    if "reference" in by_name and args.target_name in by_name:
        ref, tgt = by_name["reference"], by_name[args.target_name]
        print(
            f"{args.target_name}/reference: ready x{ratio(tgt.ready_s, ref.ready_s):.2f},"
            f" lock p50 x{ratio(tgt.lock_p50_ms, ref.lock_p50_ms):.2f},"
            f" p99 x{ratio(tgt.lock_p99_ms, ref.lock_p99_ms):.2f},"
            f" rss x{ratio(tgt.rss_after_mib, ref.rss_after_mib):.2f}"
        )
    payload = {"mode": "scale", "env": environment(), "results": [asdict(r) for r in results]}
    path = save_results("scale", payload, Path(args.results_dir))
    print(f"results: {path}")
    if args.json:
        print(json.dumps(payload["results"], indent=2))
    return 0 if all(r.errors == 0 and r.overlaps == 0 for r in results) else 1


# =========================================================================== selfcheck


def selfcheck() -> list[str]:
    """Feed the checker, the percentile and the HTTP parser known input; returns failures."""
    failures: list[str] = []

    def expect(name: str, got: object, want: object) -> None:
        if got != want:
            failures.append(f"{name}: got {got!r}, want {want!r}")

    # Back to back holds of one resource, touching at the boundary: no overlap.
    seq = [Hold(1, t, t + 1.0, t % 2) for t in range(10)]
    expect("back-to-back holds", find_overlaps(seq)[0], 0)
    # Interleaved across resources, still correct per resource.
    mixed = seq + [Hold(2, t + 0.5, t + 1.4, 9) for t in range(0, 10, 2)]
    expect("two resources", find_overlaps(mixed)[0], 0)
    # A double grant: client 7 got resource 1 while client 0 held it.
    count, pairs = find_overlaps([*mixed, Hold(1, 4.5, 4.6, 7)])
    expect("double grant count", count, 1)
    expect("double grant pair", [(a.client, b.client) for a, b in pairs], [(0, 7)])
    # One long hold covering two later ones: both are reported, each against the long one.
    count, pairs = find_overlaps([Hold(3, 0, 10, 1), Hold(3, 2, 3, 2), Hold(3, 5, 6, 3)])
    expect("nested holds", (count, [b.client for _, b in pairs]), (2, [2, 3]))
    # Same start time on one resource is an overlap whatever the input order.
    expect("same start", find_overlaps([Hold(4, 1, 3, 1), Hold(4, 1, 2, 2)])[0], 1)

    expect("p50", percentile([5.0, 1.0, 3.0, 2.0, 4.0], 50), 3.0)
    expect("p99 of 100", percentile([float(i) for i in range(1, 101)], 99), 99.0)

    async def parse(raw: bytes) -> tuple[int, bytes, bool]:
        reader = asyncio.StreamReader()
        reader.feed_data(raw)
        reader.feed_eof()
        return await read_response(reader)

    expect(
        "content-length",
        asyncio.run(parse(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")),
        (200, b"{}", False),
    )
    expect(
        "chunked + close",
        asyncio.run(
            parse(
                b"HTTP/1.1 403 Forbidden\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n"
                b"\r\n3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\n"
            )
        ),
        (403, b"abcde", True),
    )
    return failures


def cmd_selfcheck(args: argparse.Namespace) -> int:
    """`selfcheck`: run `selfcheck()` and say so."""
    failures = selfcheck()
    for text in failures:
        print(f"FAIL {text}")
    if not failures:
        overlaps, pairs = find_overlaps([Hold(1, 0.0, 0.004, 0), Hold(1, 0.003, 0.006, 1)])
        print(f"selfcheck: ok (a synthetic double grant gives overlaps: {overlaps})")
        for pair in pairs:
            print(f"    OVERLAP {describe_overlap(pair, 0.0)}")
    return 1 if failures else 0


# =========================================================================== command line


def workload_list(text: str) -> list[str]:
    """`all` or a comma-separated list of workload names."""
    names = list(WORKLOAD_NAMES) if text == "all" else [w.strip() for w in text.split(",") if w]
    bad = [w for w in names if w not in WORKLOAD_NAMES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"workloads are {', '.join(WORKLOAD_NAMES)} or all")
    return names


def build_parser() -> argparse.ArgumentParser:
    """The command line: run, compare, scale, selfcheck."""
    parser = argparse.ArgumentParser(
        prog="loadgen.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    sub = parser.add_subparsers(dest="mode", required=True)
    fmt = argparse.ArgumentDefaultsHelpFormatter

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--prefix", default=PREFIX, help="API path prefix")
    common.add_argument("--results-dir", default=str(RESULTS_DIR), help="where JSON goes")
    common.add_argument("--json", action="store_true", help="also print the JSON to stdout")

    load = argparse.ArgumentParser(add_help=False)
    load.add_argument("--clients", type=int, default=16, help="concurrent clients")
    load.add_argument("--procs", type=int, default=2, help="generator processes")
    load.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    load.add_argument("--max-cycles", type=int, default=100_000, help="cap per client")
    load.add_argument("--hold-ms", type=float, default=2.0, help="hold before unlocking")
    load.add_argument("--backoff-ms", type=float, default=1.0, help="wait after a 403 busy")
    load.add_argument(
        "--contended-resources", type=int, default=2, help="shared ids (contended-id)"
    )
    load.add_argument("--tag", default=SHARED_TAG, help="tag locked by the tag workload")

    servers = argparse.ArgumentParser(add_help=False)
    servers.add_argument(
        "--reference-dir",
        default=None,
        help="shared/ (or shared/bench) holding reference_server.py [../shared from the repo]",
    )
    servers.add_argument(
        "--reference-cmd",
        default="reference",
        help="reference server command template, or an alias: " + ", ".join(CMD_ALIASES),
    )
    servers.add_argument(
        "--target-cmd",
        default="rentabot",
        help="target command template ({python} {venv} {host} {port} {descriptor} {tmpdir}"
        " {reference_dir} {bench_dir}) or an alias: " + ", ".join(CMD_ALIASES),
    )
    servers.add_argument("--target-name", default="rentabot", help="label of the target")

    p = sub.add_parser(
        "run", parents=[common, load], formatter_class=fmt, help="load an already running server"
    )
    p.add_argument("--url", required=True, help="e.g. http://127.0.0.1:8001")
    p.add_argument("--workloads", type=workload_list, default="uncontended-id", help="or all")
    p.add_argument("--name", default="server", help="label in the report")
    p.add_argument(
        "--api-key-env",
        metavar="VAR",
        default=None,
        help="send the API key in this environment variable (e.g. RENTABOT_API_KEY) as"
        " X-API-Key on every request; checked with GET /api/v2/whoami first",
    )
    p.set_defaults(func=cmd_run)

    p = sub.add_parser(
        "compare",
        parents=[common, load, servers],
        formatter_class=fmt,
        help="reference vs rentabot, alternating",
    )
    p.add_argument("--workloads", type=workload_list, default="all", help="comma list or all")
    p.add_argument("--ready-timeout", type=float, default=120.0, help="seconds to wait for a 200")
    p.add_argument("--rounds", type=int, default=3, help="alternations per workload")
    p.add_argument("--resources", type=int, default=50, help="resources in the descriptor")
    p.add_argument(
        "--streams",
        type=int,
        default=0,
        help="hold this many open /api/v2/events/stream connections (each reading) on every"
        " server during its run; the report gives its VmRSS before and with them",
    )
    p.add_argument(
        "--api-key-role",
        choices=("lock", "admin"),
        default=None,
        help="also run a third server: the target again, started with"
        " RENTABOT_ANONYMOUS_ROLE=none on a database with a key of this role (made by"
        " `rentabot keys create`), sent as X-API-Key on every request; the reference gets"
        " a header of the same shape; reports both target ratios and the key's cost",
    )
    p.add_argument(
        "--comma-tags",
        action="store_true",
        help="write the descriptor's tags as upstream 1.x's comma-separated string (1.x"
        " refuses YAML lists: needed with --reference-cmd upstream-1.0)",
    )
    p.add_argument(
        "--inject-double-grant",
        action="store_true",
        help="checker self-test: the target is bench/broken_server.py, which sometimes grants"
        " a busy resource; the run must report overlaps and fail",
    )
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser(
        "scale", parents=[common, servers], formatter_class=fmt, help="100,000 resources"
    )
    p.add_argument("--resources", type=int, default=100_000, help="resources in the descriptor")
    p.add_argument("--cycles", type=int, default=2000, help="sequential lock-by-tag cycles")
    p.add_argument("--held", type=int, default=100, help="matching resources held meanwhile")
    p.add_argument("--request-timeout", type=float, default=30.0, help="seconds per request")
    p.add_argument("--skip-reference", action="store_true", help="measure the target only")
    p.add_argument("--skip-target", action="store_true", help="measure the reference only")
    p.add_argument("--ready-timeout", type=float, default=600.0, help="seconds to wait for a 200")
    p.set_defaults(func=cmd_scale)

    p = sub.add_parser("selfcheck", help="the checker and the parser on synthetic input")
    p.set_defaults(func=cmd_selfcheck)
    return parser


def _terminate(signum: int, frame: object) -> None:
    # SIGTERM takes the same way out as Ctrl-C, so every finally: stops its servers.
    raise KeyboardInterrupt


def run_mode(program: str, args: argparse.Namespace, cleanup: str = "servers stopped") -> int:
    """Run the chosen mode (`args.func`) of a bench program; SIGTERM and Ctrl-C end it
    through every `finally:` (servers stopped) with status 130."""
    signal.signal(signal.SIGTERM, _terminate)
    try:
        rc: int = args.func(args)
    except KeyboardInterrupt:
        print(f"{program}: interrupted; {cleanup}", file=sys.stderr)
        return 130
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the mode; the exit status is the mode's."""
    args = build_parser().parse_args(argv)
    if isinstance(getattr(args, "workloads", None), str):
        args.workloads = workload_list(args.workloads)
    return run_mode("loadgen", args)


if __name__ == "__main__":
    sys.exit(main())
