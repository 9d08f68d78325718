"""The one harness for server processes: ``hayhooks bench``, ``benchmarks/`` and the tests start
every server with it.

A server (a gunicorn master, a single uvicorn, or any other command) runs in its own process group
on a free loopback port with its output in a log file; its workers, CPU time and memory are read
from ``/proc``, never from what the server says of itself, so it measures other servers alike; it
is always stopped with everything it started. Linux only.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hayhooks.bench.cpu import CLOCK_TICKS, CpuMeter, cpu_ticks

HOST = "127.0.0.1"
MIB = 1024 * 1024
LOG_LINES = 40  # of a server's log, in an error saying why it did not start
NOT_INHERITED = frozenset({"WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR"})  # a server would run differently


class ServerError(RuntimeError):
    """The server exited, or was not ready in time."""


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


def _is_forked_checker(pid: int) -> bool:
    """A deploy checker forked by a preloading master: the master's command line, its own name
    (``hayhooks.cluster.checker.PROCESS_NAME``, not imported here: it would import Haystack)."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "hayhooks-check"
    except OSError:
        return False


def cmdline(pid: int) -> str:
    """The command line of ``pid``, arguments joined by spaces; empty once it is gone."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


@contextlib.contextmanager
def signals_end_the_run() -> Iterator[None]:
    """SIGTERM and SIGHUP unwind like Ctrl-C, so the servers and the temporary folders go too."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def wait_until(condition: Callable[[], bool], timeout: float, interval: float = 0.2) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds passed; whether it held."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


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
    """Memory of a master and its ``workers``; None if it cannot be read."""
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


# --- what a server runs with ---------------------------------------------------------------------------


def _not_a_setting(key: str) -> bool:
    return not key.startswith("HAYHOOKS_")


def child_env(inherit: Callable[[str], bool] = _not_a_setting, **settings: str) -> dict[str, str]:
    """This process's environment for a server: the variables ``inherit`` accepts (by default no
    ``HAYHOOKS_*``: the caller's own settings must not leak in), never ``NOT_INHERITED``, Haystack's
    telemetry off; then ``settings``."""
    env = {key: value for key, value in os.environ.items() if key not in NOT_INHERITED and inherit(key)}
    return {**env, "HAYSTACK_TELEMETRY_ENABLED": "False", **settings}


def hayhooks_env(
    port: int, pipelines_dir: Path, inherit: Callable[[str], bool] = _not_a_setting, **settings: str
) -> dict[str, str]:
    """``child_env`` for hayhooks serving ``pipelines_dir`` on loopback ``port``."""
    return child_env(
        inherit, HAYHOOKS_HOST=HOST, HAYHOOKS_PORT=str(port), HAYHOOKS_PIPELINES_DIR=str(pipelines_dir), **settings
    )


def gunicorn_command(python: str | Path = sys.executable) -> list[str]:
    """A gunicorn master with hayhooks' packaged configuration (workers from ``HAYHOOKS_WORKERS``)."""
    return [str(python), "-m", "gunicorn", "--config", "python:hayhooks.run.gunicorn_conf"]


def hayhooks_run_command(python: str | Path = sys.executable, *args: str) -> list[str]:
    """``hayhooks run ARGS`` of the environment ``python`` belongs to: one uvicorn unless ``--workers``."""
    return [str(Path(python).parent / "hayhooks"), "run", *args]


# --- the server ----------------------------------------------------------------------------------------


