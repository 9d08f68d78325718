"""Real servers for tests: hayhooks or gunicorn on a free loopback port, always stopped again.

Processes are ``hayhooks.bench.server``'s (the harness ``hayhooks bench`` and ``benchmarks/`` use);
what is here adds the tests' defaults and the checks that need httpx.
"""

import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from hayhooks.bench import server as harness
from hayhooks.bench.server import ServerProcess, call, free_port, hayhooks_env, hayhooks_run_command

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
EXAMPLES = REPO / "examples" / "pipelines"


def server_env(pipelines_dir: Path, port: int, **extra: str) -> dict[str, str]:
    """No ``HAYHOOKS_*`` of the test process (nor the metrics folder it set up); a quick rescan."""
    return hayhooks_env(port, pipelines_dir, **{"HAYHOOKS_RESCAN_INTERVAL": "2", **extra})


def wait_until(condition: Callable[[], Any], timeout: float, interval: float = 0.05, message: str = "") -> Any:
    """Poll ``condition`` until it returns something truthy, which is returned; an HTTP or parsing
    error counts as not yet. Fails the test after ``timeout`` seconds."""
    last: dict[str, Any] = {"result": None, "error": None}

    def holds() -> bool:
        try:
            last["result"] = condition()
        except (httpx.HTTPError, OSError, ValueError, KeyError) as error:
            last["result"], last["error"] = None, error
        return bool(last["result"])

    if harness.wait_until(holds, timeout, interval):
        return last["result"]
    raise AssertionError(f"timed out after {timeout}s waiting for {message or condition}; last error: {last['error']}")


class Server(ServerProcess):
    """One server process (a gunicorn master or a single uvicorn worker), started at once from the
    repository's folder."""

    def __init__(
        self, command: list[str], env: dict[str, str], port: int, log: Path, workers: int | None = None
    ) -> None:
        super().__init__(command, env, port, log, cwd=REPO, workers=workers)
        self.start()

    def wait_ready(self, timeout: float = 60.0) -> "Server":
        """Until every worker has loaded the directory once: ``GET /ready`` is answered by one worker
        only, and a test that edits the directory must not race the others' first pass. With the count
        given (``workers``), until that many exist: gunicorn forks them up to 0.1 s apart."""

        def not_ready() -> str:
            status, _ = call(self.port, "GET", "/ready", timeout=2)
            if status != 200:
                return f"GET /ready to answer 200 (got {status})"
            status, answer = call(self.port, "GET", "/status", timeout=2)
            workers = answer.get("cluster", {}).get("workers", []) if isinstance(answer, dict) else []
            ready = {worker["pid"] for worker in workers if worker.get("ready")}
            waiting = self.worker_pids() - ready
            return f"workers {sorted(waiting)} to be ready (GET /status: {status})" if waiting else ""

        self.wait_for(not_ready, timeout, interval=0.1)
        return self

    def worker_pids(self) -> set[int]:  # type: ignore[override]  # the tests compare sets of pids
        return set(super().worker_pids())

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int | None:
        return super().stop(sig, timeout)


def start_gunicorn(
    pipelines_dir: Path, tmp_path: Path, workers: int | None, port: int | None = None, **env: str
) -> Server:
    """gunicorn as the container image runs it: ``gunicorn -c gunicorn.conf.py`` (on ``port``, else a free one).

    ``workers=None`` leaves the count to the configuration: one per CPU the server may use.
    """
    port = port or free_port()
    command = [str(BIN / "gunicorn"), "-c", str(REPO / "gunicorn.conf.py")]
    environment = server_env(pipelines_dir, port, **env)
    if workers is None:
        environment.pop("WEB_CONCURRENCY", None)
    else:
        environment["HAYHOOKS_WORKERS"] = str(workers)
    return Server(command, environment, port, tmp_path / f"gunicorn-{port}.log", workers)


def serving_examples(folder: Path) -> Iterator[Server]:
    """gunicorn with 2 workers over a copy of the bundled examples in ``folder``, the deploy API off so
    that nothing a test sends can change them; for a module fixture: ``yield from serving_examples(...)``."""
    pipelines = shutil.copytree(EXAMPLES, folder / "pipelines")
    started = start_gunicorn(pipelines, folder, workers=2, HAYHOOKS_DEPLOY_API="false")
    try:
        yield started.wait_ready()
    finally:
        started.stop()


def start_hayhooks(pipelines_dir: Path, tmp_path: Path, *args: str, **env: str) -> Server:
    port = free_port()
    command = hayhooks_run_command(sys.executable, *args)
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
