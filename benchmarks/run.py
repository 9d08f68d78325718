#!/usr/bin/env python3
"""Benchmark hayhooks against a plain FastAPI app and the published Hayhooks 2.1.0, side by side.

Each scenario starts the servers it needs on free 127.0.0.1 ports (each in its own process group,
always stopped again), measures, and reports ratios taken in the same run, as TARGETS.md asks:

    overhead     /echo/run req/s: ours vs plain FastAPI vs published Hayhooks, 1 and 2 workers (wrk)
    propagation  a file change in the pipelines directory until each of 4 workers answers with it
    redeploy     10 redeploys through POST /deploy_files while 6 clients call the pipeline
    scaling      cpu_heavy req/s with 2 workers vs 1 (wrk), ours and published Hayhooks
    deploy       deploy a new pipeline through one of 4 workers; until every worker serves it

Usage (stdlib only; run it with any Python 3.11+, the servers run from their own venvs):

    benchmarks/setup_reference.sh                      # once: wrk + benchmarks/.reference-venv
    HAYSTACK_TELEMETRY_ENABLED=False python benchmarks/run.py              # every scenario
    python benchmarks/run.py overhead scaling --duration 5 --repeats 1     # a selection
    python benchmarks/run.py --reference-venv /tmp/refvenv                 # reuse a reference venv

Prints Markdown and writes ``benchmarks/results/latest.md`` and ``latest.json``.
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
HOST = "127.0.0.1"
REFERENCE_VERSION = "2.1.0"
SCENARIOS = ("overhead", "propagation", "redeploy", "scaling", "deploy")
ECHO_BODY = {"text": "ping"}
CPU_BODY: dict[str, Any] = {}
PROBE = "probe"  # the pipeline the propagation, redeploy and deploy scenarios change


@dataclass(frozen=True)
class Options:
    """Everything a run is configured with (see ``parse_args``)."""

    scenarios: tuple[str, ...]
    venv: Path
    reference_venv: Path
    duration: float
    warmup: float
    connections: int
    repeats: int
    changes: int
    redeploys: int
    clients: int
    deploys: int
    settle_timeout: float
    poll_concurrency: int
    results: Path
    scratch: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="hayhooks-bench-")))


# --- a tiny HTTP/1.1 client: one fresh connection per request ---------------------------------------


@dataclass
class Reply:
    """One HTTP answer, or ``status == 0`` and ``error`` when there was none."""

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
    """Send one request on a new connection (``Connection: close``) and read the whole answer."""
    data = b"" if payload is None else json.dumps(payload).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    )
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
    except (OSError, TimeoutError) as error:
        return Reply(0, error=f"connect: {type(error).__name__}: {error}")
    try:
        writer.write(head.encode() + data)
        raw = await asyncio.wait_for(reader.read(), timeout)
    except (OSError, TimeoutError) as error:
        return Reply(0, error=f"read: {type(error).__name__}: {error}")
    finally:
        writer.close()
    return _parse_reply(raw)


def _parse_reply(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return Reply(0, error=f"bad answer: {raw[:80]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(parts[1]), headers, body)


def fetch(port: int, method: str, path: str, payload: Any = None, timeout: float = 10.0) -> Reply:
    """``http`` for synchronous callers."""
    return asyncio.run(http(port, method, path, payload, timeout))


# --- processes ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    """Direct children of ``pid`` (gunicorn's or uvicorn's workers), from /proc."""
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


_LIVE: set[Server] = set()


def stop_all() -> None:
    """Stop every server still running (atexit, and on SIGTERM)."""
    for server in list(_LIVE):
        server.stop()


class Server:
    """One server process tree in its own process group, on its own port."""

    def __init__(
        self,
        label: str,
        argv: list[str],
        workers: int,
        ready: Callable[[Server], bool],
        *,
        env: dict[str, str],
        cwd: Path,
        log: Path,
    ) -> None:
        self.label = label
        self.argv = argv
        self.workers = workers
        self.port = int(env["BENCH_PORT"])
        self._ready = ready
        self._env = env
        self._cwd = cwd
        self.log = log
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 120.0) -> Server:
        """Launch, then wait until it serves and its processes went idle; raise if it does not."""
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv, env=self._env, cwd=self._cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        _LIVE.add(self)
        if not wait_until(self._serving, timeout, interval=0.25):
            self.stop()
            raise RuntimeError(f"{self.label} did not become ready in {timeout:.0f}s; log tail:\n{self.log_tail()}")
        self.wait_idle()
        return self

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
        """Wait until the whole tree used (almost) no CPU for ``window`` seconds: start-up is over."""
        assert self.process is not None
        pids = [self.process.pid, *children(self.process.pid)]

        def quiet() -> bool:
            before = cpu_ticks(pids)
            time.sleep(window)
            return cpu_ticks(pids) - before <= 2

        return wait_until(quiet, timeout, interval=0)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group, SIGKILL what is left after ``timeout``."""
        _LIVE.discard(self)
        if self.process is None or self.process.returncode is not None:
            return
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout)
                break
            except subprocess.TimeoutExpired:
                continue
        with contextlib.suppress(ProcessLookupError):  # stragglers of the group, if any
            os.killpg(self.process.pid, signal.SIGKILL)

    def __enter__(self) -> Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def running(*servers: Server) -> Iterator[tuple[Server, ...]]:
    """Start ``servers`` together (their start-ups overlap) and always stop all of them."""
    try:
        for server in servers:
            server._launch_only = True  # type: ignore[attr-defined]
        _start_together(servers)
        yield servers
    finally:
        for server in servers:
            server.stop()


def _start_together(servers: tuple[Server, ...], timeout: float = 180.0) -> None:
    """Launch every server first, then wait for each: start-ups overlap instead of adding up."""
    for server in servers:
        with server.log.open("ab") as log:
            server.process = subprocess.Popen(
                server.argv,
                env=server._env,
                cwd=server._cwd,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _LIVE.add(server)
    deadline = time.monotonic() + timeout
    for server in servers:
        if not wait_until(server._serving, max(1.0, deadline - time.monotonic()), interval=0.25):
            raise RuntimeError(f"{server.label} did not become ready in time; log tail:\n{server.log_tail()}")
    for server in servers:
        server.wait_idle()
