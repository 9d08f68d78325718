"""A gunicorn server to measure: start it on a free loopback port, wait until it serves, read its
processes' CPU time and memory, stop it and everything it started. Linux only (``/proc``)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024

# Set by the bench for every server; whatever the caller's environment says about them is dropped.
# The tokens too: the bench's own requests carry none.
CONTROLLED = {
    "HAYHOOKS_HOST",
    "HAYHOOKS_PORT",
    "HAYHOOKS_WORKERS",
    "HAYHOOKS_PIPELINES_DIR",
    "HAYHOOKS_ACCESS_LOG",
    "HAYHOOKS_PRELOAD",
    "HAYHOOKS_RUNTIME_DIR",
    "HAYHOOKS_ADMIN_TOKEN",
    "HAYHOOKS_API_TOKEN",
    "WEB_CONCURRENCY",
    "PROMETHEUS_MULTIPROC_DIR",
}


class ServerError(RuntimeError):
    """The server did not start, or did not come to serve the pipeline."""


# --- processes ---------------------------------------------------------------------------------------


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def children(pid: int) -> list[int]:
    """Direct children of ``pid``, from /proc."""
    try:
        return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def descendants(pid: int) -> list[int]:
    """``pid``'s children, their children, and so on."""
    found, todo = [], children(pid)
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children(child))
    return found


