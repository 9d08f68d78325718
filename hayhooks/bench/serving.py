"""The server ``hayhooks bench`` measures: gunicorn with N workers on a copy of the pipelines, ready
once every worker serves the pipeline."""

from __future__ import annotations

import os
from pathlib import Path

from hayhooks.bench.server import ServerError, ServerProcess, call, free_port, gunicorn_command, hayhooks_env

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
}


def bench_env(port: int, workers: int, pipelines_dir: Path, preload: bool) -> dict[str, str]:
    """The caller's environment minus what the bench controls, plus the server's settings.

    Other ``HAYHOOKS_*`` settings (limits, log level, ...) apply as they would in production;
    relative paths in ``HAYHOOKS_ADDITIONAL_PYTHON_PATH`` are made absolute (the server runs in the
    scratch folder, where no ``.env`` is read).
    """
    env = hayhooks_env(
        port,
        pipelines_dir,
        inherit=lambda key: key not in CONTROLLED,
        HAYHOOKS_WORKERS=str(workers),
        HAYHOOKS_ACCESS_LOG="false",
        HAYHOOKS_PRELOAD="true" if preload else "false",
        HAYHOOKS_GRACEFUL_TIMEOUT=os.environ.get("HAYHOOKS_GRACEFUL_TIMEOUT", "5"),
    )
    if extra := env.get("HAYHOOKS_ADDITIONAL_PYTHON_PATH"):
        env["HAYHOOKS_ADDITIONAL_PYTHON_PATH"] = os.pathsep.join(
            str(Path(part).absolute()) for part in extra.split(os.pathsep) if part
        )
    return env


class BenchServer(ServerProcess):
    """``python -m gunicorn --config python:hayhooks.run.gunicorn_conf`` with ``workers`` workers."""

    def __init__(self, pipelines_dir: Path, workers: int, preload: bool, scratch: Path) -> None:
        port = free_port()
        log = scratch / f"server-{workers}w-{'preload' if preload else 'nopreload'}-{port}.log"
        env = bench_env(port, workers, pipelines_dir, preload)
        super().__init__(gunicorn_command(), env, port, log, cwd=scratch, workers=workers)
        self.preload = preload

    @property
    def label(self) -> str:
        return f"{self.workers} worker{'s' if self.workers != 1 else ''}, preload {'on' if self.preload else 'off'}"

    def wait_serving(self, name: str, timeout: float) -> None:
        """Wait until every worker serves ``name``; ServerError if the server exits, the pipeline
        fails to load, or ``timeout`` passes."""

        def not_ready() -> str:
            status, answer = call(self.port, "GET", "/status", timeout=5)
            if status != 200 or not isinstance(answer, dict):
                return f"GET /status to answer 200 (got {status})"
            workers = answer.get("cluster", {}).get("workers", [])
            states = [worker.get("pipelines", {}).get(name, {}) for worker in workers]
            if any(state.get("state") == "failed" for state in states):
                raise ServerError(f"pipeline {name!r} failed to load: {self._load_error(name)}")
            ready = sum(state.get("state") == "ready" for state in states)
            return "" if ready >= self.workers else f"{name} ready in {self.workers} workers (ready in {ready})"

        self.wait_for(not_ready, timeout)

    def _load_error(self, name: str) -> str:
        status, answer = call(self.port, "GET", f"/status/{name}", timeout=5)
        details = answer.get("details", {}) if isinstance(answer, dict) else {}
        return str(details.get("error") or f"GET /status/{name} answered {status}")