class ServerProcess:
    """``argv`` in its own process group, listening on loopback ``port``, its output in ``log``.

    ``workers``, when given, is how many worker processes it must have to be ready. Use as a
    context manager (started on entry), or ``start()`` and ``stop()``: stopping takes the whole
    group, whatever the server left behind.
    """

    def __init__(
        self, argv: list[str], env: dict[str, str], port: int, log: Path, *, cwd: Path, workers: int | None = None
    ) -> None:
        self.argv = argv
        self.env = env
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.log = log
        self.cwd = cwd
        self.workers = workers
        self.process: subprocess.Popen | None = None

    @property
    def label(self) -> str:
        """What messages call it."""
        return f"{Path(self.argv[0]).name} on port {self.port}"

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    def __enter__(self) -> ServerProcess:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> None:
        with self.log.open("wb") as log:  # the server keeps its own copy of the file
            self.process = subprocess.Popen(
                self.argv, env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def worker_pids(self) -> list[int]:
        """The processes that serve: the leader's children (not multiprocessing's resource tracker nor
        the deploy checker), or the leader itself when it has none and serves alone."""
        if self.process is None:
            return []
        helpers = ("resource_tracker", "hayhooks.cluster.checker")
        workers = [
            pid
            for pid in children(self.pid)
            if not any(name in cmdline(pid) for name in helpers) and not _is_forked_checker(pid)
        ]
        return workers or [self.pid]

    def tree(self) -> list[int]:
        """The leader and every process below it."""
        return [self.pid, *descendants(self.pid)] if self.process else []

    def cpu_seconds(self) -> float:
        """CPU time the server's live processes used so far."""
        return cpu_ticks(self.tree()) / CLOCK_TICKS

    def cpu_meter(self) -> CpuMeter:
        """Measure the CPU the server, each current worker and the rest use from now on."""
        return CpuMeter(self.cpu_seconds, self.worker_pids())

    def memory(self) -> TreeMemory | None:
        """The leader's and its workers' memory; None when it serves alone or it cannot be read."""
        if self.process is None:
            return None
        return tree_memory(self.pid, [pid for pid in self.worker_pids() if pid != self.pid])

    def wait_for(self, not_ready: Callable[[], str], timeout: float, interval: float = 0.25) -> None:
        """Poll until the server has its ``workers`` and ``not_ready()`` names nothing it still waits
        for (it may raise ServerError to give up); ServerError if the server exits or ``timeout`` passes."""
        waiting_for = ["the process to start"]

        def ready() -> bool:
            if self.process is None or self.process.poll() is not None:
                code = None if self.process is None else self.process.returncode
                raise ServerError(f"{self.label}: exited with code {code}; log:\n{self.log_tail()}")
            live = len(self.worker_pids())
            if self.workers is not None and live != self.workers:
                waiting_for[0] = f"{self.workers} worker processes (has {live})"
            else:
                waiting_for[0] = not_ready()
            return not waiting_for[0]

        if not wait_until(ready, timeout, interval):
            raise ServerError(
                f"{self.label}: not ready after {timeout:g} s, still waiting for {waiting_for[0]};"
                f" log:\n{self.log_tail()}"
            )

    def wait_idle(self, timeout: float = 30.0, window: float = 0.5) -> bool:
        """Wait until the server used (almost) no CPU for ``window`` seconds: start-up is over."""
        pids = self.tree()

        def quiet() -> bool:
            before = cpu_ticks(pids)
            time.sleep(window)
            return cpu_ticks(pids) - before <= max(2, int(window * CLOCK_TICKS * 0.04))

        return wait_until(quiet, timeout, interval=0)

    def output(self) -> str:
        """Everything the server wrote so far."""
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")
        return ""

    def log_tail(self, lines: int = LOG_LINES) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int | None:
        """``sig`` to the process group, SIGKILL if the leader is still there after ``timeout``, then
        SIGKILL to whatever is left of the group; the leader's exit code."""
        if self.process is None:
            return None
        group = self.process.pid
        if self.process.poll() is None:
            for signum, wait in ((sig, timeout), (signal.SIGKILL, 5.0)):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signum)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(wait)
                    break
        with contextlib.suppress(ProcessLookupError):  # workers the leader left behind
            os.killpg(group, signal.SIGKILL)
        return self.process.returncode


# --- a tiny HTTP client for the control requests -------------------------------------------------------

_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: never via a proxy


def call(port: int, method: str, path: str, body: bytes | None = None, timeout: float = 10.0) -> tuple[int, Any]:
    """One request on a new connection; ``(status, decoded JSON or text)``; status 0 when there was no answer."""
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
