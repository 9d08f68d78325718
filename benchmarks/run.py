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
import shutil
import signal
import socket
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
EXAMPLES = REPO / "examples" / "pipelines"
WRK_SCRIPT = BENCH_DIR / "post_json.lua"
HOST = "127.0.0.1"
REFERENCE_VERSION = "2.1.0"
SCENARIOS = ("overhead", "propagation", "redeploy", "scaling", "deploy")
ECHO_BODY = {"text": "ping"}
CPU_BODY: dict[str, Any] = {}
PROBE = "probe"  # the pipeline that the propagation, redeploy and deploy scenarios change
START_TIMEOUT = 180.0


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


def free_port() -> int:
    """A port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (a gunicorn or uvicorn master's workers), from /proc."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def cpu_ticks(pids: list[int]) -> int:
    """utime + stime of ``pids``, in clock ticks."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds passed; return whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


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
        ready: Callable[[Server], bool],
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
        self._ready = ready
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
            raise RuntimeError(f"{self.label} not ready after {timeout:.0f}s; log tail:\n{self.log_tail()}")
        self.wait_idle()

    def _serving(self) -> bool:
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"{self.label} exited; log tail:\n{self.log_tail()}")
        return len(self.worker_pids()) == self.workers and self._ready(self)

    def worker_pids(self) -> list[int]:
        """The processes that serve requests: the server itself with one worker, else its workers."""
        if self.process is None:
            return []
        if self.workers == 1:
            return [self.process.pid]
        return [pid for pid in children(self.process.pid) if "resource_tracker" not in cmdline(pid)]

    def wait_idle(self, timeout: float = 60.0, window: float = 0.5) -> bool:
        """Wait until the whole tree used (almost) no CPU for ``window`` seconds."""
        assert self.process is not None
        pids = [self.process.pid, *children(self.process.pid)]

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


