"""leases: benchmarks of rentabot's v2 leases (a benchmark, not a test).

Modes (see bench/README.md for how to read the output):

    grant-latency  a release -> the queued waiter's answer, ~300 hand-offs of one resource
    ttl-mix        cycles/s of acquire(ttl) + renew + release against plain acquire + release,
                   alternating on fresh servers, 16 clients in 2 processes, overlap and fence
                   checks on
    sweep-cost     the expiry sweep with 100,000 resources: latency and idle CPU with 10,000
                   live leases and with none; how long 10,000 leases that expire together take
                   to be ended
    selfcheck      the fence checker on synthetic input

Built on loadgen.py: its HTTP client, server start/stop, load runner, overlap checker and
result files. rentabot only: the reference server has no v2 API. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from loadgen import (
    BENCH_DIR,
    HOST,
    MAX_SAMPLES,
    NETWORK_ERRORS,
    PREFIX,
    RESULTS_DIR,
    ClientPlan,
    ClientStats,
    Connection,
    Hold,
    Response,
    RunConfig,
    RunResult,
    Server,
    ServerSpec,
    describe_overlap,
    environment,
    find_overlaps,
    generate_descriptor,
    percentile,
    print_problems,
    process_tree,
    ratio,
    run_load_with_stats,
    run_mode,
    running_server,
    save_results,
)

V2 = "/api/v2"
LEASES = V2 + "/leases"
JSON_HEADER = b"Content-Type: application/json\r\n"

#: The targets set for the v2 work, printed next to the figures (see bench/README.md).
GRANT_P50_TARGET_MS = 5.0
GRANT_P99_TARGET_MS = 20.0
TTL_MIX_TARGET = 0.80
#: The server's sweep period (rentabot.app.SWEEP_INTERVAL_S); only used to express idle CPU
#: per sweep, so a stale value would mislabel a figure, not change one.
SWEEP_INTERVAL_S = 0.25


# =========================================================================== v2 helpers


def auth_header(token: str) -> bytes:
    """The `Authorization: Bearer` header line of a lease or ticket token."""
    return b"Authorization: Bearer %s\r\n" % token.encode("ascii")


def acquire_body(ids: Sequence[int], ttl: float | None = None, wait: float = 0.0) -> bytes:
    """The JSON body of `POST /api/v2/leases` selecting resources by id."""
    body: dict[str, Any] = {"select": {"ids": list(ids)}}
    if ttl is not None:
        body["ttl"] = ttl
    if wait:
        body["wait"] = wait
    return json.dumps(body).encode()


class Granted(NamedTuple):
    """A lease as its 201/200 answer gives it."""

    lease_id: int
    token: str
    fences: dict[int, int]  # resource id -> the grant's fence


def parse_lease(body: bytes) -> Granted:
    """The lease of a `{"lease": …}` answer. Raises ValueError, KeyError or TypeError."""
    lease = json.loads(body)["lease"]
    fences = {int(r["id"]): int(r["fence"]) for r in lease["resources"]}
    return Granted(int(lease["id"]), str(lease["token"]), fences)


def ms(values: Sequence[float], pct: float) -> float:
    """A nearest-rank percentile of latencies in seconds, in ms rounded to the µs."""
    return round(percentile(values, pct) * 1e3, 3)


def met(value: float, target: float, *, below: bool = True) -> str:
    """`met` or `NOT met` for a figure against its target."""
    ok = value < target if below else value >= target
    return "met" if ok else "NOT met"


def find_fence_problems(holds: Iterable[Hold]) -> tuple[int, list[str]]:
    """Count grants whose fence does not exceed the previous grant's fence of that resource.

    Holds are taken in start order per resource; the overlap checker separately proves that
    they do not overlap, so start order is grant order and fences must strictly increase
    (a repeated fence always shows up as a pair that does not). Holds without a fence are
    skipped. Returns the count and a few descriptions.
    """
    # (start, end, fence, client) per resource: sorting the tuples is start order.
    per_resource: dict[int, list[tuple[float, float, int, int]]] = defaultdict(list)
    for h in holds:
        if h.fence is not None:
            per_resource[h.resource].append((h.start, h.end, h.fence, h.client))
    count = 0
    samples: list[str] = []
    for rid in sorted(per_resource):
        for before, after in itertools.pairwise(sorted(per_resource[rid])):
            if after[2] <= before[2]:
                count += 1
                if len(samples) < MAX_SAMPLES:
                    samples.append(
                        f"resource {rid}: client {before[3]} got fence {before[2]},"
                        f" then client {after[3]} got fence {after[2]}"
                    )
    return count, samples


def cpu_seconds(pid: int) -> tuple[float, float]:
    """CPU time of a process and its live descendants, in seconds, read two ways.

    First utime + stime from /proc/<pid>/stat, in clock ticks (10 ms here: coarse for an
    idle server); then the run time of every thread from /proc/<pid>/task/*/schedstat, in
    nanoseconds (a thread that has exited takes its time with it, which the server's
    long-lived threads do not).
    """
    ticks = 0
    nanoseconds = 0
    for p in process_tree(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue  # it exited between the listing and the read: its time is gone too
        # The fields after the command name, which may hold spaces: state is field 3, so
        # utime (14) and stime (15) are at 11 and 12.
        fields = stat.rsplit(")", 1)[1].split()
        ticks += int(fields[11]) + int(fields[12])
        with contextlib.suppress(OSError):
            for task in os.scandir(f"/proc/{p}/task"):
                with contextlib.suppress(OSError, ValueError, IndexError):
                    nanoseconds += int(Path(task.path, "schedstat").read_text().split()[0])
    return ticks / os.sysconf("SC_CLK_TCK"), nanoseconds / 1e9


def start_rentabot(
    args: argparse.Namespace, descriptor: Path, workdir: Path, env: dict[str, str]
) -> contextlib.AbstractContextManager[tuple[Server, float]]:
    """loadgen's `running_server` for the target of these benchmarks."""
    # There is no reference side (the reference server has no v2 API): {reference_dir}
    # points at bench/ only so that a template using it still formats.
    return running_server(
        ServerSpec(args.target_name, args.target_cmd),
        descriptor,
        BENCH_DIR,
        workdir,
        args.prefix + "/resources/1",
        args.ready_timeout,
        env,
    )


# =========================================================================== grant-latency


@dataclass
class GrantLatencyResult:
    """The report of grant-latency."""

    server: str
    samples: int
    settle_ms: float
    grant_p50_ms: float
    grant_p99_ms: float
    grant_max_ms: float
    release_p50_ms: float  # the holder's own DELETE answer
    release_p99_ms: float
    queued_p50_ms: float  # the waiter's POST sent -> its ticket seen in GET /queue
    waiter_first: int  # hand-offs where the waiter's answer came before the holder's
    errors: int
    overlaps: int
    fence_problems: int
    error_samples: list[str]
    latencies_ms: list[float] = field(repr=False)

    def lines(self) -> list[str]:
        """The text report."""
        return [
            f"grant-latency {self.server}: {self.samples} hand-offs (settle {self.settle_ms:g} ms)"
            f"  release -> waiter's answer p50 {self.grant_p50_ms:.2f} ms"
            f" (target < {GRANT_P50_TARGET_MS:g}: {met(self.grant_p50_ms, GRANT_P50_TARGET_MS)})"
            f"  p99 {self.grant_p99_ms:.2f} ms"
            f" (target < {GRANT_P99_TARGET_MS:g}: {met(self.grant_p99_ms, GRANT_P99_TARGET_MS)})"
            f"  max {self.grant_max_ms:.2f} ms",
            f"    holder's DELETE answered in p50 {self.release_p50_ms:.2f} ms"
            f" p99 {self.release_p99_ms:.2f} ms; waiter answered first in"
            f" {self.waiter_first}/{self.samples}; queued after p50 {self.queued_p50_ms:.2f} ms"
            f"  errors {self.errors}  overlaps: {self.overlaps}  fence problems: "
            f"{self.fence_problems}",
        ]


@dataclass
class HandoffLog:
    """What the grant-latency hand-offs observed (latencies in seconds)."""

    stats: ClientStats = field(default_factory=ClientStats)  # errors, and the holds
    grant: list[float] = field(default_factory=list)  # DELETE sent -> waiter's answer read
    release: list[float] = field(default_factory=list)  # DELETE sent -> its answer read
    queued: list[float] = field(default_factory=list)  # waiter's POST sent -> seen queued
    waiter_first: int = 0


async def wait_queued(
    observer: Connection, waiter: asyncio.Task[Response], sent: float, timeout: float
) -> float | None:
    """Poll `GET /api/v2/queue` until a ticket waits; seconds since `sent`, None if the
    waiter answered first or `timeout` passed."""
    limit = time.monotonic() + timeout
    while time.monotonic() < limit and not waiter.done():
        resp = await observer.request("GET", V2 + "/queue")
        if resp.status == 200 and json.loads(resp.body)["tickets"]:
            return resp.received - sent
        # Short: the ticket is written within a millisecond or two of the request.
        await asyncio.sleep(0.002)
    return None


async def grant_handoffs(
    port: int, rid: int, samples: int, settle_s: float, wait_s: float, timeout: float
) -> HandoffLog:
    """Hand one resource back and forth between two clients through the wait queue.

    Each hand-off: the waiter asks with `wait`, is seen in the queue, then (after `settle_s`)
    the holder releases; the sample is the holder's DELETE sent -> the waiter's 201 read.
    The waiter then holds, and the released client waits next.
    """
    log = HandoffLog()
    stats = log.stats
    conns = [Connection(HOST, port), Connection(HOST, port)]
    observer = Connection(HOST, port)
    wait_body = acquire_body([rid], wait=wait_s)
    holder: Granted | None = None
    pending: asyncio.Task[Response] | None = None
    try:
        for conn in (*conns, observer):
            await conn.connect()
        async with asyncio.timeout(timeout):
            first = await conns[0].request("POST", LEASES, acquire_body([rid]), JSON_HEADER)
        if first.status != 201:
            stats.error(f"first acquire -> {first.status}: {first.body[:200]!r}")
            return log
        holder, holder_idx, held_since = parse_lease(first.body), 0, first.received
        for _ in range(samples):
            waiter_idx = 1 - holder_idx
            sent = time.monotonic()
            pending = asyncio.create_task(
                conns[waiter_idx].request("POST", LEASES, wait_body, JSON_HEADER)
            )
            queued = await wait_queued(observer, pending, sent, timeout)
            if queued is None:
                stats.error("the waiter was never seen in the queue (or answered at once)")
                break
            log.queued.append(queued)
            # Let the waiter's request finish queuing (it touches its ticket once more)
            # so that the sample is the hand-off alone, not a race with that write.
            await asyncio.sleep(settle_s)
            async with asyncio.timeout(timeout):
                rel = await conns[holder_idx].request(
                    "DELETE", f"{LEASES}/{holder.lease_id}", b"", auth_header(holder.token)
                )
            log.stats.holds.append(
                Hold(rid, held_since, rel.sent, holder_idx, holder.fences.get(rid))
            )
            if rel.status != 200:
                stats.error(f"release -> {rel.status}: {rel.body[:200]!r}")
                break
            async with asyncio.timeout(timeout):
                answer = await pending
            pending = None
            if answer.status != 201:
                stats.error(f"waiter -> {answer.status}: {answer.body[:200]!r}")
                holder = None  # nothing held now (or a ticket, which the server will drop)
                break
            log.grant.append(answer.received - rel.sent)
            log.release.append(rel.received - rel.sent)
            if answer.received < rel.received:
                log.waiter_first += 1
            holder, holder_idx, held_since = parse_lease(answer.body), waiter_idx, answer.received
            if rid not in holder.fences:
                stats.error(f"the waiter was granted {sorted(holder.fences)}, not {rid}")
        if holder is not None:
            rel = await conns[holder_idx].request(
                "DELETE", f"{LEASES}/{holder.lease_id}", b"", auth_header(holder.token)
            )
            log.stats.holds.append(
                Hold(rid, held_since, rel.sent, holder_idx, holder.fences.get(rid))
            )
    except (*NETWORK_ERRORS, TimeoutError, ValueError, KeyError, TypeError) as exc:
        stats.error(f"{type(exc).__name__}: {exc}")
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        for conn in (*conns, observer):
            conn.close()
    return log


def cmd_grant_latency(args: argparse.Namespace) -> int:
    """`grant-latency`: the time from a release to the queued waiter's answer."""
    # The waiter must still be inside its first request when the release comes: a long-poll
    # that answered 202 first would measure the client's re-poll instead.
    env = {"RENTABOT_LONG_POLL_SECONDS": str(args.long_poll)}
    with tempfile.TemporaryDirectory(prefix="leases-") as tmp:
        workdir = Path(tmp)
        descriptor = workdir / "resources.yml"
        generate_descriptor(descriptor, args.resources)
        with start_rentabot(args, descriptor, workdir, env) as (server, _):
            log = asyncio.run(
                grant_handoffs(
                    server.port,
                    1,
                    args.samples,
                    args.settle_ms / 1e3,
                    args.wait,
                    args.request_timeout,
                )
            )
    overlaps, pairs = find_overlap_texts(log.stats.holds)
    fences, fence_samples = find_fence_problems(log.stats.holds)
    result = GrantLatencyResult(
        server=args.target_name,
        samples=len(log.grant),
        settle_ms=args.settle_ms,
        grant_p50_ms=ms(log.grant, 50),
        grant_p99_ms=ms(log.grant, 99),
        grant_max_ms=ms(log.grant, 100),
        release_p50_ms=ms(log.release, 50),
        release_p99_ms=ms(log.release, 99),
        queued_p50_ms=ms(log.queued, 50),
        waiter_first=log.waiter_first,
        errors=log.stats.errors,
        overlaps=overlaps,
        fence_problems=fences,
        error_samples=log.stats.error_samples,
        latencies_ms=[round(v * 1e3, 3) for v in log.grant],
    )
    for line in result.lines():
        print(line)
    for text in [*result.error_samples, *pairs, *fence_samples]:
        print(f"    {text}")
    ok = result.errors == 0 and overlaps == 0 and fences == 0 and result.samples > 0
    return finish("grant-latency", args, {"result": asdict(result)}, ok)


def find_overlap_texts(holds: Sequence[Hold]) -> tuple[int, list[str]]:
    """loadgen's overlap checker, with its sampled pairs as text."""
    count, pairs = find_overlaps(holds)
    origin = min((h.start for h in holds), default=0.0)
    return count, [f"OVERLAP {describe_overlap(p, origin)}" for p in pairs]


# =========================================================================== ttl-mix


@dataclass(frozen=True)
class LeaseCycle:
    """What one v2 cycle does between its acquire and its release."""

    name: str
    ttl: float | None
    renews: int


async def lease_client(
    cycle: LeaseCycle,
    cfg: RunConfig,
    plan: ClientPlan,
    conn: Connection,
    start: float,
    stats: ClientStats,
) -> None:
    """Acquire by id (with cycle.ttl), hold, renew cycle.renews times, release; in a loop.

    The v2 twin of loadgen.run_client, with the same clock, timer and error rules; a cycle
    counts once the release answered 200 (and every renew before it).
    """
    assert plan.expect_id is not None
    rid = plan.expect_id
    deadline = start + cfg.duration
    loop = asyncio.get_running_loop()
    acquire = acquire_body([rid], ttl=cycle.ttl)
    renew_body = json.dumps({"ttl": cycle.ttl}).encode() if cycle.ttl is not None else b""
    latencies = stats.latencies
    renew_lat = stats.op_latencies.setdefault("renew", [])
    release_lat = stats.op_latencies.setdefault("release", [])
    cycles = 0
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    try:
        async with asyncio.timeout_at(loop.time() + (deadline + cfg.grace_s - time.monotonic())):
            while cycles < cfg.max_cycles and time.monotonic() < deadline:
                try:
                    resp = await conn.request("POST", LEASES, acquire, JSON_HEADER)
                except NETWORK_ERRORS as exc:
                    stats.error(f"acquire {rid}: {type(exc).__name__}: {exc}")
                    await asyncio.sleep(0.01)  # don't spin on a dead server
                    continue
                if resp.status == 409:
                    stats.busy += 1
                    await asyncio.sleep(cfg.backoff_s)
                    continue
                if resp.status != 201:
                    stats.error(f"acquire {rid} -> {resp.status}: {resp.body[:200]!r}")
                    await asyncio.sleep(cfg.backoff_s)
                    continue
                try:
                    lease = parse_lease(resp.body)
                except (ValueError, KeyError, TypeError) as exc:
                    stats.error(f"acquire {rid} -> 201 unreadable ({exc}): {resp.body[:200]!r}")
                    continue
                latencies.append(resp.received - resp.sent)
                if set(lease.fences) != {rid}:
                    stats.error(f"acquire {rid} granted {sorted(lease.fences)}")
                auth = auth_header(lease.token)
                path = f"{LEASES}/{lease.lease_id}"
                await asyncio.sleep(cfg.hold_s)
                complete = True
                try:
                    for _ in range(cycle.renews):
                        r = await conn.request(
                            "POST", path + "/renew", renew_body, auth + JSON_HEADER
                        )
                        if r.status != 200:
                            stats.error(f"renew {path} -> {r.status}: {r.body[:200]!r}")
                            complete = False
                            break
                        renew_lat.append(r.received - r.sent)
                    rel = await conn.request("DELETE", path, b"", auth)
                except NETWORK_ERRORS as exc:
                    # The release may have left: the hold ended no later than now.
                    stats.holds.append(
                        Hold(
                            rid, resp.received, time.monotonic(), plan.index, lease.fences.get(rid)
                        )
                    )
                    stats.leaked += 1
                    stats.error(f"renew/release {path}: {type(exc).__name__}: {exc}")
                    continue
                stats.holds.append(
                    Hold(rid, resp.received, rel.sent, plan.index, lease.fences.get(rid))
                )
                if rel.status != 200:
                    stats.leaked += 1
                    stats.error(f"release {path} -> {rel.status}: {rel.body[:200]!r}")
                    continue
                release_lat.append(rel.received - rel.sent)
                if complete:
                    cycles += 1
    except TimeoutError:
        stats.error(
            f"client {plan.index}: a request was still pending {cfg.grace_s} s after the end"
        )
    finally:
        stats.cycles += cycles
        stats.finished = max(stats.finished, time.monotonic())


@dataclass
class MixRun:
    """One ttl-mix run: loadgen's report plus what only v2 has."""

    round: int
    run: RunResult
    renew_p50_ms: float
    release_p50_ms: float
    fence_problems: int
    fence_samples: list[str]

    @property
    def ok(self) -> bool:
        """No double grant, no fence problem, no error."""
        return self.run.ok and self.fence_problems == 0

    def line(self) -> str:
        """The one-line text report."""
        renew = "" if math.isnan(self.renew_p50_ms) else f"  renew p50 {self.renew_p50_ms:5.2f} ms"
        return (
            f"round {self.round}  {self.run.line()}{renew}"
            f"  release p50 {self.release_p50_ms:5.2f} ms  fence problems: {self.fence_problems}"
        )


def cmd_ttl_mix(args: argparse.Namespace) -> int:
    """`ttl-mix`: plain acquire+release vs acquire(ttl)+renew+release, alternating."""
    plain = LeaseCycle("v2-plain", None, 0)
    mix = LeaseCycle("v2-ttl-renew", args.ttl, args.renews)
    if args.resources < args.clients:
        raise SystemExit(f"leases: --resources must be at least --clients ({args.clients})")
    plans = [ClientPlan(i, LEASES, i + 1) for i in range(args.clients)]
    runs: list[dict[str, MixRun]] = []
    with tempfile.TemporaryDirectory(prefix="leases-") as tmp:
        workdir = Path(tmp)
        descriptor = workdir / "resources.yml"
        generate_descriptor(descriptor, args.resources)
        for rnd in range(1, args.rounds + 1):
            # Swap the order every round, so a machine that slows down (or speeds up)
            # during the invocation does not always favour the same side.
            order = (plain, mix) if rnd % 2 else (mix, plain)
            pair: dict[str, MixRun] = {}
            for cycle in order:
                with start_rentabot(args, descriptor, workdir, {}) as (server, _):
                    cfg = RunConfig(
                        workload=cycle.name,
                        host=HOST,
                        port=server.port,
                        prefix=args.prefix,
                        clients=args.clients,
                        procs=args.procs,
                        duration=args.duration,
                        max_cycles=args.max_cycles,
                        hold_s=args.hold_ms / 1e3,
                        backoff_s=args.backoff_ms / 1e3,
                    )
                    run, stats = run_load_with_stats(
                        cfg, args.target_name, client=partial(lease_client, cycle), plans=plans
                    )
                fences, fence_samples = find_fence_problems(stats.holds)
                mix_run = MixRun(
                    round=rnd,
                    run=run,
                    renew_p50_ms=ms(stats.op_latencies.get("renew", []), 50),
                    release_p50_ms=ms(stats.op_latencies.get("release", []), 50),
                    fence_problems=fences,
                    fence_samples=fence_samples,
                )
                pair[cycle.name] = mix_run
                print(mix_run.line(), flush=True)
                print_problems(run)
                for text in fence_samples:
                    print(f"    FENCE {text}")
            runs.append(pair)
            print(
                f"round {rnd}  {mix.name}/{plain.name} cycles/s ="
                f" {ratio(pair[mix.name].run.cycles_per_s, pair[plain.name].run.cycles_per_s):.3f}",
                flush=True,
            )
    summary = summarize_mix(runs, plain.name, mix.name)
    print()
    print_mix_summary(summary, plain.name, mix.name)
    ok = all(r.ok for pair in runs for r in pair.values())
    payload = {
        "summary": summary,
        "cycles": {c.name: asdict(c) for c in (plain, mix)},
        "rounds": [
            {name: {**asdict(r), "run": asdict(r.run)} for name, r in pair.items()} for pair in runs
        ],
    }
    return finish("ttl-mix", args, payload, ok)


def summarize_mix(runs: Sequence[dict[str, MixRun]], plain: str, mix: str) -> dict[str, Any]:
    """Medians over the rounds of each side, and of the per-round mix/plain ratio."""
    ratios = [ratio(p[mix].run.cycles_per_s, p[plain].run.cycles_per_s) for p in runs]
    out: dict[str, Any] = {
        "ratio_cycles_per_s_median": round(statistics.median(ratios), 4) if ratios else math.nan,
        "ratios": [round(r, 4) for r in ratios],
    }
    for side in (plain, mix):
        rs = [p[side] for p in runs]
        out[side] = {
            "cycles_per_s_median": round(statistics.median(r.run.cycles_per_s for r in rs), 1),
            "lock_p50_ms_median": round(statistics.median(r.run.lock_p50_ms for r in rs), 3),
            "lock_p99_ms_median": round(statistics.median(r.run.lock_p99_ms for r in rs), 3),
            "release_p50_ms_median": round(statistics.median(r.release_p50_ms for r in rs), 3),
            "renew_p50_ms_median": round(statistics.median(r.renew_p50_ms for r in rs), 3),
            "errors": sum(r.run.errors for r in rs),
            "overlaps": sum(r.run.overlaps for r in rs),
            "fence_problems": sum(r.fence_problems for r in rs),
        }
    return out


def dash(value: float) -> str:
    """A latency in ms for a table, or `-` when there is none (NaN)."""
    return "-" if math.isnan(value) else f"{value:.2f}"


def print_mix_summary(summary: dict[str, Any], plain: str, mix: str) -> None:
    """The medians of a ttl-mix invocation."""
    r = summary["ratio_cycles_per_s_median"]
    print(
        f"ttl-mix: {mix}/{plain} cycles/s = {r:.3f} (median of {len(summary['ratios'])} rounds;"
        f" target >= {TTL_MIX_TARGET:.2f}: {met(r, TTL_MIX_TARGET, below=False)})"
    )
    print(
        f"{'side':<13} {'cycles/s':>9} {'lock p50':>9} {'p99':>7} {'renew p50':>10}"
        f" {'release p50':>12}  overlaps fences errors"
    )
    for side in (plain, mix):
        e = summary[side]
        print(
            f"{side:<13} {e['cycles_per_s_median']:9.1f} {e['lock_p50_ms_median']:9.2f}"
            f" {e['lock_p99_ms_median']:7.2f} {dash(e['renew_p50_ms_median']):>10}"
            f" {e['release_p50_ms_median']:12.2f}  {e['overlaps']:8d} {e['fence_problems']:6d}"
            f" {e['errors']:6d}"
        )
    print("(medians over rounds; latencies in ms, of the answered requests)")


# =========================================================================== sweep-cost


@dataclass
class Probe:
    """A single client's sequential v1 lock + unlock cycles on one resource."""

    lock: list[float] = field(default_factory=list)  # seconds
    cycle: list[float] = field(default_factory=list)  # lock sent -> unlock answer read
    stats: ClientStats = field(default_factory=ClientStats)

    def summary(self) -> dict[str, float]:
        """Percentiles in ms, and the count."""
        return {
            "cycles": len(self.cycle),
            "lock_p50_ms": ms(self.lock, 50),
            "lock_p99_ms": ms(self.lock, 99),
            "lock_max_ms": ms(self.lock, 100),
            "cycle_p50_ms": ms(self.cycle, 50),
            "cycle_p99_ms": ms(self.cycle, 99),
        }


async def probe_cycles(
    port: int,
    prefix: str,
    rid: int,
    duration: float,
    max_cycles: int,
    stop: asyncio.Event | None = None,
) -> Probe:
    """Lock and unlock resource `rid` by id (v1, no hold), one cycle after the other, until
    `duration` seconds, `max_cycles` cycles or `stop` is set."""
    probe = Probe()
    conn = Connection(HOST, port)
    lock_target = f"{prefix}/resources/{rid}/lock"
    limit = time.monotonic() + duration
    try:
        await conn.connect()
        async with asyncio.timeout(duration + 30):
            while (
                len(probe.cycle) < max_cycles
                and time.monotonic() < limit
                and not (stop is not None and stop.is_set())
            ):
                resp = await conn.request("POST", lock_target)
                if resp.status != 200:
                    probe.stats.error(f"lock {rid} -> {resp.status}: {resp.body[:200]!r}")
                    await asyncio.sleep(0.01)  # held by someone else: don't spin
                    continue
                token = str(json.loads(resp.body)["lock-token"])
                uresp = await conn.request(
                    "POST", f"{prefix}/resources/{rid}/unlock?lock-token={quote(token, safe='')}"
                )
                if uresp.status != 200:
                    probe.stats.error(f"unlock {rid} -> {uresp.status}: {uresp.body[:200]!r}")
                    continue
                probe.lock.append(resp.received - resp.sent)
                probe.cycle.append(uresp.received - resp.sent)
    except (*NETWORK_ERRORS, TimeoutError, ValueError, KeyError, TypeError) as exc:
        probe.stats.error(f"probe: {type(exc).__name__}: {exc}")
    finally:
        conn.close()
    return probe


@dataclass
class Phase:
    """Idle CPU and probe latency of the server in one state (no leases, or many live)."""

    name: str
    live_leases: int
    idle_s: float
    idle_cpu_s: float  # utime + stime (/proc/<pid>/stat), 10 ms ticks
    idle_cpu_exact_s: float  # thread run time (/proc/<pid>/task/*/schedstat), ns
    probe: dict[str, float]
    errors: int
    error_samples: list[str]

    def line(self) -> str:
        """The one-line text report."""
        p = self.probe
        return (
            f"{self.name:<11} {self.live_leases:6d} live  idle cpu {self.idle_cpu_s:5.2f} s"
            f" (schedstat {self.idle_cpu_exact_s:6.4f} s) / {self.idle_s:g} s"
            f" = {100 * self.idle_cpu_exact_s / self.idle_s:5.2f} %,"
            f" {1e3 * self.idle_cpu_exact_s / (self.idle_s / SWEEP_INTERVAL_S):5.2f} ms per sweep"
            f"  lock p50 {p['lock_p50_ms']:5.2f} p99 {p['lock_p99_ms']:6.2f}"
            f" max {p['lock_max_ms']:6.2f} ms  lock+unlock p50 {p['cycle_p50_ms']:5.2f}"
            f" p99 {p['cycle_p99_ms']:6.2f} ms ({p['cycles']:.0f} cycles)  errors {self.errors}"
        )