def cpu_ticks(pids: list[int]) -> int:
    """utime + stime of ``pids`` (those still alive), in clock ticks."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total


def machine_busy_seconds() -> float:
    """CPU time all cores spent busy so far, hypervisor steal included (/proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


# --- memory ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Memory:
    """A process's memory in bytes. PSS counts each shared page divided by the processes sharing it,
    so summing it over processes counts every page once; USS is what the process alone maps
    (Private_Clean + Private_Dirty): what its exit would free."""

    pss: int
    uss: int

    def __add__(self, other: Memory) -> Memory:
        return Memory(self.pss + other.pss, self.uss + other.uss)


def read_memory(pid: int) -> Memory | None:
    """PSS and USS of ``pid`` from ``/proc/PID/smaps_rollup``; None if the process is gone or the
    kernel (before 4.14) or permissions do not let us read it."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    return parse_smaps_rollup(text)


def parse_smaps_rollup(text: str) -> Memory | None:
    """The ``Pss`` and ``Private_*`` lines (in kB) of a ``smaps_rollup`` file."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if len(parts) == 2 and parts[1] == "kB" and parts[0].isdigit():
            values[key.strip()] = int(parts[0]) * 1024
    if "Pss" not in values:
        return None
    return Memory(values["Pss"], values.get("Private_Clean", 0) + values.get("Private_Dirty", 0))


@dataclass(frozen=True)
class TreeMemory:
    """A server's memory: summed over the master and its workers, and the workers' mean."""

    total: Memory
    master: Memory
    per_worker: Memory
    workers: int


def tree_memory(master: int, workers: list[int]) -> TreeMemory | None:
    """Memory of a gunicorn master and ``workers``; None if it cannot be read."""
    master_memory = read_memory(master)
    worker_memory = [memory for memory in map(read_memory, workers) if memory is not None]
    if master_memory is None or not worker_memory:
        return None
    summed = sum(worker_memory, Memory(0, 0))
    count = len(worker_memory)
    return TreeMemory(
        total=master_memory + summed,
        master=master_memory,
        per_worker=Memory(summed.pss // count, summed.uss // count),
        workers=count,
    )


# --- a tiny HTTP client for the control requests -------------------------------------------------------

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


def call(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 10.0) -> tuple[int, Any]:
    """One request; ``(status, decoded JSON or text)``; status 0 when there was no answer."""
    request = urllib.request.Request(f"http://{HOST}:{port}{path}", data=body, method=method)
    if body is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, raw = error.code, error.read()
    except (OSError, TimeoutError) as error:
        return 0, str(getattr(error, "reason", error))
    text = raw.decode("utf-8", errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds passed; whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


# --- the server ----------------------------------------------------------------------------------------


def server_env(port: int, workers: int, pipelines_dir: Path, preload: bool, log_dir: Path) -> dict[str, str]:
    """The caller's environment minus what the bench controls, plus the server's settings.

    Other ``HAYHOOKS_*`` settings (limits, log level, ...) apply as they would in production;
    relative paths in ``HAYHOOKS_ADDITIONAL_PYTHON_PATH`` are made absolute (the server runs in
    ``log_dir``, where no ``.env`` is read).
    """
    env = {key: value for key, value in os.environ.items() if key not in CONTROLLED}
    if extra := env.get("HAYHOOKS_ADDITIONAL_PYTHON_PATH"):
        env["HAYHOOKS_ADDITIONAL_PYTHON_PATH"] = os.pathsep.join(
            str(Path(part).absolute()) for part in extra.split(os.pathsep) if part
        )
    env.update(
        {
            "HAYSTACK_TELEMETRY_ENABLED": "False",
            "HAYHOOKS_HOST": HOST,
            "HAYHOOKS_PORT": str(port),
            "HAYHOOKS_WORKERS": str(workers),
            "HAYHOOKS_PIPELINES_DIR": str(pipelines_dir),
            "HAYHOOKS_ACCESS_LOG": "false",
            "HAYHOOKS_PRELOAD": "true" if preload else "false",
            "HAYHOOKS_GRACEFUL_TIMEOUT": env.get("HAYHOOKS_GRACEFUL_TIMEOUT", "5"),
        }
    )
    return env


class GunicornServer:
    """``python -m gunicorn --config python:hayhooks.run.gunicorn_conf`` in its own process group.

    Use as a context manager: it is stopped, with everything it started, however the block ends.
    """

    def __init__(self, pipelines_dir: Path, workers: int, preload: bool, scratch: Path) -> None:
        self.workers = workers
        self.preload = preload
        self.port = free_port()
        self.log = scratch / f"server-{workers}w-{'preload' if preload else 'nopreload'}-{self.port}.log"
        self._env = server_env(self.port, workers, pipelines_dir, preload, scratch)
        self._cwd = scratch
        self.process: subprocess.Popen | None = None

    @property
    def label(self) -> str:
        return f"{self.workers} worker{'s' if self.workers != 1 else ''}, preload {'on' if self.preload else 'off'}"

    def __enter__(self) -> GunicornServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        argv = [sys.executable, "-m", "gunicorn", "--config", "python:hayhooks.run.gunicorn_conf"]
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                argv, env=self._env, cwd=self._cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def worker_pids(self) -> list[int]:
        """The master's children: its workers."""
        return children(self.process.pid) if self.process else []

    def tree(self) -> list[int]:
        """The master and every process below it."""
        return [self.process.pid, *descendants(self.process.pid)] if self.process else []

    def cpu_seconds(self) -> float:
        """CPU time the server's live processes used so far."""
        return cpu_ticks(self.tree()) / CLOCK_TICKS

    def memory(self) -> TreeMemory | None:
        return tree_memory(self.process.pid, self.worker_pids()) if self.process else None

    def wait_serving(self, name: str, timeout: float) -> None:
        """Wait until every worker is up and serves ``name``; ServerError if the server exits, the
        pipeline fails to load, or ``timeout`` passes."""
        waiting_for = ["the server to answer"]

        def serving() -> bool:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise ServerError(f"the server ({self.label}) exited with code {code}; log:\n{self.log_tail()}")
            live = len(self.worker_pids())
            if live < self.workers:
                waiting_for[0] = f"{self.workers} worker processes (has {live})"
                return False
            status, answer = call(self.port, "GET", "/status", timeout=5)
            if status != 200 or not isinstance(answer, dict):
                waiting_for[0] = f"GET /status to answer 200 (got {status})"
                return False
            workers = answer.get("cluster", {}).get("workers", [])
            states = [worker.get("pipelines", {}).get(name, {}) for worker in workers]
            if any(state.get("state") == "failed" for state in states):
                raise ServerError(f"pipeline {name!r} failed to load: {self._load_error(name)}")
            ready = sum(state.get("state") == "ready" for state in states)
            waiting_for[0] = f"{name} ready in {self.workers} workers (ready in {ready})"
            return ready >= self.workers

        if not wait_until(serving, timeout, interval=0.25):
            raise ServerError(
                f"the server ({self.label}) was not serving after {timeout:g} s, still waiting for"
                f" {waiting_for[0]}; log:\n{self.log_tail()}"
            )

    def _load_error(self, name: str) -> str:
        status, answer = call(self.port, "GET", f"/status/{name}", timeout=5)
        details = answer.get("details", {}) if isinstance(answer, dict) else {}
        return str(details.get("error") or f"GET /status/{name} answered {status}")

    def wait_idle(self, timeout: float = 30.0, window: float = 0.5) -> bool:
        """Wait until the server used (almost) no CPU for ``window`` seconds: start-up is over."""
        pids = self.tree()

        def quiet() -> bool:
            before = cpu_ticks(pids)
            time.sleep(window)
            return cpu_ticks(pids) - before <= max(2, int(window * CLOCK_TICKS * 0.04))

        return wait_until(quiet, timeout, interval=0)

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL it if still there after ``timeout``; reap the master."""
        if self.process is None:
            return
        group = self.process.pid
        if self.process.poll() is None:
            for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, sig)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(wait)
                    break
        with contextlib.suppress(ProcessLookupError):  # workers the master left behind
            os.killpg(group, signal.SIGKILL)
