"""replicas: rentabot on PostgreSQL with several replicas (a benchmark, not a test).

Modes (see bench/README.md for how to read the output):

    throughput  loadgen's v1 workloads against SQLite (one process) and PostgreSQL with 1, 2
                and 3 replicas sharing one database, alternating, client i on replica i mod N;
                cycles/s and lock p50/p99 per deployment, each as a ratio to the first
                deployment listed (sqlite-1), with the overlap checker on
    wakeup      cross-replica wake-up: a release on replica A -> the answer of a waiter that
                long-polls on replica B, interleaved with the same hand-off on one replica
                (A = B) as the baseline

Built on loadgen.py (HTTP client, server start/stop, load runner, overlap checker, result
files) and leases.py (v2 helpers, fence checker). Every deployment gets a fresh PostgreSQL
schema (`bench_<random>`, dropped at the end) or a fresh SQLite file. Linux only (/proc).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from leases import (
    JSON_HEADER,
    LEASES,
    Granted,
    auth_header,
    cpu_seconds,
    find_fence_problems,
    find_overlap_texts,
    finish,
    ms,
    parse_lease,
    wait_queued,
)
from loadgen import (
    BENCH_DIR,
    HOST,
    NETWORK_ERRORS,
    PREFIX,
    RESULTS_DIR,
    WORKLOAD_NAMES,
    ClientStats,
    Connection,
    Hold,
    Response,
    RunResult,
    Server,
    ServerSpec,
    generate_descriptor,
    http_get_json,
    make_config,
    preflight,
    print_problems,
    ratio,
    run_load,
    run_mode,
    workload_list,
)

#: The PostgreSQL of this machine (trust auth); a fresh schema of it per deployment.
POSTGRES_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"
#: A replica on PostgreSQL: loadgen's rentabot command with the database URL appended.
PG_CMD = "{venv}/bin/rentabot serve --host {host} --port {port} --descriptor {descriptor}"
DEFAULT_DEPLOYMENTS = "sqlite-1,pg-1,pg-2,pg-3"
HEALTH = "/healthz"
#: Machine busy at or above this fraction of its cores: the run was CPU-bound.
SATURATED = 0.9
#: Client numbers of the wake-up hand-offs' holds, for the overlap checker's reports.
HOLDER, WAITER = 0, 1


# =========================================================================== deployments


@dataclass(frozen=True)
class Deployment:
    """One way of running rentabot: SQLite in one process, or N PostgreSQL replicas."""

    name: str  # sqlite-1, pg-2, ...
    backend: str  # "sqlite" or "postgresql"
    replicas: int

    def __str__(self) -> str:
        return self.name  # also how the JSON's args show it


def deployment_list(text: str) -> list[Deployment]:
    """A comma-separated list of `sqlite-1` and `pg-N` (N replicas, 1..16)."""
    out: list[Deployment] = []
    for word in (w.strip() for w in text.split(",")):
        if not word:
            continue
        match = re.fullmatch(r"(sqlite|pg)-(\d+)", word)
        if match is None:
            raise argparse.ArgumentTypeError(f"{word!r}: deployments are sqlite-1 or pg-N")
        backend, replicas = match[1], int(match[2])
        if backend == "sqlite" and replicas != 1:
            raise argparse.ArgumentTypeError("SQLite is measured as one process: sqlite-1")
        if not 1 <= replicas <= 16:
            raise argparse.ArgumentTypeError(f"{word!r}: 1 to 16 replicas")
        dep = Deployment(word, "postgresql" if backend == "pg" else "sqlite", replicas)
        if dep in out:
            raise argparse.ArgumentTypeError(f"{word!r} is listed twice")
        out.append(dep)
    if not out:
        raise argparse.ArgumentTypeError("no deployment given")
    return out


def libpq_url(url: str) -> str:
    """A SQLAlchemy `postgresql+psycopg://` URL as psycopg's own conninfo URL."""
    return re.sub(r"^postgresql\+\w+://", "postgresql://", url)


