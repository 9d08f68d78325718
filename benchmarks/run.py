#!/usr/bin/env python3
"""Benchmark hayhooks against a plain FastAPI app and the published Hayhooks 2.1.0, side by side.

Each scenario starts the servers it needs on free 127.0.0.1 ports, each in its own process group
(always stopped again), measures, and reports ratios taken in the same run, as TARGETS.md asks:

    overhead     POST /echo/run req/s: ours vs plain FastAPI vs published Hayhooks, 1 and 2 workers
    propagation  a file change in the pipelines directory until each of 4 workers answers with it
    redeploy     redeploys through POST /deploy_files while clients call the pipeline; failed calls
    scaling      cpu_heavy req/s with 2 workers vs 1, ours and published Hayhooks
    deploy       deploy a new pipeline through one of 4 workers, until every worker serves it

Usage (stdlib only: run it with any Python 3.11+; the servers run from their own venvs)::

    benchmarks/setup_reference.sh                                # once: wrk + benchmarks/.reference-venv
    python benchmarks/run.py                                     # every scenario
    python benchmarks/run.py overhead scaling --repeats 1        # a selection
    python benchmarks/run.py --reference-venv /tmp/refvenv       # an existing hayhooks==2.1.0 venv

Prints Markdown and writes ``benchmarks/results/latest.md`` and ``benchmarks/results/latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
sys.path.insert(0, str(REPO))  # hayhooks.bench is standard-library only: any Python 3.11 can run this file

from hayhooks.bench.server import (  # noqa: E402
    CLOCK_TICKS,
    HOST,
    children,
    cpu_ticks,
    free_port,
    machine_busy_seconds,
    wait_until,
)

EXAMPLES = REPO / "examples" / "pipelines"
WRK_SCRIPT = BENCH_DIR / "post_json.lua"
REFERENCE_VERSION = "2.1.0"
SCENARIOS = ("overhead", "propagation", "redeploy", "scaling", "deploy")
ECHO_BODY = {"text": "ping"}
CPU_BODY: dict[str, Any] = {}
PROBE = "probe"  # the pipeline that the propagation, redeploy and deploy scenarios change
START_TIMEOUT = 180.0
KINDS = ("plain", "ours", "reference")  # the servers of the overhead scenario, in table order
NOISY_LOAD = 0.10  # more CPU than this used by other processes during a measurement makes it suspect


@dataclass(frozen=True)
class Options:
    """How a run is configured (see ``parse_args`` for what each field means)."""

    scenarios: tuple[str, ...]
    venv: Path
    reference_venv: Path
    duration: int
    warmup: int
    connections: int
    repeats: int
    changes: int
    redeploys: int
    redeploy_pause: float
    clients: int
    deploys: int
    settle_timeout: float
    poll_concurrency: int
    results: Path
    scratch: Path


def log(message: str) -> None:
    """Progress, on stderr; the report goes to stdout."""
    print(message, file=sys.stderr, flush=True)


# --- a tiny HTTP/1.1 client: one fresh connection per request ---------------------------------------


@dataclass
class Reply:
    """One HTTP answer; ``status == 0`` and ``error`` set when there was none."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str = ""

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


async def http(port: int, method: str, path: str, payload: Any = None, timeout: float = 10.0) -> Reply:
    """Send one request on a new connection (``Connection: close``) and read the whole answer.

    A fresh connection per request lets the kernel hand each one to any worker, as a new client would.
    """
    data = b"" if payload is None else json.dumps(payload).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
    except (OSError, TimeoutError) as error:
        return Reply(0, error=f"connect: {type(error).__name__} {error}".strip())
    try:
        writer.write(head + data)
        raw = await asyncio.wait_for(reader.read(), timeout)
    except (OSError, TimeoutError) as error:
        return Reply(0, error=f"read: {type(error).__name__} {error}".strip())
    finally:
        writer.close()
    return _parse_reply(raw)