def measure_phase(name: str, server: Server, args: argparse.Namespace, live_leases: int) -> Phase:
    """Idle CPU over args.idle_s, then the single-client probe for args.probe_s."""
    assert server.proc is not None
    # A moment for the work of the previous step (the last group commits, WAL checkpoints)
    # to finish, so it is not billed to this phase's idle time.
    time.sleep(args.settle_s)
    before = cpu_seconds(server.proc.pid)
    time.sleep(args.idle_s)
    after = cpu_seconds(server.proc.pid)
    probe = asyncio.run(
        probe_cycles(server.port, args.prefix, args.probe_id, args.probe_s, args.probe_cycles)
    )
    return Phase(
        name=name,
        live_leases=live_leases,
        idle_s=args.idle_s,
        idle_cpu_s=round(after[0] - before[0], 3),
        idle_cpu_exact_s=round(after[1] - before[1], 6),
        probe=probe.summary(),
        errors=probe.stats.errors,
        error_samples=probe.stats.error_samples,
    )


async def fan_out(
    port: int,
    items: Sequence[int],
    connections: int,
    one: Callable[[Connection, int, ClientStats], Awaitable[None]],
    timeout: float,
) -> ClientStats:
    """Run `await one(conn, item, stats)` for every item over several connections at once."""
    stats = ClientStats()
    conns = [Connection(HOST, port) for _ in range(max(1, connections))]

    async def worker(conn: Connection, share: Sequence[int]) -> None:
        for item in share:
            try:
                await one(conn, item, stats)
            except NETWORK_ERRORS as exc:
                stats.error(f"{item}: {type(exc).__name__}: {exc}")

    try:
        async with asyncio.timeout(timeout):
            await asyncio.gather(*(worker(c, items[k :: len(conns)]) for k, c in enumerate(conns)))
    except TimeoutError:
        stats.error(f"not done after {timeout} s")
    finally:
        for conn in conns:
            conn.close()
    return stats