def _server_env(**extra: str) -> dict[str, str]:
    """This environment without any HAYHOOKS_* setting of the caller, telemetry off, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HAYHOOKS_") and k != "WEB_CONCURRENCY"}
    return {**env, "HAYSTACK_TELEMETRY_ENABLED": "False", "PYTHONUNBUFFERED": "1", **extra}


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
        argv = [python, "-m", "gunicorn", "--config", "python:hayhooks.server.gunicorn_conf"]
    expected = _expected(pipelines)

    def ready(server: Server) -> bool:
        """Every worker reports every pipeline ready in the cluster view, and they agree."""
        reply = fetch(server.port, "GET", "/status")
        cluster = (reply.json() or {}).get("cluster", {}) if reply.status == 200 else {}
        states = [worker.get("pipelines", {}) for worker in cluster.get("workers", [])]
        return (
            bool(cluster.get("converged"))
            and len(states) == server.workers
            and all(all(state.get(name, {}).get("state") == "ready" for name in expected) for state in states)
        )

    return Server("ours", workers, port, argv, env, ready, scratch=opts.scratch, pipelines=pipelines)


def plain(opts: Options, workers: int) -> Server:
    """``plain_app.py`` served like ours: uvicorn for one worker, gunicorn + UvicornWorker for more."""
    port = free_port()
    python = str(opts.venv / "bin" / "python")
    if workers == 1:
        argv = [python, "-m", "uvicorn", "--app-dir", str(BENCH_DIR), "--host", HOST, "--port", str(port)]
    else:
        argv = [python, "-m", "gunicorn", "-k", "uvicorn_worker.UvicornWorker", "-w", str(workers)]
        argv += ["-b", f"{HOST}:{port}", "--keep-alive", "5", "--chdir", str(BENCH_DIR)]
    argv.append("plain_app:app")

    def ready(server: Server) -> bool:
        return fetch(server.port, "POST", "/echo/run", ECHO_BODY).status == 200

    return Server("plain", workers, port, argv, _server_env(), ready, scratch=opts.scratch)


def reference(opts: Options, workers: int, examples: tuple[str, ...] = ("echo",), probe: str | None = None) -> Server:
    """The published Hayhooks, run as its docs say: ``hayhooks run --workers N``."""
    pipelines = _pipelines_dir(opts, examples, probe)
    port = free_port()
    argv = [str(opts.reference_venv / "bin" / "hayhooks"), "run", "--pipelines-dir", str(pipelines)]
    argv += ["--host", HOST, "--port", str(port), "--workers", str(workers)]
    expected = _expected(pipelines)

    def ready(server: Server) -> bool:
        reply = fetch(server.port, "GET", "/status")
        return reply.status == 200 and expected <= set((reply.json() or {}).get("pipelines", []))

    return Server("reference", workers, port, argv, _server_env(), ready, scratch=opts.scratch, pipelines=pipelines)


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


def wrk(opts: Options, port: int, path: str, body: Any) -> WrkResult:
    """A closed loop of ``opts.connections`` keep-alive connections on one thread, after a warm-up."""
    env = {**os.environ, "WRK_BODY": json.dumps(body)}
    command = ["wrk", "-t1", f"-c{opts.connections}", "-s", str(WRK_SCRIPT), f"http://{HOST}:{port}{path}"]
    if opts.warmup > 0:
        subprocess.run([*command, f"-d{opts.warmup}s"], env=env, capture_output=True, timeout=opts.warmup + 30)
    run = subprocess.run(
        [*command, f"-d{opts.duration}s", "--latency"],
        env=env,
        capture_output=True,
        text=True,
        timeout=opts.duration + 30,
        check=True,
    )
    return parse_wrk(run.stdout)


def measure_throughput(opts: Options, servers: tuple[Server, ...], path: str, body: Any) -> dict[str, list[WrkResult]]:
    """wrk every server ``opts.repeats`` times, rotating the order each round so drift spreads evenly."""
    results: dict[str, list[WrkResult]] = {server.label: [] for server in servers}
    for round_ in range(opts.repeats):
        shift = round_ % len(servers)
        for server in servers[shift:] + servers[:shift]:
            result = wrk(opts, server.port, path, body)
            results[server.label].append(result)
            log(f"  {server.label:<24} {result.rps:9.1f} req/s  p99 {result.p99_ms:7.1f} ms")
    return results


def median_rps(results: list[WrkResult]) -> float:
    return statistics.median(result.rps for result in results)


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
    regressions: int  # wanted answers followed by unwanted ones from the same worker


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
            answer = await ask(port, name)
            statuses[answer.status] += 1
            if answer.pid is None:
                continue
            if wanted(answer):
                reached.setdefault(answer.pid, time.monotonic() - started)
                revisions.add(answer.revision or "")
            elif answer.pid in reached:
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


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator else float("nan")


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def scenario_overhead(opts: Options) -> Section:
    """``/echo/run`` throughput of ours, a plain FastAPI app and the published Hayhooks, 1 and 2 workers."""
    rows, data = [], {}
    for workers in (1, 2):
        log(f"overhead: {workers} worker(s)")
        servers = (plain(opts, workers), ours(opts, workers), reference(opts, workers))
        with running(*servers):
            results = measure_throughput(opts, servers, "/echo/run", ECHO_BODY)
        rps = {server.kind: median_rps(results[server.label]) for server in servers}
        errors = {server.kind: sum(r.non_2xx + r.socket_errors for r in results[server.label]) for server in servers}
        ratios = {
            "ours/plain": _ratio(rps["ours"], rps["plain"]),
            "reference/plain": _ratio(rps["reference"], rps["plain"]),
        }
        p99 = {server.kind: statistics.median(r.p99_ms for r in results[server.label]) for server in servers}
        data[f"{workers}w"] = {
            "rps": rps,
            "ratios": ratios,
            "errors": errors,
            "p99_ms": p99,
            "runs": {label: [asdict(r) for r in runs] for label, runs in results.items()},
        }
        rows.append(
            [
                str(workers),
                *(f"{rps[k]:.0f}" for k in ("plain", "ours", "reference")),
                f"{ratios['ours/plain']:.2f}×",
                f"{ratios['reference/plain']:.2f}×",
                " / ".join(f"{p99[k]:.1f}" for k in ("plain", "ours", "reference")),
                " / ".join(str(errors[k]) for k in ("plain", "ours", "reference")),
            ]
        )
    details = markdown_table(
        [
            "workers",
            "plain req/s",
            "ours req/s",
            "reference req/s",
            "ours/plain",
            "reference/plain",
            "p99 ms plain/ours/ref",
            "errors plain/ours/ref",
        ],
        rows,
    )
    ours_ratios = [data[k]["ratios"]["ours/plain"] for k in ("1w", "2w")]
    ref_ratios = [data[k]["ratios"]["reference/plain"] for k in ("1w", "2w")]
    summary = [
        "per-request overhead (`/echo/run` ÷ plain FastAPI; 1 / 2 workers)",
        " / ".join(f"{r:.2f}×" for r in ours_ratios),
        " / ".join(f"{r:.2f}×" for r in ref_ratios),
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
            new_revision_everywhere = len(spread.revisions) == 1 and spread.revisions[0] not in old
            rounds.append({**asdict(spread), "revision_ok": new_revision_everywhere})
            log(f"  change {change:2}: {_seconds(spread.seconds)} (revisions {spread.revisions})")
            old = set(spread.revisions)
            time.sleep(0.2)
        restarted = sorted(set(pids) ^ set(server.worker_pids()))
    times = [r["seconds"] for r in rounds]
    done = [t for t in times if t is not None]
    median = statistics.median(done) if len(done) == len(times) else None
    worst = max(done) if len(done) == len(times) else None
    details = markdown_table(
        [
            "changes",
            "all 4 workers reached",
            "median s",
            "worst s",
            "best s",
            "revision agreed",
            "regressions",
            "workers restarted",
        ],
        [
            [
                str(len(times)),
                f"{len(done)}/{len(times)}",
                _seconds(median),
                _seconds(worst),
                _seconds(min(done) if done else None),
                f"{sum(r['revision_ok'] for r in rounds)}/{len(rounds)}",
                str(sum(r["regressions"] for r in rounds)),
                str(len(restarted)),
            ]
        ],
    )
    details += (
        "\nEach change renames a rewritten `pipeline_wrapper.py` into the probe's folder; the time runs from that"
        f" rename until each of the 4 worker pids has answered `/{PROBE}/run` with the new code (its marker),"
        f" polled with {opts.poll_concurrency} fresh connections in flight. The published Hayhooks has no watcher:"
        " a file change never reaches a running worker.\n"
    )
    summary = [
        "change → every worker (4 workers, file rewrite)",
        f"median {_seconds(median)} s, worst {_seconds(worst)} s",
        "never (no watcher)",
        "median ≤ 0.5 s, worst ≤ 1 s",
        _met(median is not None and worst is not None and median <= 0.5 and worst <= 1.0),
    ]
    return Section(
        "propagation",
        summary,
        details,
        {"rounds": rounds, "median": median, "worst": worst, "workers_restarted": restarted},
    )


def _says(marker: str) -> Callable[[Answer], bool]:
    return lambda answer: answer.marker == marker


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


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
            started = time.monotonic()
            files = {"pipeline_wrapper.py": probe_wrapper(f"redeploy-{number}")}
            reply = await http(
                server.port, "POST", "/deploy_files", {"name": PROBE, "files": files, "overwrite": True}, timeout=60
            )
            deploys.append({"status": reply.status, "seconds": round(time.monotonic() - started, 3)})
            await asyncio.sleep(opts.redeploy_pause)
    finally:
        stop.set()
        await asyncio.gather(*clients)
    last = f"redeploy-{opts.redeploys}"
    final = await until_every_worker(opts, server.port, PROBE, server.worker_pids(), _says(last), time.monotonic())
    total = sum(statuses.values())
    return {
        "workers": server.workers,
        "requests": total,
        "failed": total - statuses[200],
        "statuses": dict(statuses),
        "failures": dict(failures),
        "deploys": deploys,
        "all_workers_on_last": final.seconds is not None,
    }


def scenario_redeploy(opts: Options) -> Section:
    """Failed calls while a pipeline is redeployed under load: ours with 4 workers, the reference with 1."""
    outcomes = {}
    for server in (ours(opts, 4, examples=(), probe="redeploy-0"), reference(opts, 1, examples=(), probe="redeploy-0")):
        log(f"redeploy: {server.label}, {opts.redeploys} redeploys, {opts.clients} clients")
        with running(server):
            outcomes[server.kind] = asyncio.run(redeploy_under_load(opts, server))
        outcome = outcomes[server.kind]
        log(f"  {outcome['failed']} of {outcome['requests']} failed {outcome['failures'] or ''}")
    rows = [
        [
            kind,
            str(o["workers"]),
            str(o["requests"]),
            str(o["failed"]),
            ", ".join(f"{k}: {v}" for k, v in sorted(o["statuses"].items())),
            ", ".join(str(d["status"]) for d in o["deploys"]),
            f"{statistics.median(d['seconds'] for d in o['deploys']):.2f}",
            "yes" if o["all_workers_on_last"] else "no",
        ]
        for kind, o in outcomes.items()
    ]
    details = markdown_table(
        [
            "server",
            "workers",
            "requests",
            "failed",
            "statuses",
            "deploy answers",
            "median deploy s",
            "every worker on the last",
        ],
        rows,
    )
    details += (
        f"\n{opts.clients} clients call `/{PROBE}/run` in a closed loop (a fresh connection per call) while"
        f" `POST /deploy_files` (overwrite) replaces it {opts.redeploys} times, {opts.redeploy_pause:g} s apart."
        " The published Hayhooks runs with 1 worker here: with several, a deploy reaches only the worker that"
        " received it, so the others never fail but keep serving the old code (see the deploy scenario).\n"
    )
    ours_o, ref_o = outcomes["ours"], outcomes["reference"]
    summary = [
        "redeploys under load (failed calls)",
        f"{ours_o['failed']} of {ours_o['requests']} (4 workers)",
        f"{ref_o['failed']} of {ref_o['requests']} (1 worker)",
        "0 failed",
        _met(ours_o["failed"] == 0 and ours_o["all_workers_on_last"]),
    ]
    return Section("redeploy", summary, details, outcomes)


def scenario_scaling(opts: Options) -> Section:
    """cpu_heavy throughput with 1 and 2 workers, ours and the published Hayhooks."""
    log("scaling: cpu_heavy, 1 vs 2 workers")
    servers = tuple(make(opts, workers, examples=("cpu_heavy",)) for make in (ours, reference) for workers in (1, 2))
    with running(*servers):
        results = measure_throughput(opts, servers, "/cpu_heavy/run", CPU_BODY)
    rps = {server.label: median_rps(results[server.label]) for server in servers}
    data: dict[str, Any] = {"rps": rps, "runs": {k: [asdict(r) for r in v] for k, v in results.items()}}
    rows = []
    for kind in ("ours", "reference"):
        one, two = (rps[s.label] for s in servers if s.kind == kind)
        data[f"{kind} 2w/1w"] = _ratio(two, one)
        rows.append([kind, f"{one:.1f}", f"{two:.1f}", f"{_ratio(two, one):.2f}×"])
    details = markdown_table(["server", "1 worker req/s", "2 workers req/s", "2 ÷ 1"], rows)
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
    started = time.monotonic()
    files = {"pipeline_wrapper.py": probe_wrapper(name)}
    reply = await http(
        server.port, "POST", "/deploy_files", {"name": name, "files": files, "overwrite": False}, timeout=60
    )
    answered = time.monotonic() - started
    spread = await until_every_worker(opts, server.port, name, pids, _says(name), started)
    return {
        "name": name,
        "deploy_status": reply.status,
        "deploy_seconds": round(answered, 4),
        "workers": len(pids),
        "reached": len(set(spread.reached) & set(pids)),
        **asdict(spread),
    }


def scenario_deploy(opts: Options) -> Section:
    """Deploy through one of 4 workers; time until every worker serves it, or count the ones that do."""
    outcomes: dict[str, list[dict[str, Any]]] = {}
    for server in (ours(opts, 4), reference(opts, 4)):
        log(f"deploy: {server.label}, {opts.deploys} new pipelines")
        with running(server):
            pids = server.worker_pids()
            outcomes[server.kind] = [
                asyncio.run(deploy_and_spread(opts, server, f"fresh_{number}", pids))
                for number in range(1, opts.deploys + 1)
            ]
        for outcome in outcomes[server.kind]:
            log(
                f"  {outcome['name']}: deploy {outcome['deploy_status']} in {outcome['deploy_seconds']:.3f}s,"
                f" {outcome['reached']}/{outcome['workers']} workers, all by {_seconds(outcome['seconds'])}"
            )
    rows = []
    for kind, runs in outcomes.items():
        times = [run["seconds"] for run in runs]
        complete = all(t is not None for t in times)
        rows.append(
            [
                kind,
                str(len(runs)),
                ", ".join(str(run["deploy_status"]) for run in runs),
                f"{statistics.median(run['deploy_seconds'] for run in runs):.3f}",
                ", ".join(f"{run['reached']}/{run['workers']}" for run in runs),
                _seconds(statistics.median(times)) if complete else "—",
                _seconds(max(times)) if complete else "—",
            ]
        )
    details = markdown_table(
        ["server", "deploys", "answers", "median deploy s", "workers serving it", "median s to all", "worst s to all"],
        rows,
    )
    details += (
        f"\nEach deploy posts a new pipeline to `/deploy_files` on one connection; the clock runs from sending it"
        f" until each worker pid has answered `/NAME/run` (polled for at most {opts.settle_timeout:g} s).\n"
    )
    ours_times = [run["seconds"] for run in outcomes["ours"]]
    ours_ok = all(t is not None for t in ours_times)
    reached_ref = [run["reached"] for run in outcomes["reference"]]
    summary = [
        "API deploy with 4 workers",
        f"every worker, median {_seconds(statistics.median(ours_times)) if ours_ok else '—'} s, "
        f"worst {_seconds(max(ours_times)) if ours_ok else '—'} s",
        f"reaches {min(reached_ref)}–{max(reached_ref)} of 4 workers",
        "every worker, ≤ 0.5 s",
        _met(ours_ok and max(ours_times) <= 0.5),
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


def markdown_table(headers: list[str], rows: list[list[str]]) -> str:
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
        "reference": f"hayhooks {REFERENCE_VERSION} in {opts.reference_venv}",
        "wrk": f"-t1 -c{opts.connections}, {opts.warmup} s warm-up + {opts.duration} s, median of {opts.repeats}",
    }


def render(sections: list[Section], env: dict[str, Any], seconds: float) -> str:
    lines = [
        "# hayhooks benchmark",
        "",
        f"{env['date']}, commit {env['commit']}, {env['cpu']}, Python {env['python']}; load average at start"
        f" {' '.join(f'{x:.2f}' for x in env['load_average'])}. Published Hayhooks: {env['reference']}."
        f" wrk: {env['wrk']}. Full run: {seconds:.0f} s.",
        "",
        markdown_table(["what", "ours", "published Hayhooks", "target", "met"], [s.summary for s in sections]),
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
    parser.add_argument("--repeats", type=int, default=2, help="wrk measurements per server, median (default 2)")
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
        scratch=Path(tempfile.mkdtemp(prefix="hayhooks-bench-")),
    )


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
    atexit.register(shutil.rmtree, opts.scratch, True)
    atexit.register(stop_all)  # runs first: servers stop before their scratch folder goes
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