@contextlib.contextmanager
def postgres_schema(url: str) -> Iterator[tuple[str, str]]:
    """A fresh schema `bench_<random>`, dropped afterwards; yields (schema, the URL whose
    connections use it as their search path)."""
    try:
        import psycopg
    except ImportError:
        raise SystemExit(
            "replicas: psycopg is missing (pip install 'rentabot[postgres]')"
        ) from None
    conninfo = libpq_url(url)
    schema = f"bench_{secrets.token_hex(6)}"

    def execute(sql: str) -> None:
        # Bounded: a connect or a statement that hangs (a lock held by someone) fails instead.
        with psycopg.connect(
            conninfo, autocommit=True, connect_timeout=5, options="-c statement_timeout=30000"
        ) as connection:
            connection.execute(sql)

    try:
        execute(f"CREATE SCHEMA {schema}")
    except psycopg.Error as error:
        raise SystemExit(f"replicas: cannot create a schema in {url}: {error}") from None
    separator = "&" if "?" in url else "?"
    try:
        yield schema, f"{url}{separator}options=-csearch_path%3D{schema}"
    finally:
        try:
            execute(f"DROP SCHEMA {schema} CASCADE")
        except psycopg.Error as error:
            print(f"replicas: warning: could not drop schema {schema}: {error}", file=sys.stderr)


def literal(word: str) -> str:
    """A word for a loadgen command template: quoted for shlex, braces escaped for format."""
    return shlex.quote(word).replace("{", "{{").replace("}", "}}")


def wait_notified(server: Server, timeout: float) -> dict[str, Any]:
    """Poll /healthz until the replica listens for other replicas' grants; its answer."""
    limit = time.monotonic() + timeout
    while True:
        about: dict[str, Any] = http_get_json(HOST, server.port, HEALTH)
        if about.get("wakeups") != "polling" or time.monotonic() > limit:
            return about
        time.sleep(0.02)


@contextlib.contextmanager
def running_deployment(
    dep: Deployment,
    descriptor: Path,
    workdir: Path,
    args: argparse.Namespace,
    env: dict[str, str] | None = None,
) -> Iterator[list[Server]]:
    """Start the servers of a deployment on a fresh database; stop them (and drop the
    schema) afterwards, also on an error or Ctrl-C.

    PostgreSQL: the first replica starts alone (it creates the schema's tables and syncs
    the descriptor), then the others together; each is ready once /healthz answers 200 and
    says its wake-up listener is connected.
    """
    with contextlib.ExitStack() as stack:
        if dep.backend == "postgresql":
            _, url = stack.enter_context(postgres_schema(args.postgres_url))
            cmd = f"{PG_CMD} --database {literal(url)}"
        else:
            cmd = "rentabot"  # loadgen's alias: sqlite:///{tmpdir}/bench.db, a fresh file
        servers: list[Server] = []
        stack.callback(stop_all, servers)  # runs before the schema is dropped
        for k in range(dep.replicas):
            server = Server(ServerSpec(f"{dep.name}.{k}", cmd), descriptor, BENCH_DIR, workdir, env)
            while server.port in {s.port for s in servers}:  # two free ports may coincide
                server = Server(server.spec, descriptor, BENCH_DIR, workdir, env)
            servers.append(server)
        servers[0].start()
        servers[0].wait_ready(HEALTH, args.ready_timeout)
        for server in servers[1:]:
            server.start()
        for server in servers:
            server.wait_ready(HEALTH, args.ready_timeout)
            if dep.backend == "postgresql":
                about = wait_notified(server, args.ready_timeout)
                if about.get("wakeups") != "notified":
                    print(f"replicas: warning: {server.spec.name} reports {about}", file=sys.stderr)
        yield servers


def stop_all(servers: Sequence[Server]) -> None:
    """Stop every server (each one's process group), whatever happens to the others."""
    for server in servers:
        with contextlib.suppress(Exception):
            server.stop()


# =========================================================================== CPU accounting