async def create_leases(
    port: int, ids: Sequence[int], ttl: float, connections: int, timeout: float
) -> tuple[dict[int, Granted], ClientStats]:
    """One lease of `ttl` seconds per resource id, over several connections."""
    made: dict[int, Granted] = {}

    async def one(conn: Connection, rid: int, stats: ClientStats) -> None:
        resp = await conn.request("POST", LEASES, acquire_body([rid], ttl=ttl), JSON_HEADER)
        if resp.status != 201:
            stats.error(f"acquire {rid} -> {resp.status}: {resp.body[:200]!r}")
            return
        made[rid] = parse_lease(resp.body)
        stats.latencies.append(resp.received - resp.sent)

    stats = await fan_out(port, ids, connections, one, timeout)
    return made, stats


async def renew_to(
    port: int, leases: Sequence[Granted], deadline: float, connections: int, timeout: float
) -> ClientStats:
    """Renew every lease so that it expires at the wall-clock time `deadline`.

    The TTL is computed just before each request is sent; the server adds it to its own
    `time.time()`, read a little later, so every lease's deadline lies in
    [deadline, deadline + that request's latency]. The deadlines the server answered, minus
    `deadline`, are in stats.op_latencies["deadline"] (seconds).
    """
    by_id = {lease.lease_id: lease for lease in leases}

    async def one(conn: Connection, lease_id: int, stats: ClientStats) -> None:
        lease = by_id[lease_id]
        ttl = deadline - time.time()
        if ttl <= 0:
            stats.error(f"renew {lease_id}: the deadline passed before renewing (--expiry-lead)")
            return
        resp = await conn.request(
            "POST",
            f"{LEASES}/{lease_id}/renew",
            json.dumps({"ttl": ttl}).encode(),
            auth_header(lease.token) + JSON_HEADER,
        )
        if resp.status != 200:
            stats.error(f"renew {lease_id} -> {resp.status}: {resp.body[:200]!r}")
            return
        stats.latencies.append(resp.received - resp.sent)
        expires_at = float(json.loads(resp.body)["lease"]["expires_at"])
        stats.op_latencies.setdefault("deadline", []).append(expires_at - deadline)

    return await fan_out(port, sorted(by_id), connections, one, timeout)