def _parse_reply(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return Reply(0, error=f"no HTTP answer: {raw[:60]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(parts[1]), headers, body)


def fetch(port: int, method: str, path: str, payload: Any = None, timeout: float = 5.0) -> Reply:
    """``http`` for synchronous callers."""
    return asyncio.run(http(port, method, path, payload, timeout))


# --- processes ------------------------------------------------------------------------------------


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


_LIVE: set[Server] = set()  # every server started and not yet stopped


def stop_all() -> None:
    """Stop every server still running (at exit and on SIGTERM)."""
    for server in list(_LIVE):
        server.stop()


class Server:
    """One server's process tree, in its own process group, listening on ``port``."""

    def __init__(
        self,
        kind: str,
        workers: int,
        port: int,
        argv: list[str],
        env: dict[str, str],
        not_ready: Callable[[Server], str],
        *,
        scratch: Path,
        pipelines: Path | None = None,
    ) -> None:
        self.kind = kind
        self.workers = workers
        self.port = port
        self.argv = argv
        self.env = env
        self.pipelines = pipelines
        self.log = scratch / f"{kind}-{workers}w-{port}.log"
        self._cwd = scratch
        self._not_ready = not_ready
        self._waiting_for = "the process to start"
        self.process: subprocess.Popen | None = None

    @property
    def label(self) -> str:
        return f"{self.kind} ({self.workers} worker{'s' if self.workers > 1 else ''})"

    def launch(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=self.env, cwd=self._cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        _LIVE.add(self)

    def wait_ready(self, timeout: float) -> None:
        """Wait until every worker is up and serves, then until the start-up CPU burst is over."""
        if not wait_until(self._serving, timeout, interval=0.25):
            raise RuntimeError(
                f"{self.label} not ready after {timeout:.0f}s, still waiting for {self._waiting_for};"
                f" log tail:\n{self.log_tail()}"
            )
        self.wait_idle()

    def _serving(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"{self.label} exited; log tail:\n{self.log_tail()}")
        workers = len(self.worker_pids())
        if workers != self.workers:
            self._waiting_for = f"{self.workers} worker processes (has {workers})"
        else:
            self._waiting_for = self._not_ready(self)
        return not self._waiting_for

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the server itself with one worker, else its workers."""
        if self.process is None:
            return []
        if self.workers == 1:
            return [self.process.pid]
        return [pid for pid in children(self.process.pid) if "resource_tracker" not in cmdline(pid)]

    def tree(self) -> list[int]:
        """The leader and its children."""
        return [] if self.process is None else [self.process.pid, *children(self.process.pid)]

    def cpu_seconds(self) -> float:
        """CPU time the tree used so far (of processes still alive)."""
        return cpu_ticks(self.tree()) / CLOCK_TICKS

    def wait_idle(self, timeout: float = 60.0, window: float = 0.5) -> bool:
        """Wait until the whole tree used (almost) no CPU for ``window`` seconds."""
        pids = self.tree()

        def quiet() -> bool:
            before = cpu_ticks(pids)
            time.sleep(window)
            return cpu_ticks(pids) - before <= 2

        return wait_until(quiet, timeout, interval=0)

    def log_tail(self, lines: int = 25) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group; SIGKILL it if the leader is still there after ``timeout``."""
        _LIVE.discard(self)
        if self.process is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(wait)
                break
        with contextlib.suppress(ProcessLookupError):  # workers the leader left behind
            os.killpg(self.process.pid, signal.SIGKILL)


@contextlib.contextmanager
def running(*servers: Server) -> Iterator[tuple[Server, ...]]:
    """Launch ``servers`` together (start-ups overlap), wait until all serve; always stop them all."""
    try:
        for server in servers:
            server.launch()
        deadline = time.monotonic() + START_TIMEOUT
        for server in servers:
            server.wait_ready(max(1.0, deadline - time.monotonic()))
        yield servers
    finally:
        for server in servers:
            server.stop()


# --- the servers ------------------------------------------------------------------------------------


_NOT_INHERITED = {"WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR"}  # would change how the servers run


def _server_env(**extra: str) -> dict[str, str]:
    """This environment without the caller's server settings, Haystack telemetry off, plus ``extra``."""
    inherited = {k: v for k, v in os.environ.items() if not k.startswith("HAYHOOKS_") and k not in _NOT_INHERITED}
    return {**inherited, "HAYSTACK_TELEMETRY_ENABLED": "False", **extra}


def _pipelines_dir(opts: Options, examples: tuple[str, ...], probe: str | None) -> Path:
    """A fresh pipelines directory with copies of ``examples`` and, if given, the probe at ``probe``."""
    root = Path(tempfile.mkdtemp(prefix="pipelines-", dir=opts.scratch))
    for example in examples:
        shutil.copytree(EXAMPLES / example, root / example, ignore=shutil.ignore_patterns("__pycache__"))
    if probe is not None:
        replace_file(root / PROBE / "pipeline_wrapper.py", probe_wrapper(probe))
    return root


def _expected(pipelines: Path) -> set[str]:
    return {path.name for path in pipelines.iterdir() if path.is_dir()}


def ours(opts: Options, workers: int, examples: tuple[str, ...] = ("echo",), probe: str | None = None) -> Server:
    """Our server as documented: ``hayhooks run`` for one worker, gunicorn for more."""
    pipelines = _pipelines_dir(opts, examples, probe)
    port = free_port()
    env = _server_env(
        HAYHOOKS_PIPELINES_DIR=str(pipelines),
        HAYHOOKS_HOST=HOST,
        HAYHOOKS_PORT=str(port),
        HAYHOOKS_WORKERS=str(workers),
    )
    python = str(opts.venv / "bin" / "python")
    if workers == 1:
        argv = [str(opts.venv / "bin" / "hayhooks"), "run"]
    else:
        argv = [python, "-m", "gunicorn", "--config", "python:hayhooks.run.gunicorn_conf"]
    expected = _expected(pipelines)

    def not_ready(server: Server) -> str:
        """Until every worker reports every pipeline ready in the cluster view, and they agree."""
        reply = fetch(server.port, "GET", "/status")
        cluster = (reply.json() or {}).get("cluster", {}) if reply.status == 200 else {}
        states = [worker.get("pipelines", {}) for worker in cluster.get("workers", [])]
        if len(states) != server.workers or not cluster.get("converged"):
            return f"a converged view of {server.workers} workers (GET /status: {reply.status}, {str(cluster)[:300]})"
        loading = sorted({name for state in states for name in expected if state.get(name, {}).get("state") != "ready"})
        return f"pipelines {', '.join(loading)} to be ready in every worker" if loading else ""

    return Server("ours", workers, port, argv, env, not_ready, scratch=opts.scratch, pipelines=pipelines)


def plain(opts: Options, workers: int) -> Server:
    """``plain_app.py`` served like ours: uvicorn for one worker, gunicorn + UvicornWorker for more."""
    port = free_port()
    python = str(opts.venv / "bin" / "python")
    if workers == 1:
        argv = [python, "-m", "uvicorn", "--app-dir", str(BENCH_DIR), "--host", HOST, "--port", str(port)]
        argv.append("--no-access-log")  # as gunicorn runs it below: no access log by default
    else:
        argv = [python, "-m", "gunicorn", "-k", "uvicorn_worker.UvicornWorker", "-w", str(workers)]
        argv += ["-b", f"{HOST}:{port}", "--keep-alive", "5", "--chdir", str(BENCH_DIR)]
    argv.append("plain_app:app")

    def not_ready(server: Server) -> str:
        status = fetch(server.port, "POST", "/echo/run", ECHO_BODY).status
        return "" if status == 200 else f"POST /echo/run to answer 200 (answers {status})"

    return Server("plain", workers, port, argv, _server_env(), not_ready, scratch=opts.scratch)


def reference(opts: Options, workers: int, examples: tuple[str, ...] = ("echo",), probe: str | None = None) -> Server:
    """The published Hayhooks, run as its docs say: ``hayhooks run --workers N``."""
    pipelines = _pipelines_dir(opts, examples, probe)
    port = free_port()
    argv = [str(opts.reference_venv / "bin" / "hayhooks"), "run", "--pipelines-dir", str(pipelines)]
    argv += ["--host", HOST, "--port", str(port), "--workers", str(workers)]
    expected = _expected(pipelines)

    def not_ready(server: Server) -> str:
        reply = fetch(server.port, "GET", "/status")
        missing = expected - set((reply.json() or {}).get("pipelines", [])) if reply.status == 200 else expected
        return f"GET /status to list {', '.join(sorted(missing))}" if missing else ""

    return Server("reference", workers, port, argv, _server_env(), not_ready, scratch=opts.scratch, pipelines=pipelines)


# --- throughput with wrk ----------------------------------------------------------------------------


@dataclass
class WrkResult:
    """One wrk measurement."""

    rps: float
    requests: int
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    cpu_ms_per_request: float = float("nan")  # CPU time of the whole server tree per answered request
    other_load: float = float("nan")  # share of the machine's CPU used by anything but the server and wrk
    server_cores: float = float("nan")  # CPU time of the server tree ÷ wall time: cores it kept busy


_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _wrk_latency(output: str, percentile: str) -> float:
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    return round(float(match.group(1)) * _UNITS_MS[match.group(2)], 3) if match else float("nan")


def parse_wrk(output: str) -> WrkResult:
    """The numbers of ``wrk --latency`` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    requests = re.search(r"(\d+) requests in", output)
    if not rps or not requests:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return WrkResult(
        rps=float(rps.group(1)),
        requests=int(requests.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(map(int, socket_errors.groups())) if socket_errors else 0,
        p50_ms=_wrk_latency(output, "50"),
        p99_ms=_wrk_latency(output, "99"),
    )


def wrk(opts: Options, server: Server, path: str, body: Any) -> WrkResult:
    """A closed loop of ``opts.connections`` keep-alive connections on one thread, after a warm-up.

    Besides wrk's numbers, measures the server's CPU time per request: unlike req/s, it hardly
    depends on what else the machine runs meanwhile.
    """
    env = {**os.environ, "WRK_BODY": json.dumps(body)}
    command = ["wrk", "-t1", f"-c{opts.connections}", "-s", str(WRK_SCRIPT), f"http://{HOST}:{server.port}{path}"]
    if opts.warmup > 0:
        subprocess.run([*command, f"-d{opts.warmup}s"], env=env, capture_output=True, timeout=opts.warmup + 30)
    server_before, wrk_before, machine_before = server.cpu_seconds(), children_cpu_seconds(), machine_busy_seconds()
    started = time.monotonic()
    run = subprocess.run(
        [*command, f"-d{opts.duration}s", "--latency"],
        env=env,
        capture_output=True,
        text=True,
        timeout=opts.duration + 30,
        check=True,
    )
    elapsed = time.monotonic() - started
    server_cpu, wrk_cpu = server.cpu_seconds() - server_before, children_cpu_seconds() - wrk_before
    others = machine_busy_seconds() - machine_before - server_cpu - wrk_cpu
    result = parse_wrk(run.stdout)
    result.cpu_ms_per_request = round(1000 * server_cpu / max(1, result.requests), 4)
    result.other_load = round(max(0.0, others) / (elapsed * (os.cpu_count() or 1)), 3)
    result.server_cores = round(server_cpu / elapsed, 3)
    return result


def children_cpu_seconds() -> float:
    """CPU time of this process's finished children (the wrk runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def other_load_note(results: list[WrkResult]) -> str:
    """How busy the rest of the machine was during ``results``, and what that did to the figures."""
    noisy = sum(result.other_load > NOISY_LOAD for result in results)
    worst = max(result.other_load for result in results)
    note = f"Other processes used up to {worst:.0%} of the machine's CPU during these {len(results)} measurements"
    if not noisy:
        return note + ".\n"
    return (
        f"{note}; {noisy} were taken while they used more than {NOISY_LOAD:.0%} and count only where a server"
        " had no quieter one. **The machine was shared: take these ratios with care.**\n"
    )


def measure_throughput(opts: Options, servers: tuple[Server, ...], path: str, body: Any) -> dict[str, list[WrkResult]]:
    """wrk every server ``opts.repeats`` times, rotating the order each round so drift spreads evenly."""
    results: dict[str, list[WrkResult]] = {server.label: [] for server in servers}
    for round_ in range(opts.repeats):
        shift = round_ % len(servers)
        for server in servers[shift:] + servers[:shift]:
            result = wrk(opts, server, path, body)
            results[server.label].append(result)
            log(
                f"  {server.label:<24} {result.rps:9.1f} req/s  p99 {result.p99_ms:7.1f} ms"
                f"  CPU {result.cpu_ms_per_request:.3f} ms/req  other load {result.other_load:.0%}"
            )
    return results


def typical(results: list[WrkResult], metric: str) -> float:
    """Median of ``metric`` over the measurements the rest of the machine left alone (all if none did).

    On a shared machine, other processes' bursts slow a measurement down and raise its CPU per
    request too (contended caches, more switches), so those runs are set aside when quieter ones exist.
    """
    quiet = [result for result in results if result.other_load <= NOISY_LOAD] or results
    return statistics.median(getattr(result, metric) for result in quiet)


# --- the probe pipeline: says which code and which worker answered ----------------------------------

_PROBE_TEMPLATE = '''"""probe: answers with the marker of this revision of its code and the pid of the worker."""

import os

from haystack import Pipeline, component

from hayhooks import BasePipelineWrapper

MARKER = "@MARKER@"


@component
class Probe:
    @component.output_types(marker=str, pid=int)
    def run(self, text: str) -> dict:
        return {"marker": MARKER, "pid": os.getpid()}


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = Pipeline()
        self.pipeline.add_component("probe", Probe())

    def run_api(self, text: str = "") -> dict:
        """
        Say which revision of the code and which worker process answered.

        Args:
            text: Ignored.
        """
        return self.pipeline.run({"probe": {"text": text}})["probe"]
'''


def probe_wrapper(marker: str) -> str:
    """The probe's ``pipeline_wrapper.py``, answering ``marker``."""
    return _PROBE_TEMPLATE.replace("@MARKER@", marker)


def replace_file(path: Path, text: str) -> float:
    """Write ``text`` to a hidden temporary file beside ``path``, rename it over ``path``; return when."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    renamed = time.monotonic()
    os.replace(temporary, path)
    return renamed


@dataclass
class Answer:
    """What one call of a probe pipeline said."""

    status: int
    marker: str | None = None
    pid: int | None = None
    revision: str | None = None
    error: str = ""


async def ask(port: int, name: str) -> Answer:
    """Call ``/name/run`` of a probe pipeline on a fresh connection."""
    reply = await http(port, "POST", f"/{name}/run", {"text": "x"})
    body = reply.json() if reply.status == 200 else None
    result = body.get("result") if isinstance(body, dict) else None
    if not isinstance(result, dict):
        return Answer(reply.status, error=reply.error or reply.body[:120].decode(errors="replace"))
    return Answer(reply.status, result.get("marker"), result.get("pid"), reply.headers.get("x-hayhooks-revision"))


@dataclass
class Spread:
    """How a change reached the workers, seen from their answers."""

    seconds: float | None  # until the last expected worker first answered as wanted; None: not all did
    reached: dict[int, float]  # pid -> seconds until its first wanted answer
    revisions: list[str]  # x-hayhooks-revision headers of the wanted answers
    statuses: dict[int, int]  # HTTP status -> count over every poll
    regressions: int  # unwanted answers to calls sent after the same worker had answered as wanted


async def until_every_worker(
    opts: Options, port: int, name: str, pids: list[int], wanted: Callable[[Answer], bool], started: float
) -> Spread:
    """Poll ``/name/run`` with ``opts.poll_concurrency`` fresh connections in flight until every pid
    in ``pids`` answered as ``wanted``, or ``opts.settle_timeout`` seconds after ``started``."""
    expected, reached, revisions, statuses = set(pids), {}, set(), Counter()
    regressions = 0
    deadline = started + opts.settle_timeout

    async def poll() -> None:
        nonlocal regressions
        while time.monotonic() < deadline and not expected <= reached.keys():
            sent = time.monotonic() - started
            answer = await ask(port, name)
            statuses[answer.status] += 1
            if answer.pid is None:
                continue
            if wanted(answer):
                reached.setdefault(answer.pid, time.monotonic() - started)
                revisions.add(answer.revision or "")
            elif sent > reached.get(answer.pid, float("inf")):  # not an in-flight call finishing on its revision
                regressions += 1

    await asyncio.gather(*(poll() for _ in range(opts.poll_concurrency)))
    done = expected <= reached.keys()
    return Spread(
        seconds=round(max(reached[pid] for pid in expected), 4) if done else None,
        reached={pid: round(seconds, 4) for pid, seconds in reached.items()},
        revisions=sorted(revisions),
        statuses=dict(statuses),
        regressions=regressions,
    )


def revisions_of(server: Server, name: str) -> set[str]:
    """The revisions of ``name`` that our workers report in the cluster view."""
    reply = fetch(server.port, "GET", "/status")
    workers = (reply.json() or {}).get("cluster", {}).get("workers", []) if reply.status == 200 else []
    return {worker.get("pipelines", {}).get(name, {}).get("revision") for worker in workers}


# --- scenarios --------------------------------------------------------------------------------------


@dataclass
class Section:
    """One scenario's outcome: a row of the targets table, a details section and the raw data."""

    key: str
    summary: list[str]  # what, ours, published Hayhooks, target, met
    details: str
    data: dict[str, Any]


def _ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator else float("nan")


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _median_worst(times: list[float | None]) -> tuple[float | None, float | None]:
    """Median and worst of ``times``; ``(None, None)`` unless every one of them completed."""
    if not times or any(t is None for t in times):
        return None, None
    return statistics.median(times), max(times)


def _says(marker: str) -> Callable[[Answer], bool]:
    return lambda answer: answer.marker == marker


def scenario_overhead(opts: Options) -> Section:
    """``/echo/run`` throughput of ours, a plain FastAPI app and the published Hayhooks, 1 and 2 workers."""
    rows, data, measured = [], {}, []
    for workers in (1, 2):
        log(f"overhead: {workers} worker(s)")
        servers = (plain(opts, workers), ours(opts, workers), reference(opts, workers))
        with running(*servers):
            by_label = measure_throughput(opts, servers, "/echo/run", ECHO_BODY)
        runs = {server.kind: by_label[server.label] for server in servers}
        measured += [result for results in runs.values() for result in results]
        rps = {kind: typical(results, "rps") for kind, results in runs.items()}
        cpu = {kind: typical(results, "cpu_ms_per_request") for kind, results in runs.items()}
        p99 = {kind: typical(results, "p99_ms") for kind, results in runs.items()}
        errors = {kind: sum(r.non_2xx + r.socket_errors for r in results) for kind, results in runs.items()}
        ratios = {f"{kind}/plain": _ratio(rps[kind], rps["plain"]) for kind in ("ours", "reference")}
        cpu_ratio = _ratio(cpu["plain"], cpu["ours"])  # > 1 would mean ours needs less CPU per request
        data[workers] = {
            "rps": rps,
            "ratios": ratios,
            "cpu_ms_per_request": cpu,
            "ours/plain by CPU": cpu_ratio,
            "p99_ms": p99,
            "errors": errors,
            "runs": {kind: [asdict(r) for r in results] for kind, results in runs.items()},
        }
        rows.append(
            [
                str(workers),
                " / ".join(f"{rps[k]:.0f}" for k in KINDS),
                f"{ratios['ours/plain']:.2f}×",
                f"{ratios['reference/plain']:.2f}×",
                " / ".join(f"{cpu[k]:.3f}" for k in KINDS),
                f"{cpu_ratio:.2f}×",
                " / ".join(f"{p99[k]:.1f}" for k in KINDS),
                " / ".join(str(errors[k]) for k in KINDS),
            ]
        )
    details = markdown_table(
        "workers | req/s plain / ours / reference | ours ÷ plain | reference ÷ plain"
        " | CPU ms per request plain / ours / reference | ours ÷ plain by CPU | p99 ms plain / ours / reference"
        " | errors plain / ours / reference",
        rows,
    )
    details += (
        f"\n`POST /echo/run` with `{json.dumps(ECHO_BODY)}`. Plain is `benchmarks/plain_app.py`: the same pipeline"
        " and request/response models in a plain FastAPI `def` endpoint, served like ours (uvicorn for 1 worker,"
        " gunicorn with uvicorn workers for 2) with no access log. The published Hayhooks runs as"
        ' `hayhooks run --workers N`. Figures are medians over the repeats; "by CPU" is plain\'s CPU time per'
        " request (master and workers) over ours: it moves less than req/s when the machine is shared. "
        + other_load_note(measured)
    )
    ours_ratios = [data[w]["ratios"]["ours/plain"] for w in (1, 2)]
    cpu_ratios = " / ".join(f"{data[w]['ours/plain by CPU']:.2f}×" for w in (1, 2))
    summary = [
        "per-request overhead (`/echo/run` ÷ plain FastAPI, 1 / 2 workers)",
        " / ".join(f"{r:.2f}×" for r in ours_ratios) + f" (by CPU per request: {cpu_ratios})",
        " / ".join(f"{data[w]['ratios']['reference/plain']:.2f}×" for w in (1, 2)),
        "≥ 0.8×",
        _met(min(ours_ratios) >= 0.8),
    ]
    return Section("overhead", summary, details, data)


def scenario_propagation(opts: Options) -> Section:
    """Rewrite the probe's wrapper in the directory of a 4-worker server; time until all 4 answer it."""
    log(f"propagation: {opts.changes} file changes, 4 workers")
    server = ours(opts, 4, examples=(), probe="change-0")
    rounds: list[dict[str, Any]] = []
    with running(server):
        pids = server.worker_pids()
        wrapper = server.pipelines / PROBE / "pipeline_wrapper.py"
        old = revisions_of(server, PROBE)
        for change in range(1, opts.changes + 1):
            marker = f"change-{change}"
            started = replace_file(wrapper, probe_wrapper(marker))
            spread = asyncio.run(until_every_worker(opts, server.port, PROBE, pids, _says(marker), started))
            agreed = len(spread.revisions) == 1 and spread.revisions[0] not in old
            rounds.append({**asdict(spread), "revision_agreed": agreed})
            log(f"  change {change:2}: {_seconds(spread.seconds)} s (revisions {', '.join(spread.revisions)})")
            old = set(spread.revisions)
            time.sleep(0.2)
        restarted = sorted(set(pids) ^ set(server.worker_pids()))
    times = [r["seconds"] for r in rounds]
    median, worst = _median_worst(times)
    done = [t for t in times if t is not None]
    details = markdown_table(
        "changes | all 4 workers answered | median s | worst s | best s | one new revision everywhere"
        " | regressions | workers restarted",
        [
            [
                str(len(times)),
                f"{len(done)}/{len(times)}",
                _seconds(median),
                _seconds(worst),
                _seconds(min(done, default=None)),
                f"{sum(r['revision_agreed'] for r in rounds)}/{len(rounds)}",
                str(sum(r["regressions"] for r in rounds)),
                str(len(restarted)),
            ]
        ],
    )
    details += (
        "\nEach change renames a rewritten `pipeline_wrapper.py` into the probe's folder; the clock runs from the"
        f" rename until each of the 4 worker pids has answered `/{PROBE}/run` with the new code (its marker),"
        f" polled with {opts.poll_concurrency} fresh connections in flight. The answers' `x-hayhooks-revision`"
        " must be one new revision. The published Hayhooks has no watcher: a file change never reaches a running"
        " worker.\n"
    )
    summary = [
        "change → every worker (4 workers, file rewrite)",
        f"median {_seconds(median)} s, worst {_seconds(worst)} s",
        "never (no watcher)",
        "median ≤ 0.5 s, worst ≤ 1 s",
        _met(median is not None and median <= 0.5 and worst <= 1.0),
    ]
    data = {"median": median, "worst": worst, "workers_restarted": restarted, "rounds": rounds}
    return Section("propagation", summary, details, data)


async def redeploy_under_load(opts: Options, server: Server) -> dict[str, Any]:
    """``opts.clients`` clients call the probe in a loop while it is redeployed ``opts.redeploys`` times."""
    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    stop = asyncio.Event()

    async def client() -> None:
        while not stop.is_set():
            answer = await ask(server.port, PROBE)
            statuses[answer.status] += 1
            if answer.status != 200:
                failures[f"{answer.status} {answer.error[:80]}"] += 1

    clients = [asyncio.create_task(client()) for _ in range(opts.clients)]
    deploys = []
    try:
        await asyncio.sleep(opts.redeploy_pause)
        for number in range(1, opts.redeploys + 1):
            body = {
                "name": PROBE,
                "files": {"pipeline_wrapper.py": probe_wrapper(f"redeploy-{number}")},
                "overwrite": True,
            }
            started = time.monotonic()
            reply = await http(server.port, "POST", "/deploy_files", body, timeout=60)
            deploys.append({"status": reply.status, "seconds": round(time.monotonic() - started, 3)})
            await asyncio.sleep(opts.redeploy_pause)
    finally:
        stop.set()
        await asyncio.gather(*clients)
    last = _says(f"redeploy-{opts.redeploys}")
    final = await until_every_worker(opts, server.port, PROBE, server.worker_pids(), last, time.monotonic())
    total = sum(statuses.values())
    return {
        "workers": server.workers,
        "requests": total,
        "failed": total - statuses[200],
        "statuses": dict(statuses),
        "failures": dict(failures),
        "deploys": deploys,
        "every_worker_on_last": final.seconds is not None,
    }


def scenario_redeploy(opts: Options) -> Section:
    """Failed calls while a pipeline is redeployed under load: ours with 4 workers, the reference with 1."""
    outcomes = {}
    for server in (ours(opts, 4, examples=(), probe="redeploy-0"), reference(opts, 1, examples=(), probe="redeploy-0")):
        log(f"redeploy: {server.label}, {opts.redeploys} redeploys, {opts.clients} clients")
        with running(server):
            outcome = outcomes[server.kind] = asyncio.run(redeploy_under_load(opts, server))
        log(f"  {outcome['failed']} of {outcome['requests']} failed {outcome['failures'] or ''}")
    rows = [
        [
            kind,
            str(o["workers"]),
            str(o["requests"]),
            str(o["failed"]),
            ", ".join(f"{status}: {count}" for status, count in sorted(o["statuses"].items())),
            ", ".join(str(d["status"]) for d in o["deploys"]),
            f"{statistics.median(d['seconds'] for d in o['deploys']):.3f}",
            "yes" if o["every_worker_on_last"] else "no",
        ]
        for kind, o in outcomes.items()
    ]
    details = markdown_table(
        "server | workers | calls | failed | statuses | deploy answers | median deploy s | every worker on the last",
        rows,
    )
    details += (
        f"\n{opts.clients} clients call `/{PROBE}/run` in a closed loop (a fresh connection per call) while"
        f" `POST /deploy_files` (overwrite) replaces it {opts.redeploys} times, {opts.redeploy_pause:g} s apart."
        " The published Hayhooks runs with 1 worker here: with several, a deploy reaches only the worker that"
        " received it, and the others keep serving the old code without failing (see the deploy scenario).\n"
    )
    ours_o, ref_o = outcomes["ours"], outcomes["reference"]
    summary = [
        "redeploys under load (failed calls)",
        f"{ours_o['failed']} of {ours_o['requests']} (4 workers)",
        f"{ref_o['failed']} of {ref_o['requests']} (1 worker)",
        "0 failed",
        _met(ours_o["failed"] == 0 and ours_o["every_worker_on_last"]),
    ]
    return Section("redeploy", summary, details, outcomes)


def scenario_scaling(opts: Options) -> Section:
    """cpu_heavy throughput with 1 and 2 workers, ours and the published Hayhooks."""
    log("scaling: cpu_heavy, 1 vs 2 workers")
    servers = tuple(make(opts, workers, examples=("cpu_heavy",)) for make in (ours, reference) for workers in (1, 2))
    with running(*servers):
        runs = measure_throughput(opts, servers, "/cpu_heavy/run", CPU_BODY)
    rps = {label: typical(results, "rps") for label, results in runs.items()}
    cores = {label: typical(results, "server_cores") for label, results in runs.items()}
    data: dict[str, Any] = {
        "rps": rps,
        "cores_busy": cores,
        "runs": {k: [asdict(r) for r in v] for k, v in runs.items()},
    }
    rows = []
    for kind in ("ours", "reference"):
        one, two = (server.label for server in servers if server.kind == kind)
        data[f"{kind} 2w/1w"] = _ratio(rps[two], rps[one])
        rows.append(
            [
                kind,
                f"{rps[one]:.1f}",
                f"{rps[two]:.1f}",
                f"{data[f'{kind} 2w/1w']:.2f}×",
                f"{cores[one]:.2f} / {cores[two]:.2f}",
            ]
        )
    details = markdown_table("server | 1 worker req/s | 2 workers req/s | 2 ÷ 1 | cores busy 1 / 2 workers", rows)
    details += (
        f"\n`POST /cpu_heavy/run` with `{json.dumps(CPU_BODY)}` (about 9 ms of GIL-holding Python per call)."
        " Cores busy is the CPU time of the server's processes over wall time: on a 2-core machine, wrk and"
        " anything else running take from what 2 workers can get. "
        + other_load_note([result for results in runs.values() for result in results])
    )
    summary = [
        "CPU-bound scaling (cpu_heavy, 2 workers ÷ 1)",
        f"{data['ours 2w/1w']:.2f}×",
        f"{data['reference 2w/1w']:.2f}×",
        "≥ 1.7×",
        _met(data["ours 2w/1w"] >= 1.7),
    ]
    return Section("scaling", summary, details, data)


async def deploy_and_spread(opts: Options, server: Server, name: str, pids: list[int]) -> dict[str, Any]:
    """Deploy a new probe ``name`` through one connection, then poll until every worker serves it."""
    body = {"name": name, "files": {"pipeline_wrapper.py": probe_wrapper(name)}, "overwrite": False}
    started = time.monotonic()
    reply = await http(server.port, "POST", "/deploy_files", body, timeout=60)
    answered = round(time.monotonic() - started, 4)
    spread = await until_every_worker(opts, server.port, name, pids, _says(name), started)
    serving = len(set(spread.reached) & set(pids))
    return {
        "name": name,
        "deploy_status": reply.status,
        "deploy_seconds": answered,
        "workers": len(pids),
        "workers_serving": serving,
        **asdict(spread),
    }


def scenario_deploy(opts: Options) -> Section:
    """Deploy through one of 4 workers; time until every worker serves it, or count the ones that do."""
    outcomes: dict[str, list[dict[str, Any]]] = {}
    for server in (ours(opts, 4), reference(opts, 4)):
        log(f"deploy: {server.label}, {opts.deploys} new pipelines")
        with running(server):
            pids = server.worker_pids()
            outcomes[server.kind] = runs = [
                asyncio.run(deploy_and_spread(opts, server, f"fresh_{number}", pids))
                for number in range(1, opts.deploys + 1)
            ]
        for run in runs:
            log(
                f"  {run['name']}: deploy {run['deploy_status']} in {run['deploy_seconds']:.3f} s,"
                f" served by {run['workers_serving']}/{run['workers']} workers, all by {_seconds(run['seconds'])} s"
            )
    rows = []
    for kind, runs in outcomes.items():
        median, worst = _median_worst([run["seconds"] for run in runs])
        rows.append(
            [
                kind,
                str(len(runs)),
                ", ".join(str(run["deploy_status"]) for run in runs),
                f"{statistics.median(run['deploy_seconds'] for run in runs):.3f}",
                ", ".join(f"{run['workers_serving']}/{run['workers']}" for run in runs),
                _seconds(median),
                _seconds(worst),
            ]
        )
    details = markdown_table(
        "server | deploys | answers | median deploy s | workers serving it | median s to all | worst s to all", rows
    )
    details += (
        "\nEach deploy posts a new pipeline to `/deploy_files` on one connection; the clock runs from sending it"
        f" until each of the 4 worker pids has answered `/NAME/run` (polled for at most {opts.settle_timeout:g} s"
        f" with {opts.poll_concurrency} fresh connections in flight).\n"
    )
    median, worst = _median_worst([run["seconds"] for run in outcomes["ours"]])
    serving = [run["workers_serving"] for run in outcomes["reference"]]
    reach = f"{min(serving)}" if min(serving) == max(serving) else f"{min(serving)}–{max(serving)}"
    summary = [
        "API deploy with 4 workers",
        f"every worker: median {_seconds(median)} s, worst {_seconds(worst)} s",
        f"reaches {reach} of 4 workers",
        "every worker, ≤ 0.5 s",
        _met(worst is not None and worst <= 0.5),
    ]
    return Section("deploy", summary, details, outcomes)


SCENARIO_FUNCTIONS: dict[str, Callable[[Options], Section]] = {
    "overhead": scenario_overhead,
    "propagation": scenario_propagation,
    "redeploy": scenario_redeploy,
    "scaling": scenario_scaling,
    "deploy": scenario_deploy,
}


# --- report -----------------------------------------------------------------------------------------


def markdown_table(header: str, rows: list[list[str]]) -> str:
    """A Markdown table; ``header`` names the columns separated by `` | ``."""
    headers = header.split(" | ")
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def environment(opts: Options) -> dict[str, Any]:
    """What the numbers were measured on."""

    def git(*args: str) -> str:
        run = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
        return run.stdout.strip()

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git("rev-parse", "--short", "HEAD") + ("+dirty" if git("status", "--porcelain", "hayhooks") else ""),
        "cpu": f"{os.cpu_count()} × {cpu}",
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "ours": _versions(opts.venv),
        "reference": _versions(opts.reference_venv),
        "wrk": f"-t1 -c{opts.connections}, {opts.warmup} s warm-up + {opts.duration} s, median of {opts.repeats}",
    }


def _versions(venv: Path) -> str:
    """``hayhooks X, haystack-ai Y`` as installed in ``venv``."""
    script = (
        "import importlib.metadata as m; print(*(f'{p} {m.version(p)}' for p in ('hayhooks', 'haystack-ai')), sep=', ')"
    )
    with contextlib.suppress(OSError):
        run = subprocess.run([str(venv / "bin" / "python"), "-I", "-c", script], capture_output=True, text=True)
        return run.stdout.strip() or "not installed"
    return "not installed"


def render(sections: list[Section], env: dict[str, Any], seconds: float) -> str:
    lines = [
        "# hayhooks benchmark",
        "",
        f"{env['date']}, commit {env['commit']}, {env['cpu']}, Python {env['python']}; load average at start"
        f" {' '.join(f'{x:.2f}' for x in env['load_average'])}. Ours: {env['ours']}; published: {env['reference']}."
        f" wrk: {env['wrk']}. Full run: {seconds:.0f} s.",
        "",
        markdown_table("what | ours | published Hayhooks | target | met", [s.summary for s in sections]),
    ]
    for section in sections:
        lines += [f"## {section.key}", "", section.details]
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help=f"any of {', '.join(SCENARIOS)} (default: all)"
    )
    parser.add_argument("--venv", type=Path, default=REPO / ".venv", help="venv with our hayhooks (default: .venv)")
    parser.add_argument(
        "--reference-venv",
        type=Path,
        default=BENCH_DIR / ".reference-venv",
        help="venv with hayhooks==2.1.0; made by setup_reference.sh when missing",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk measurement (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of wrk warm-up before each (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--repeats", type=int, default=3, help="wrk measurements per server, median (default 3)")
    parser.add_argument("--changes", type=int, default=20, help="file changes in propagation (default 20)")
    parser.add_argument("--redeploys", type=int, default=10, help="redeploys under load (default 10)")
    parser.add_argument("--redeploy-pause", type=float, default=1.0, help="seconds between redeploys (default 1)")
    parser.add_argument("--clients", type=int, default=6, help="clients during redeploys (default 6)")
    parser.add_argument("--deploys", type=int, default=5, help="new pipelines deployed in deploy (default 5)")
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=5.0,
        help="seconds to wait for every worker to answer a change (default 5)",
    )
    parser.add_argument(
        "--poll-concurrency",
        type=int,
        default=8,
        help="fresh connections in flight while polling the workers (default 8)",
    )
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "results", help="where latest.md/.json go")
    args = parser.parse_args(argv)
    unknown = set(args.scenarios) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS)}")
    return Options(
        scenarios=tuple(args.scenarios) or SCENARIOS,
        venv=args.venv.absolute(),
        reference_venv=args.reference_venv.absolute(),
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        repeats=max(1, args.repeats),
        changes=args.changes,
        redeploys=args.redeploys,
        redeploy_pause=args.redeploy_pause,
        clients=args.clients,
        deploys=args.deploys,
        settle_timeout=args.settle_timeout,
        poll_concurrency=args.poll_concurrency,
        results=args.results.absolute(),
        scratch=scratch_dir(),
    )