def proc_stat_fields(pid: int | str) -> list[str] | None:
    """/proc/<pid>/stat after the command name (state is [0], utime [11]), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def postgres_ticks() -> int:
    """utime+stime+cutime+cstime of every `postgres` process (the postmaster's cutime holds
    the backends that exited), in clock ticks. Whoever they serve: other users count too."""
    ticks = 0
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            comm = Path(entry.path, "comm").read_text().strip()
        except OSError:
            continue
        if comm != "postgres":
            continue
        fields = proc_stat_fields(entry.name)
        if fields is not None:
            ticks += sum(int(f) for f in fields[11:15])
    return ticks


def machine_busy_ticks() -> int:
    """Busy clock ticks of all CPUs (/proc/stat: everything but idle and iowait)."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = values[:8]
    return user + nice + system + irq + softirq + steal


@dataclass
class Cpu:
    """CPU seconds at one moment (or, as a difference, over a window)."""

    at: float
    replicas: float
    postgres: float
    generator: float  # this process and its reaped children: the generator processes
    machine: float

    @classmethod
    def now(cls, servers: Sequence[Server]) -> Cpu:
        """Read them all."""
        tick = os.sysconf("SC_CLK_TCK")
        own = os.times()
        replicas = sum(cpu_seconds(s.proc.pid)[0] for s in servers if s.proc is not None)
        return cls(
            at=time.monotonic(),
            replicas=replicas,
            postgres=postgres_ticks() / tick,
            generator=own.user + own.system + own.children_user + own.children_system,
            machine=machine_busy_ticks() / tick,
        )

    def cores_since(self, before: Cpu) -> dict[str, float]:
        """Average cores busy in each part between `before` and this reading."""
        wall = max(self.at - before.at, 1e-9)
        parts = {
            "replicas": (self.replicas - before.replicas) / wall,
            "postgres": (self.postgres - before.postgres) / wall,
            "generator": (self.generator - before.generator) / wall,
        }
        machine = (self.machine - before.machine) / wall
        # Whatever else ran meanwhile (on a shared machine: someone else's tests).
        parts["other"] = max(0.0, machine - sum(parts.values()))
        parts["machine"] = machine
        return {k: round(v, 2) for k, v in parts.items()}


def cpu_line(cores: dict[str, float]) -> str:
    """The CPU line of a measurement."""
    cpus = os.cpu_count() or 1
    return (
        f"    cpu (cores): replicas {cores['replicas']:.2f}  postgres {cores['postgres']:.2f}"
        f"  generator {cores['generator']:.2f}  other {cores['other']:.2f}"
        f"  machine {cores['machine']:.2f} of {cpus} busy"
    )


# =========================================================================== throughput


@dataclass
class Measurement:
    """One load run on one deployment."""

    round: int
    deployment: str
    replicas: int
    ports: list[int]
    result: RunResult
    cpu_cores: dict[str, float]


def measure(
    dep: Deployment,
    workload: str,
    rnd: int,
    descriptor: Path,
    workdir: Path,
    args: argparse.Namespace,
) -> Measurement:
    """Start the deployment, run the workload over its replicas, stop it."""
    with running_deployment(dep, descriptor, workdir, args) as servers:
        ports = tuple(s.port for s in servers)
        cfg = replace(make_config(args, workload, HOST, ports[0]), ports=ports)
        preflight(cfg)
        before = Cpu.now(servers)
        result = run_load(cfg, server=dep.name)
        cores = Cpu.now(servers).cores_since(before)
    return Measurement(rnd, dep.name, dep.replicas, list(ports), result, cores)