@dataclass
class Burst:
    """How the sweep ended leases that all expire at the same moment."""

    leases: int
    renew_s: float  # renewing them all to the common deadline
    deadline_first_ms: float  # the earliest deadline the server set, after the common one
    deadline_last_ms: float  # the latest
    lead_s: float  # from the end of the renewals to the deadline
    ended_early: int  # ended while a poll answered before the deadline: must be 0
    first_end_s: float  # deadline -> the first poll that saw fewer locked
    half_s: float  # deadline -> half of them ended
    all_s: float  # deadline -> the first poll that saw none locked
    polls: int
    poll_p50_ms: float
    poll_max_ms: float
    probe: dict[str, float]  # the probe, running from the deadline until all ended
    errors: int
    error_samples: list[str]
    curve: list[tuple[float, int]]  # (seconds after the deadline, leases left), on changes

    def lines(self) -> list[str]:
        """The text report."""
        p = self.probe
        return [
            f"expiry burst: {self.leases} leases renewed to one deadline in {self.renew_s:.2f} s"
            f" (their deadlines +{self.deadline_first_ms:.1f} .. +{self.deadline_last_ms:.1f} ms"
            f" after it; {self.lead_s:.1f} s to spare)",
            f"    ended: first +{self.first_end_s:.3f} s, half +{self.half_s:.3f} s,"
            f" all +{self.all_s:.3f} s after the deadline (documented: within about"
            f" {SWEEP_INTERVAL_S:g} s); ended early: {self.ended_early}",
            f"    {self.polls} polls of ?state=locked: p50 {self.poll_p50_ms:.2f} ms,"
            f" max {self.poll_max_ms:.2f} ms; probe meanwhile: lock p50 {p['lock_p50_ms']:.2f}"
            f" p99 {p['lock_p99_ms']:.2f} max {p['lock_max_ms']:.2f} ms ({p['cycles']:.0f}"
            f" cycles)  errors {self.errors}",
        ]