def scratch_dir() -> Path:
    """A temporary folder for pipelines directories and server logs, removed at exit."""
    scratch = Path(tempfile.mkdtemp(prefix="hayhooks-bench-"))
    atexit.register(shutil.rmtree, scratch, True)
    return scratch


def check_tools(opts: Options) -> None:
    """Fail early on a missing wrk or venv; make the reference venv when it is missing."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: run benchmarks/setup_reference.sh (or apt-get install wrk)")
    if not (opts.venv / "bin" / "hayhooks").exists():
        raise SystemExit(f"no hayhooks in {opts.venv}: pip install -e '.[dev]' there, or pass --venv")
    if opts.scenarios != ("propagation",) and not (opts.reference_venv / "bin" / "hayhooks").exists():
        log(f"making the reference venv {opts.reference_venv} (hayhooks=={REFERENCE_VERSION})")
        subprocess.run(["bash", str(BENCH_DIR / "setup_reference.sh"), str(opts.reference_venv)], check=True)


def _exit_on_signal(signum: int, _frame: object) -> None:
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    atexit.register(stop_all)  # runs before the scratch folder's removal: atexit runs last-registered first
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _exit_on_signal)
    check_tools(opts)
    env = environment(opts)
    started = time.monotonic()
    sections = [SCENARIO_FUNCTIONS[name](opts) for name in opts.scenarios]
    seconds = time.monotonic() - started
    report = render(sections, env, seconds)
    print(report)
    opts.results.mkdir(parents=True, exist_ok=True)
    (opts.results / "latest.md").write_text(report)
    payload = {
        "environment": env,
        "seconds": round(seconds, 1),
        "options": {k: str(v) for k, v in asdict(opts).items()},
        "scenarios": {section.key: {"summary": section.summary, "data": section.data} for section in sections},
    }
    (opts.results / "latest.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    log(f"wrote {opts.results / 'latest.md'} and latest.json in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