def summarize(
    runs: dict[str, list[Measurement]], deployments: Sequence[Deployment]
) -> dict[str, Any]:
    """Per workload and deployment: medians over rounds, and ratios to the baseline (the
    first deployment) as medians of the per-round ratios."""
    base = deployments[0].name
    out: dict[str, Any] = {}
    for workload, measurements in runs.items():
        rounds: dict[int, dict[str, RunResult]] = {}
        for m in measurements:
            rounds.setdefault(m.round, {})[m.deployment] = m.result
        entry: dict[str, Any] = {}
        for dep in deployments:
            mine = [m for m in measurements if m.deployment == dep.name]
            if not mine:
                continue
            rs = [m.result for m in mine]
            pairs = [(r[dep.name], r[base]) for r in rounds.values() if dep.name in r and base in r]
            cps_ratios = [ratio(a.cycles_per_s, b.cycles_per_s) for a, b in pairs]
            p50_ratios = [ratio(a.lock_p50_ms, b.lock_p50_ms) for a, b in pairs]
            p99_ratios = [ratio(a.lock_p99_ms, b.lock_p99_ms) for a, b in pairs]
            entry[dep.name] = {
                "replicas": dep.replicas,
                "cycles_per_s_median": round(statistics.median(r.cycles_per_s for r in rs), 1),
                "lock_p50_ms_median": round(statistics.median(r.lock_p50_ms for r in rs), 3),
                "lock_p99_ms_median": round(statistics.median(r.lock_p99_ms for r in rs), 3),
                "ratio_cycles_per_s_median": median_or_nan(cps_ratios),
                "ratio_lock_p50_median": median_or_nan(p50_ratios),
                "ratio_lock_p99_median": median_or_nan(p99_ratios),
                "ratios_cycles_per_s": [round(x, 4) for x in cps_ratios],
                "machine_cores_busy_median": round(
                    statistics.median(m.cpu_cores["machine"] for m in mine), 2
                ),
                "other_cores_median": round(
                    statistics.median(m.cpu_cores["other"] for m in mine), 2
                ),
                "busy": sum(r.busy for r in rs),
                "errors": sum(r.errors for r in rs),
                "overlaps": sum(r.overlaps for r in rs),
            }
        out[workload] = entry
    return out


def median_or_nan(values: Sequence[float]) -> float:
    """The median rounded to 4 places, NaN for no value."""
    return round(statistics.median(values), 4) if values else float("nan")


def print_throughput_summary(summary: dict[str, Any], base: str) -> None:
    """The medians table: one row per workload and deployment."""
    cpus = os.cpu_count() or 1
    print(
        f"{'workload':<15} {'deployment':<10} {'cycles/s':>9} {'x ' + base:>10}"
        f" {'p50':>7} {'x p50':>6} {'p99':>7} {'x p99':>6} {'cpu busy':>8} {'other':>5}"
        f"  busy errors overlaps"
    )
    saturated: list[str] = []
    for workload, entry in summary.items():
        for name, e in entry.items():
            print(
                f"{workload:<15} {name:<10} {e['cycles_per_s_median']:9.1f}"
                f" {e['ratio_cycles_per_s_median']:10.3f}"
                f" {e['lock_p50_ms_median']:7.2f} {e['ratio_lock_p50_median']:6.2f}"
                f" {e['lock_p99_ms_median']:7.2f} {e['ratio_lock_p99_median']:6.2f}"
                f" {e['machine_cores_busy_median']:5.2f}/{cpus} {e['other_cores_median']:5.2f}"
                f"  {e['busy']:4d} {e['errors']:6d} {e['overlaps']:8d}"
            )
            if e["machine_cores_busy_median"] >= SATURATED * cpus:
                saturated.append(
                    f"{workload} {name} ({e['other_cores_median']:.2f} cores of it not ours)"
                )
    print(
        f"(medians over rounds; x {base}: median of the per-round ratios to {base};"
        " p50/p99: lock latency, ms; cpu busy: cores busy on the whole machine; other: cores"
        " of it that were none of ours)"
    )
    if saturated:
        print(
            f"note: CPU-bound (>= {SATURATED:.0%} of the {cpus} cores busy) in: "
            + ", ".join(saturated)
            + "; there PostgreSQL, the replicas, the load generator (and anyone else) compete"
            " for the cores"
        )