async def watch_expiry(
    port: int,
    prefix: str,
    probe_id: int,
    count: int,
    deadline: float,
    poll_s: float,
    timeout: float,
    probe_cycles_max: int,
) -> tuple[list[tuple[float, float, int]], list[float], Probe]:
    """Poll `GET /api/v2/resources?state=locked&limit=1` from before `deadline` until none
    of the `count` leases is left, with the probe cycling from the deadline on.

    Returns (sent, received, left) per poll in seconds from the deadline, the poll latencies
    and the probe. The probe's resource has the lowest id, so when it is locked it is the
    page's one resource: it is taken off the total.
    """
    offset = time.time() - time.monotonic()  # wall = monotonic + offset, for this run
    mono_deadline = deadline - offset
    conn = Connection(HOST, port)
    target = V2 + "/resources?state=locked&limit=1"
    samples: list[tuple[float, float, int]] = []
    poll_lat: list[float] = []
    stop = asyncio.Event()

    async def probe_from_deadline() -> Probe:
        await asyncio.sleep(max(0.0, mono_deadline - time.monotonic()))
        return await probe_cycles(port, prefix, probe_id, timeout, probe_cycles_max, stop)

    probe_task = asyncio.create_task(probe_from_deadline())
    try:
        async with asyncio.timeout(mono_deadline - time.monotonic() + timeout):
            while True:
                resp = await conn.request("GET", target)
                if resp.status != 200:
                    raise ValueError(f"GET {target} -> {resp.status}: {resp.body[:200]!r}")
                page = json.loads(resp.body)
                first = page["resources"][0]["id"] if page["resources"] else None
                left = int(page["total"]) - (1 if first == probe_id else 0)
                samples.append((resp.sent - mono_deadline, resp.received - mono_deadline, left))
                poll_lat.append(resp.received - resp.sent)
                if left <= 0 and resp.sent > mono_deadline:
                    break
                await asyncio.sleep(poll_s)
    finally:
        stop.set()
        conn.close()
        probe = await probe_task
    if not samples or samples[-1][2] > 0:
        probe.stats.error(f"{samples[-1][2] if samples else count} leases still locked")
    return samples, poll_lat, probe


