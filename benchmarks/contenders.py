"""The servers compared: ours, a plain FastAPI app and the published Hayhooks, each run as its docs
say, on the harness of ``hayhooks.bench.server``, and ready only once every worker serves."""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from benchmarks.common import BENCH_DIR, EXAMPLES, Options
from benchmarks.probe import PROBE, probe_wrapper, replace_file
from hayhooks.bench.server import (
    HOST,
    ServerProcess,
    call,
    child_env,
    free_port,
    gunicorn_command,
    hayhooks_env,
    hayhooks_run_command,
)

ECHO_BODY = {"text": "ping"}
START_TIMEOUT = 180.0


class Contender(ServerProcess):
    """One server of the comparison: which kind it is, and ``not_ready``, what it still waits for
    (nothing: it serves)."""

    def __init__(
        self,
        kind: str,
        workers: int,
        port: int,
        argv: list[str],
        env: dict[str, str],
        not_ready: Callable[[Contender], str],
        *,
        scratch: Path,
        pipelines: Path | None = None,
    ) -> None:
        log = scratch / f"{kind}-{workers}w-{port}.log"
        super().__init__(argv, env, port, log, cwd=scratch, workers=workers)
        self.kind = kind
        self.pipelines = pipelines
        self._not_ready = not_ready

    @property
    def label(self) -> str:
        return f"{self.kind} ({self.workers} worker{'s' if self.workers > 1 else ''})"

    def wait_serving(self, timeout: float, interval: float = 0.25) -> None:
        """Wait until every worker is up and serves."""
        self.wait_for(lambda: self._not_ready(self), timeout, interval)

    def wait_ready(self, timeout: float) -> None:
        """Wait until every worker is up and serves, then until the start-up CPU burst is over."""
        self.wait_serving(timeout)
        self.wait_idle(timeout=60.0)


@contextlib.contextmanager
def running(*servers: Contender) -> Iterator[tuple[Contender, ...]]:
    """Start ``servers`` together (start-ups overlap), wait until all serve; always stop them all."""
    try:
        for server in servers:
            server.start()
        deadline = time.monotonic() + START_TIMEOUT
        for server in servers:
            server.wait_ready(max(1.0, deadline - time.monotonic()))
        yield servers
    finally:
        for server in servers:
            server.stop(timeout=20.0)


def _status(server: Contender) -> tuple[int, dict[str, Any]]:
    status, answer = call(server.port, "GET", "/status", timeout=5)
    return status, answer if status == 200 and isinstance(answer, dict) else {}


def _pipelines_dir(opts: Options, examples: tuple[str, ...], probe: str | None) -> Path:
    """A fresh pipelines directory with copies of ``examples`` and, if given, the probe at ``probe``."""
    root = Path(tempfile.mkdtemp(prefix="pipelines-", dir=opts.scratch))
    for example in examples:
        source = EXAMPLES / example
        if source.is_dir():
            shutil.copytree(source, root / example, ignore=shutil.ignore_patterns("__pycache__"))
        else:  # a YAML pipeline
            shutil.copy2(source, root / example)
    if probe is not None:
        replace_file(root / PROBE / "pipeline_wrapper.py", probe_wrapper(probe))
    return root


def _expected(pipelines: Path) -> set[str]:
    """The pipeline names of a directory: its folders and YAML files."""
    return {path.name if path.is_dir() else path.stem for path in pipelines.iterdir()}


def ours(
    opts: Options, workers: int, examples: tuple[str, ...] = ("echo",), probe: str | None = None, **settings: str
) -> Contender:
    """Our server as documented: ``hayhooks run`` for one worker, gunicorn for more; ``settings`` are
    ``HAYHOOKS_*`` variables it runs with."""
    pipelines = _pipelines_dir(opts, examples, probe)
    port = free_port()
    env = hayhooks_env(port, pipelines, HAYHOOKS_WORKERS=str(workers), **settings)
    python = opts.venv / "bin" / "python"
    argv = hayhooks_run_command(python) if workers == 1 else gunicorn_command(python)
    expected = _expected(pipelines)

    def not_ready(server: Contender) -> str:
        """Until every worker reports every pipeline ready in the cluster view, and they agree."""
        status, answer = _status(server)
        cluster = answer.get("cluster", {})
        states = [worker.get("pipelines", {}) for worker in cluster.get("workers", [])]
        if len(states) != server.workers or not cluster.get("converged"):
            return f"a converged view of {server.workers} workers (GET /status: {status}, {str(cluster)[:300]})"
        loading = sorted({name for state in states for name in expected if state.get(name, {}).get("state") != "ready"})
        return f"pipelines {', '.join(loading)} to be ready in every worker" if loading else ""

    return Contender("ours", workers, port, argv, env, not_ready, scratch=opts.scratch, pipelines=pipelines)


def plain(opts: Options, workers: int) -> Contender:
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

    def not_ready(server: Contender) -> str:
        status, _ = call(server.port, "POST", "/echo/run", json.dumps(ECHO_BODY).encode(), timeout=5)
        return "" if status == 200 else f"POST /echo/run to answer 200 (answers {status})"

    return Contender("plain", workers, port, argv, child_env(), not_ready, scratch=opts.scratch)


def reference(
    opts: Options,
    workers: int,
    examples: tuple[str, ...] = ("echo",),
    probe: str | None = None,
    ready: Callable[[Contender], str] | None = None,
) -> Contender:
    """The published Hayhooks, run as its docs say: ``hayhooks run --workers N``; ready once ``GET
    /status`` lists every pipeline (what one worker serves), or as ``ready`` says."""
    pipelines = _pipelines_dir(opts, examples, probe)
    port = free_port()
    argv = hayhooks_run_command(opts.reference_venv / "bin" / "python", "--pipelines-dir", str(pipelines))
    argv += ["--host", HOST, "--port", str(port), "--workers", str(workers)]
    expected = _expected(pipelines)

    def not_ready(server: Contender) -> str:
        _, answer = _status(server)
        missing = expected - set(answer.get("pipelines", []))
        return f"GET /status to list {', '.join(sorted(missing))}" if missing else ""

    env = child_env(lambda key: not key.startswith("HAYHOOKS_") and key != "PYTHONPATH")  # never our code
    return Contender(
        "reference", workers, port, argv, env, ready or not_ready, scratch=opts.scratch, pipelines=pipelines
    )