def cmd_throughput(args: argparse.Namespace) -> int:
    """`throughput`: every deployment, alternating, per workload and round."""
    deployments: list[Deployment] = args.deployments
    base = deployments[0].name
    needed = max(args.clients, args.contended_resources)
    if args.resources < needed:
        raise SystemExit(f"replicas: --resources must be at least {needed}")
    runs: dict[str, list[Measurement]] = {w: [] for w in args.workloads}
    ok = True
    with tempfile.TemporaryDirectory(prefix="replicas-") as tmp:
        workdir = Path(tmp)
        descriptor = workdir / f"resources-{args.resources}.yml"
        generate_descriptor(descriptor, args.resources)
        for rnd in range(1, args.rounds + 1):
            # Reversed every other round: over two rounds every deployment has the same
            # mean position, so a drift of the machine favours none of them.
            order = deployments if rnd % 2 else deployments[::-1]
            for workload in args.workloads:
                this_round: dict[str, RunResult] = {}
                for dep in order:
                    m = measure(dep, workload, rnd, descriptor, workdir, args)
                    runs[workload].append(m)
                    this_round[dep.name] = m.result
                    ok = ok and m.result.ok
                    print(f"round {rnd}  {m.result.line()}", flush=True)
                    print(cpu_line(m.cpu_cores), flush=True)
                    print_problems(m.result)
                if base in this_round:
                    b = this_round[base]
                    for dep in deployments[1:]:
                        r = this_round[dep.name]
                        print(
                            f"round {rnd}  {workload:<15} {dep.name}/{base}"
                            f" cycles/s = {ratio(r.cycles_per_s, b.cycles_per_s):.3f}"
                            f"  lock p99 x{ratio(r.lock_p99_ms, b.lock_p99_ms):.2f}",
                            flush=True,
                        )
    summary = summarize(runs, deployments)
    print()
    print_throughput_summary(summary, base)
    payload = {
        "deployments": [asdict(d) for d in deployments],
        "baseline": base,
        "summary": summary,
        # Every measurement, with its RunResult and its CPU split.
        "runs": {w: [asdict(m) for m in measurements] for w, measurements in runs.items()},
    }
    return finish("replicas-throughput", args, payload, ok)


# =========================================================================== wakeup


@dataclass
class WakeLog:
    """What the hand-offs of one kind (cross or same replica) observed, in seconds."""

    stats: ClientStats = field(default_factory=ClientStats)  # errors and holds
    after_release_answer: list[float] = field(default_factory=list)  # A's DELETE answer -> B's
    after_release_sent: list[float] = field(default_factory=list)  # A's DELETE sent -> B's
    release: list[float] = field(default_factory=list)  # A's DELETE sent -> its answer
    queued: list[float] = field(default_factory=list)  # B's POST sent -> ticket seen
    waiter_first: int = 0  # B's answer read before A's DELETE answer


@dataclass
class WakeResult:
    """The report of one kind of hand-off."""

    kind: str  # "cross" or "same"
    holder_port: int
    waiter_port: int
    samples: int
    p50_ms: float  # waiter's answer read - holder's DELETE answer read
    p99_ms: float
    max_ms: float
    from_sent_p50_ms: float  # waiter's answer read - holder's DELETE sent
    from_sent_p99_ms: float
    release_p50_ms: float
    queued_p50_ms: float
    waiter_first: int
    errors: int
    overlaps: int
    fence_problems: int
    error_samples: list[str]
    latencies_ms: list[float] = field(repr=False)

    def lines(self) -> list[str]:
        """The text report."""
        where = "A -> B" if self.kind == "cross" else "A -> A"
        return [
            f"wakeup {self.kind:<5} ({where}): {self.samples} hand-offs"
            f"  waiter's answer after the release's answer p50 {self.p50_ms:.2f} ms"
            f"  p99 {self.p99_ms:.2f} ms  max {self.max_ms:.2f} ms",
            f"    release sent -> waiter's answer p50 {self.from_sent_p50_ms:.2f} ms"
            f" p99 {self.from_sent_p99_ms:.2f} ms; release answered in p50"
            f" {self.release_p50_ms:.2f} ms; waiter answered first in"
            f" {self.waiter_first}/{self.samples}; queued after p50 {self.queued_p50_ms:.2f} ms"
            f"  errors {self.errors}  overlaps: {self.overlaps}"
            f"  fence problems: {self.fence_problems}",
        ]