async def expiry_burst(
    port: int, args: argparse.Namespace, leases: Sequence[Granted], lead_s: float
) -> Burst:
    """Renew `leases` to one deadline `lead_s` from now, then watch the sweep end them."""
    deadline = time.time() + lead_s
    t0 = time.monotonic()
    renew_stats = await renew_to(port, leases, deadline, args.connections, lead_s)
    renew_s = time.monotonic() - t0
    samples, poll_lat, probe = await watch_expiry(
        port,
        args.prefix,
        args.probe_id,
        len(leases),
        deadline,
        args.poll_ms / 1e3,
        args.expiry_timeout,
        args.probe_cycles,
    )
    count = len(leases)
    # A poll answered before the deadline saw the state of some moment before it: any lease
    # ended then ended early. Polls after it are judged by when they were sent (the state
    # is at least that recent), so the times below are never flattering.
    early = max((count - left for _, received, left in samples if received < 0), default=0)
    after = [(sent, left) for sent, _, left in samples if sent >= 0]

    def first_at(limit: int) -> float:
        return next((round(t, 3) for t, left in after if left <= limit), math.nan)

    curve: list[tuple[float, int]] = []
    for sent, left in after:
        if not curve or curve[-1][1] != left:
            curve.append((round(sent, 3), left))
    errors = renew_stats.errors + probe.stats.errors
    return Burst(
        leases=count,
        renew_s=round(renew_s, 3),
        deadline_first_ms=ms(renew_stats.op_latencies.get("deadline", []), 0),
        deadline_last_ms=ms(renew_stats.op_latencies.get("deadline", []), 100),
        lead_s=round(lead_s - renew_s, 2),
        ended_early=early,
        first_end_s=first_at(count - 1),
        half_s=first_at(count // 2),
        all_s=first_at(0),
        polls=len(samples),
        poll_p50_ms=ms(poll_lat, 50),
        poll_max_ms=ms(poll_lat, 100),
        probe=probe.summary(),
        errors=errors,
        error_samples=(renew_stats.error_samples + probe.stats.error_samples)[:MAX_SAMPLES],
        curve=curve,
    )


def cmd_sweep_cost(args: argparse.Namespace) -> int:
    """`sweep-cost`: the expiry sweep's cost with many resources and many live leases."""
    ids = list(range(args.first_id, args.first_id + args.leases))
    if ids and (ids[-1] > args.resources or args.probe_id in ids):
        raise SystemExit(
            f"leases: lease ids {ids[0]}..{ids[-1]} must lie within --resources"
            f" {args.resources} and leave out --probe-id {args.probe_id}"
        )
    phases: list[Phase] = []
    burst: Burst | None = None
    errors = 0
    with tempfile.TemporaryDirectory(prefix="leases-") as tmp:
        workdir = Path(tmp)
        descriptor = workdir / f"resources-{args.resources}.yml"
        t0 = time.monotonic()
        generate_descriptor(descriptor, args.resources)
        print(
            f"descriptor: {args.resources} resources written in {time.monotonic() - t0:.1f} s",
            flush=True,
        )
        with start_rentabot(args, descriptor, workdir, {}) as (server, ready_s):
            print(f"{args.target_name} ready after {ready_s:.1f} s", flush=True)
            phases.append(measure_phase("none", server, args, 0))
            print(phases[-1].line(), flush=True)

            t0 = time.monotonic()
            made, create_stats = asyncio.run(
                create_leases(server.port, ids, args.long_ttl, args.connections, 600)
            )
            create_s = time.monotonic() - t0
            errors += create_stats.errors
            print(
                f"created {len(made)} leases (ttl {args.long_ttl:g} s) in {create_s:.2f} s"
                f" ({len(made) / max(create_s, 1e-9):.0f}/s over {args.connections} connections,"
                f" acquire p50 {ms(create_stats.latencies, 50):.2f} ms)  errors"
                f" {create_stats.errors}",
                flush=True,
            )
            for text in create_stats.error_samples:
                print(f"    error: {text}")

            phases.append(measure_phase("live", server, args, len(made)))
            print(phases[-1].line(), flush=True)

            # Renewing takes about as long as creating did: leave twice that, plus a margin.
            lead = args.expiry_lead or max(3.0, 2 * create_s + 2.0)
            burst = asyncio.run(expiry_burst(server.port, args, list(made.values()), lead))
            errors += burst.errors
            for line in burst.lines():
                print(line, flush=True)
            for text in burst.error_samples:
                print(f"    error: {text}")

            phases.append(measure_phase("none-after", server, args, 0))
            print(phases[-1].line(), flush=True)
    errors += sum(p.errors for p in phases)
    for phase in phases:
        for text in phase.error_samples:
            print(f"    error ({phase.name}): {text}")
    none, live = phases[0].probe, phases[1].probe
    extra_cpu = phases[1].idle_cpu_exact_s - phases[0].idle_cpu_exact_s
    print(
        f"live/none: idle cpu x{ratio(phases[1].idle_cpu_exact_s, phases[0].idle_cpu_exact_s):.2f}"
        f" ({1e3 * extra_cpu / (args.idle_s / SWEEP_INTERVAL_S):+.2f} ms per sweep),"
        f" lock p50 x{ratio(live['lock_p50_ms'], none['lock_p50_ms']):.2f},"
        f" p99 x{ratio(live['lock_p99_ms'], none['lock_p99_ms']):.2f}"
    )
    payload = {
        "resources": args.resources,
        "ready_s": round(ready_s, 3),
        "create": {
            "leases": len(made),
            "seconds": round(create_s, 3),
            "errors": create_stats.errors,
        },
        "phases": [asdict(p) for p in phases],
        "burst": asdict(burst) if burst is not None else None,
    }
    return finish("sweep-cost", args, payload, errors == 0)


# =========================================================================== selfcheck


def selfcheck() -> list[str]:
    """Feed the fence checker known input; returns failures."""
    failures: list[str] = []

    def expect(name: str, got: object, want: object) -> None:
        if got != want:
            failures.append(f"{name}: got {got!r}, want {want!r}")

    good = [Hold(1, t, t + 1.0, t % 2, t + 1) for t in range(10)]
    expect("increasing fences", find_fence_problems(good)[0], 0)
    # Input order does not matter, only start order.
    expect("shuffled", find_fence_problems(list(reversed(good)))[0], 0)
    expect("repeated fence", find_fence_problems([*good, Hold(1, 10.0, 11.0, 3, 10)])[0], 1)
    expect("fence going back", find_fence_problems([*good, Hold(1, 10.0, 11.0, 3, 4)])[0], 1)
    # Fences are per resource; holds without one (v1) are not judged.
    other = [Hold(2, 0.5, 0.6, 5, 1), Hold(3, 0.5, 0.6, 5, None), Hold(3, 0.7, 0.8, 6, None)]
    expect("per resource", find_fence_problems([*good, *other])[0], 0)
    expect(
        "acquire body",
        json.loads(acquire_body([3], ttl=30, wait=5)),
        {"select": {"ids": [3]}, "ttl": 30, "wait": 5},
    )
    lease = b'{"lease": {"id": 7, "token": "t", "resources": [{"id": 3, "fence": 12}]}}'
    expect("parse lease", parse_lease(lease), Granted(7, "t", {3: 12}))
    return failures


def cmd_selfcheck(args: argparse.Namespace) -> int:
    """`selfcheck`: run `selfcheck()` and say so."""
    failures = selfcheck()
    for text in failures:
        print(f"FAIL {text}")
    if not failures:
        count, samples = find_fence_problems([Hold(1, 0.0, 1.0, 0, 5), Hold(1, 1.0, 2.0, 1, 5)])
        print(f"selfcheck: ok (a synthetic repeated fence gives fence problems: {count})")
        for text in samples:
            print(f"    FENCE {text}")
    return 1 if failures else 0


# =========================================================================== command line


def finish(mode: str, args: argparse.Namespace, payload: dict[str, Any], ok: bool) -> int:
    """Save the JSON document of an invocation, print where, and give the exit status."""
    document = {"mode": mode, "env": environment(), "args": vars(args) | {"func": None}, **payload}
    path = save_results(mode, document, Path(args.results_dir))
    print(f"results: {path}")
    if args.json:
        print(json.dumps(payload, indent=2, default=str))
    if not ok:
        print("FAILED: errors, overlaps or fence problems (see above)")
    return 0 if ok else 1


def build_parser() -> argparse.ArgumentParser:
    """The command line: grant-latency, ttl-mix, sweep-cost, selfcheck."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(
        prog="leases.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=fmt,
    )
    sub = parser.add_subparsers(dest="mode", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--prefix", default=PREFIX, help="v1 API path prefix")
    common.add_argument("--results-dir", default=str(RESULTS_DIR), help="where JSON goes")
    common.add_argument("--json", action="store_true", help="also print the JSON to stdout")
    common.add_argument(
        "--target-cmd",
        default="rentabot",
        help="server command template (loadgen's placeholders) or the alias rentabot",
    )
    common.add_argument("--target-name", default="rentabot", help="label of the server")
    common.add_argument(
        "--ready-timeout", type=float, default=600.0, help="seconds to wait for a 200"
    )

    p = sub.add_parser(
        "grant-latency", parents=[common], formatter_class=fmt, help="release -> waiter's grant"
    )
    p.add_argument("--samples", type=int, default=300, help="hand-offs measured")
    p.add_argument(
        "--settle-ms", type=float, default=20.0, help="pause between 'queued' and the release"
    )
    p.add_argument("--wait", type=float, default=30.0, help="the waiter's `wait` (s)")
    p.add_argument(
        "--long-poll", type=float, default=30.0, help="RENTABOT_LONG_POLL_SECONDS of the server"
    )
    p.add_argument("--resources", type=int, default=50, help="resources in the descriptor")
    p.add_argument("--request-timeout", type=float, default=40.0, help="seconds per step")
    p.set_defaults(func=cmd_grant_latency)

    p = sub.add_parser(
        "ttl-mix", parents=[common], formatter_class=fmt, help="ttl+renew vs plain, alternating"
    )
    p.add_argument("--clients", type=int, default=16, help="concurrent clients")
    p.add_argument("--procs", type=int, default=2, help="generator processes")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    p.add_argument("--rounds", type=int, default=3, help="plain/mix pairs, order alternating")
    p.add_argument("--max-cycles", type=int, default=100_000, help="cap per client")
    p.add_argument("--hold-ms", type=float, default=2.0, help="hold before renewing/releasing")
    p.add_argument("--backoff-ms", type=float, default=1.0, help="wait after a 409 busy")
    p.add_argument("--ttl", type=float, default=30.0, help="the mix's lease and renew ttl (s)")
    p.add_argument("--renews", type=int, default=1, help="renewals per mix cycle")
    p.add_argument("--resources", type=int, default=50, help="resources in the descriptor")
    p.set_defaults(func=cmd_ttl_mix)

    p = sub.add_parser(
        "sweep-cost", parents=[common], formatter_class=fmt, help="the expiry sweep at scale"
    )
    p.add_argument("--resources", type=int, default=100_000, help="resources in the descriptor")
    p.add_argument("--leases", type=int, default=10_000, help="live leases, one resource each")
    p.add_argument("--first-id", type=int, default=50_001, help="the first leased resource id")
    p.add_argument("--long-ttl", type=float, default=3600.0, help="ttl of the live leases (s)")
    p.add_argument("--connections", type=int, default=16, help="to create and renew them")
    p.add_argument("--idle-s", type=float, default=10.0, help="idle CPU measured over this")
    p.add_argument("--settle-s", type=float, default=1.0, help="pause before each idle period")
    p.add_argument("--probe-id", type=int, default=1, help="resource the probe locks (lowest)")
    p.add_argument("--probe-s", type=float, default=10.0, help="probe duration per phase")
    p.add_argument("--probe-cycles", type=int, default=20_000, help="probe cycle cap per phase")
    p.add_argument(
        "--expiry-lead",
        type=float,
        default=0.0,
        help="seconds from the start of the renewals to the common deadline (0: auto)",
    )
    p.add_argument("--poll-ms", type=float, default=20.0, help="pause between locked polls")
    p.add_argument(
        "--expiry-timeout", type=float, default=120.0, help="give up this long after the deadline"
    )
    p.set_defaults(func=cmd_sweep_cost)

    p = sub.add_parser("selfcheck", help="the fence checker on synthetic input")
    p.set_defaults(func=cmd_selfcheck)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the mode; the exit status is the mode's."""
    return run_mode("leases", build_parser().parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
