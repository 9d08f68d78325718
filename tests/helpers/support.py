"""Real servers for tests: start hayhooks or gunicorn on a free loopback port, and always stop them."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(pipelines_dir: Path, port: int, **extra: str) -> dict[str, str]:
    # the test process's own settings (and the metrics folder it set up) must not leak into servers
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("HAYHOOKS_") and key != "PROMETHEUS_MULTIPROC_DIR"
    }
    env.update(
        {
            "HAYSTACK_TELEMETRY_ENABLED": "False",
            "HAYHOOKS_HOST": "127.0.0.1",
            "HAYHOOKS_PORT": str(port),
            "HAYHOOKS_PIPELINES_DIR": str(pipelines_dir),
            "HAYHOOKS_RESCAN_INTERVAL": "2",
            **extra,
        }
    )
    return env


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.05, message: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = condition()
        except (httpx.HTTPError, OSError, ValueError, KeyError) as error:
            last_error, result = error, None
        if result:
            return result
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message or condition}; last error: {last_error}")


class Server:
    """One server process (a gunicorn master or a single uvicorn worker) in its own process group."""

    def __init__(self, command: list[str], env: dict[str, str], port: int, log: Path) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self._log_file = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            command, env=env, cwd=REPO, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def wait_ready(self, timeout: float = 60.0) -> "Server":
        def ready() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.output()}")
            return httpx.get(f"{self.url}/ready", timeout=2).status_code == 200

        wait_until(ready, timeout, 0.1, "the server to be ready")
        return self

    def worker_pids(self) -> set[int]:
        """The master's live children (or the process itself when it serves alone), read from the OS,
        not from what hayhooks says of itself."""
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        pids = {int(pid) for pid in children.read_text().split()} if children.exists() else set()
        workers = {pid for pid in pids if b"resource_tracker" not in _cmdline(pid)}  # uvicorn's helper process
        return workers or {self.pid}

    def output(self) -> str:
        self._log_file.flush()
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, sig)
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
            except ProcessLookupError:
                pass
        # workers that outlived their master (they should not) are not left behind either
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self._log_file.close()
        return self.process.returncode


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def start_gunicorn(pipelines_dir: Path, tmp_path: Path, workers: int, **env: str) -> Server:
    port = free_port()
    command = [str(BIN / "gunicorn"), "-c", str(REPO / "gunicorn.conf.py")]
    environment = server_env(pipelines_dir, port, HAYHOOKS_WORKERS=str(workers), **env)
    return Server(command, environment, port, tmp_path / f"gunicorn-{port}.log")


def start_hayhooks(pipelines_dir: Path, tmp_path: Path, *args: str, **env: str) -> Server:
    port = free_port()
    command = [str(BIN / "hayhooks"), "run", *args]
    return Server(command, server_env(pipelines_dir, port, **env), port, tmp_path / f"hayhooks-{port}.log")


def answers_by_worker(
    url: str, name: str, body: dict, *, requests: int = 48, concurrency: int = 12
) -> dict[int, set[str | None]]:
    """Call ``/name/run`` many times at once over fresh connections; which revisions each worker gave.

    A failed request is recorded as revision ``None`` under pid 0.
    """

    def call(_: int) -> tuple[int, str | None]:
        response = httpx.post(f"{url}/{name}/run", json=body, timeout=30)
        if response.status_code != 200:
            return 0, None
        return int(response.headers["x-hayhooks-worker"]), response.headers["x-hayhooks-revision"]

    seen: dict[int, set[str | None]] = {}
    with ThreadPoolExecutor(concurrency) as pool:
        for pid, revision in pool.map(call, range(requests)):
            seen.setdefault(pid, set()).add(revision)
    return seen


def every_worker_serves(server: Server, name: str, body: dict, revision: str | None = None) -> str | None:
    """The one revision every worker answered with, if every live worker answered and all agree.

    ``revision`` given: only that revision counts. Requests are slow (the test pipelines sleep), so
    concurrent calls spread over all workers.
    """
    workers = server.worker_pids()
    seen = answers_by_worker(server.url, name, body)
    revisions = set().union(*seen.values()) if seen else set()
    if set(seen) != workers or len(revisions) != 1:
        return None
    (only,) = revisions
    return only if revision is None or only == revision else None


def no_worker_serves(server: Server, name: str) -> bool:
    seen = answers_by_worker(server.url, name, {})
    return set(seen) == {0}


def cluster(server: Server) -> dict:
    return httpx.get(f"{server.url}/status", timeout=5).json()["cluster"]