def names_body(name: str, wait: float = 0.0) -> bytes:
    """`POST /api/v2/leases` selecting one resource by name, waiting `wait` s if held."""
    body: dict[str, Any] = {"select": {"names": [name]}}
    if wait:
        body["wait"] = wait
    return json.dumps(body).encode()


async def release(conn: Connection, lease: Granted) -> Response:
    """`DELETE /api/v2/leases/{id}` with the lease's token."""
    return await conn.request("DELETE", f"{LEASES}/{lease.lease_id}", b"", auth_header(lease.token))


async def one_handoff(
    kind: str,
    holder: Connection,
    waiter: Connection,
    observer: Connection,
    name: str,
    args: argparse.Namespace,
    log: WakeLog,
) -> bool:
    """Holder acquires; the waiter long-polls; once it is queued (and settled) the holder
    releases; the waiter's 201 is timed against the release; then the waiter releases.
    False when something went wrong (counted as an error)."""
    stats = log.stats
    acq = await holder.request("POST", LEASES, names_body(name), JSON_HEADER)
    if acq.status != 201:
        stats.error(f"{kind}: holder's acquire -> {acq.status}: {acq.body[:200]!r}")
        return False
    held = parse_lease(acq.body)
    pending = asyncio.create_task(
        waiter.request("POST", LEASES, names_body(name, args.wait), JSON_HEADER)
    )
    try:
        sent = time.monotonic()
        queued = await wait_queued(observer, pending, sent, args.request_timeout)
        if queued is None:
            stats.error(f"{kind}: the waiter was never seen in the queue (or answered at once)")
            # Let go of the resource so that the waiter, if it was granted, can be released.
            await release(holder, held)
            return False
        log.queued.append(queued)
        # As grant-latency: let the waiter's request finish parking before the release.
        await asyncio.sleep(args.settle_ms / 1e3)
        rel = await release(holder, held)
        for rid, fence in held.fences.items():
            stats.holds.append(Hold(rid, acq.received, rel.sent, HOLDER, fence))
        if rel.status != 200:
            stats.error(f"{kind}: release -> {rel.status}: {rel.body[:200]!r}")
            return False
        answer = await pending
    finally:
        if not pending.done():
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
    if answer.status != 201:
        stats.error(f"{kind}: waiter -> {answer.status}: {answer.body[:200]!r}")
        return False
    log.after_release_answer.append(answer.received - rel.received)
    log.after_release_sent.append(answer.received - rel.sent)
    log.release.append(rel.received - rel.sent)
    if answer.received < rel.received:
        log.waiter_first += 1
    got = parse_lease(answer.body)
    own = await release(waiter, got)
    for rid, fence in got.fences.items():
        stats.holds.append(Hold(rid, answer.received, own.sent, WAITER, fence))
    if own.status != 200:
        stats.error(f"{kind}: waiter's release -> {own.status}: {own.body[:200]!r}")
        return False
    if set(got.fences) != set(held.fences):
        stats.error(f"{kind}: the waiter got {sorted(got.fences)}, not {sorted(held.fences)}")
    return True


async def wakeup_handoffs(port_a: int, port_b: int, args: argparse.Namespace) -> dict[str, WakeLog]:
    """`--samples` hand-offs of each kind, interleaved (cross, same, same, cross, ...)."""
    logs = {"cross": WakeLog(), "same": WakeLog()}
    holder = Connection(HOST, port_a)
    waiters = {"cross": Connection(HOST, port_b), "same": Connection(HOST, port_a)}
    observer = Connection(HOST, port_a)
    conns = [holder, *waiters.values(), observer]
    limit = time.monotonic() + args.time_limit
    try:
        for conn in conns:
            await conn.connect()
        for i in range(args.samples):
            kinds = ("cross", "same") if i % 2 == 0 else ("same", "cross")
            for kind in kinds:
                if time.monotonic() > limit:
                    logs[kind].stats.error(
                        f"{kind}: --time-limit {args.time_limit:g} s reached after"
                        f" {len(logs[kind].after_release_answer)} samples"
                    )
                    return logs
                try:
                    async with asyncio.timeout(args.request_timeout):
                        done = await one_handoff(
                            kind, holder, waiters[kind], observer, args.resource, args, logs[kind]
                        )
                except (*NETWORK_ERRORS, TimeoutError, ValueError, KeyError, TypeError) as exc:
                    logs[kind].stats.error(f"{kind}: {type(exc).__name__}: {exc}")
                    done = False
                if not done:
                    return logs  # the resource's state is unknown now: stop here
    finally:
        for conn in conns:
            conn.close()
    return logs


def wake_result(kind: str, port_a: int, port_b: int, log: WakeLog) -> WakeResult:
    """The figures of one kind of hand-off, with the overlap and fence checks."""
    overlaps, _ = find_overlap_texts(log.stats.holds)
    fences, _ = find_fence_problems(log.stats.holds)
    lat = log.after_release_answer
    return WakeResult(
        kind=kind,
        holder_port=port_a,
        waiter_port=port_b if kind == "cross" else port_a,
        samples=len(lat),
        p50_ms=ms(lat, 50),
        p99_ms=ms(lat, 99),
        max_ms=ms(lat, 100),
        from_sent_p50_ms=ms(log.after_release_sent, 50),
        from_sent_p99_ms=ms(log.after_release_sent, 99),
        release_p50_ms=ms(log.release, 50),
        queued_p50_ms=ms(log.queued, 50),
        waiter_first=log.waiter_first,
        errors=log.stats.errors,
        overlaps=overlaps,
        fence_problems=fences,
        error_samples=log.stats.error_samples,
        latencies_ms=[round(v * 1e3, 3) for v in lat],
    )


def cmd_wakeup(args: argparse.Namespace) -> int:
    """`wakeup`: release on A -> waiter's answer on B, against A = B, interleaved."""
    dep = Deployment("pg-2", "postgresql", 2)
    # The waiter must still be inside its first request when the grant comes.
    env = {"RENTABOT_LONG_POLL_SECONDS": f"{min(600.0, args.wait + 10):g}"}
    with tempfile.TemporaryDirectory(prefix="replicas-") as tmp:
        workdir = Path(tmp)
        descriptor = workdir / "resources.yml"
        generate_descriptor(descriptor, args.resources)
        with running_deployment(dep, descriptor, workdir, args, env) as servers:
            port_a, port_b = servers[0].port, servers[1].port
            before = Cpu.now(servers)
            logs = asyncio.run(wakeup_handoffs(port_a, port_b, args))
            cores = Cpu.now(servers).cores_since(before)
            health_after = [http_get_json(HOST, s.port, HEALTH) for s in servers]
    results = {kind: wake_result(kind, port_a, port_b, log) for kind, log in logs.items()}
    for result in results.values():
        for line in result.lines():
            print(line)
        for text in result.error_samples:
            print(f"    error: {text}")
    print(cpu_line(cores))
    cross, same = results["cross"], results["same"]
    print(
        f"wakeup cross/same: p50 x{ratio(cross.p50_ms, same.p50_ms):.2f}"
        f" ({cross.p50_ms - same.p50_ms:+.2f} ms)"
        f"  p99 x{ratio(cross.p99_ms, same.p99_ms):.2f} ({cross.p99_ms - same.p99_ms:+.2f} ms)"
        f"  max x{ratio(cross.max_ms, same.max_ms):.2f}"
        f"  (release sent -> answer: p50"
        f" x{ratio(cross.from_sent_p50_ms, same.from_sent_p50_ms):.2f}"
        f" ({cross.from_sent_p50_ms - same.from_sent_p50_ms:+.2f} ms))"
    )
    for about in health_after:
        if about.get("wakeups") != "notified":
            print(f"replicas: warning: after the run a replica reports {about}")
    ok = (
        all(r.errors == 0 and r.overlaps == 0 and r.fence_problems == 0 for r in results.values())
        and cross.samples > 0
        and same.samples > 0
    )
    payload = {
        "results": {k: asdict(r) for k, r in results.items()},
        "cpu_cores": cores,
        "health_after": health_after,
    }
    return finish("replicas-wakeup", args, payload, ok)


# =========================================================================== command line


def build_parser() -> argparse.ArgumentParser:
    """The command line: throughput, wakeup."""
    fmt = argparse.ArgumentDefaultsHelpFormatter
    parser = argparse.ArgumentParser(
        prog="replicas.py",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=fmt,
    )
    sub = parser.add_subparsers(dest="mode", required=True)

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--results-dir", default=str(RESULTS_DIR), help="where JSON goes")
    common.add_argument("--json", action="store_true", help="also print the JSON to stdout")
    common.add_argument(
        "--postgres-url",
        default=POSTGRES_URL,
        help="SQLAlchemy URL of the PostgreSQL database; each deployment gets a fresh schema"
        " bench_<random> in it, dropped at the end",
    )
    common.add_argument(
        "--ready-timeout",
        type=float,
        default=120.0,
        help="seconds for each server to answer 200 on /healthz (and to listen)",
    )

    p = sub.add_parser(
        "throughput",
        parents=[common],
        formatter_class=fmt,
        help="cycles/s on SQLite and on 1-3 PostgreSQL replicas",
        description="loadgen's v1 workloads against each deployment, alternating;"
        " client i on replica i mod N. Ratios are to the first deployment listed.",
    )
    p.add_argument(
        "--deployments",
        type=deployment_list,
        default=DEFAULT_DEPLOYMENTS,
        help="comma list of sqlite-1 and pg-N (N replicas on one PostgreSQL schema);"
        " the first is the baseline of the ratios",
    )
    p.add_argument(
        "--workloads",
        type=workload_list,
        default="uncontended-id",
        help="comma list of " + ", ".join(WORKLOAD_NAMES) + ", or all",
    )
    p.add_argument("--rounds", type=int, default=2, help="passes over every deployment")
    p.add_argument("--clients", type=int, default=16, help="concurrent clients")
    p.add_argument("--procs", type=int, default=2, help="generator processes")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    p.add_argument("--max-cycles", type=int, default=100_000, help="cap per client")
    p.add_argument("--hold-ms", type=float, default=2.0, help="hold before unlocking")
    p.add_argument("--backoff-ms", type=float, default=1.0, help="wait after a 403 busy")
    p.add_argument("--contended-resources", type=int, default=2, help="shared ids (contended-id)")
    p.add_argument("--tag", default="any", help="tag locked by the tag workload")
    p.add_argument("--resources", type=int, default=50, help="resources in the descriptor")
    p.add_argument("--prefix", default=PREFIX, help="v1 API path prefix")
    p.set_defaults(func=cmd_throughput)

    p = sub.add_parser(
        "wakeup",
        parents=[common],
        formatter_class=fmt,
        help="release on replica A -> waiter's answer on replica B",
        description="Two PostgreSQL replicas A and B on one schema. Each sample: a holder"
        " leases the resource on A, a waiter long-polls for it on B (cross) or on A (same),"
        " then A releases it; the two kinds are interleaved.",
    )
    p.add_argument("--samples", type=int, default=200, help="hand-offs of each kind")
    p.add_argument("--resource", default="board-000001", help="the resource's name")
    p.add_argument("--wait", type=float, default=20.0, help="the waiter's `wait` (s)")
    p.add_argument(
        "--settle-ms", type=float, default=20.0, help="pause between 'queued' and the release"
    )
    p.add_argument(
        "--request-timeout", type=float, default=40.0, help="seconds for one whole hand-off"
    )
    p.add_argument(
        "--time-limit",
        type=float,
        default=300.0,
        help="stop sampling (and fail) after this many seconds of hand-offs",
    )
    p.add_argument("--resources", type=int, default=10, help="resources in the descriptor")
    p.set_defaults(func=cmd_wakeup)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line and run the mode; the exit status is the mode's."""
    return run_mode("replicas", build_parser().parse_args(argv), "servers stopped, schemas dropped")


if __name__ == "__main__":
    sys.exit(main())
