"""Prometheus metrics summed over every worker, with prometheus-client's multiprocess mode.

Each worker writes its values to memory-mapped files in one shared folder; a scrape of any worker
adds them up. The folder is ``PROMETHEUS_MULTIPROC_DIR``, else ``<runtime dir>/metrics``; this
module sets the variable before importing prometheus-client, which reads it at import.

A dead worker's counters and histograms are folded into one archive file and its live gauges are
removed: by gunicorn's ``child_exit`` at once, and by a sweep before each scrape for servers
without that hook. So a scrape reads a few files however many workers were ever replaced.
"""

import os
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING

from hayhooks.server.cluster import runtime_dir
from hayhooks.settings import get_settings
from hayhooks.system import file_lock, is_alive

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_dir() -> Path:
    configured = os.environ.get(METRICS_DIR_ENV)
    return Path(configured) if configured else runtime_dir(get_settings()) / "metrics"


def prepare_metrics_dir(*, wipe: bool) -> Path:
    """Create the folder (emptied when ``wipe``: a master starting) and export it to workers."""
    folder = metrics_dir()
    if wipe and folder.is_dir():
        for stale in folder.glob("*.db"):
            stale.unlink(missing_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[METRICS_DIR_ENV] = str(folder)
    return folder


prepare_metrics_dir(wipe=False)

from prometheus_client import (  # noqa: E402  - must follow the environment set up above
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.mmap_dict import MmapedDict  # noqa: E402
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead  # noqa: E402

if TYPE_CHECKING:
    from hayhooks.pipelines.registry import PipelineRegistry

__all__ = ["CONTENT_TYPE_LATEST", "archive_dead_worker", "observe_registry", "render", "RunMetrics"]

REQUESTS = Counter(
    "hayhooks_requests_total", "Pipeline run requests, by pipeline and HTTP status.", ["pipeline", "status"]
)
LATENCY = Histogram(
    "hayhooks_request_duration_seconds",
    "Time to answer a pipeline run request.",
    ["pipeline"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
IN_FLIGHT = Gauge(
    "hayhooks_requests_in_flight",
    "Pipeline run requests being answered now.",
    ["pipeline"],
    multiprocess_mode="livesum",
)
LOADED = Gauge(
    "hayhooks_pipeline_loaded",
    "1 for each revision a live worker serves (0 once replaced or removed).",
    ["pipeline", "revision"],
    multiprocess_mode="liveall",
)
RELOADS = Counter(
    "hayhooks_reloads_total", "Pipeline loads by the watcher/reconciler, by outcome.", ["pipeline", "outcome"]
)
DEPLOYS = Counter("hayhooks_deploys_total", "Deploys and undeploys through the API, by outcome.", ["action", "outcome"])
WORKERS = Gauge("hayhooks_workers", "Live worker processes.", multiprocess_mode="livesum")

_DEAD_FILE = re.compile(r"^(counter|histogram|gauge_live\w+?)_(\d+)\.db$")
_ARCHIVED_KINDS = ("counter", "histogram")


class RunMetrics:
    """The metric children of one pipeline, resolved once so a request only adds numbers."""

    def __init__(self, pipeline: str) -> None:
        self.pipeline = pipeline
        self.in_flight = IN_FLIGHT.labels(pipeline)
        self.latency = LATENCY.labels(pipeline)

    def finished(self, status: int, seconds: float) -> None:
        REQUESTS.labels(self.pipeline, str(status)).inc()
        self.latency.observe(seconds)


def observe_registry(registry: "PipelineRegistry") -> None:
    """Keep ``hayhooks_pipeline_loaded`` and ``hayhooks_reloads_total`` in step with a worker's registry."""
    served: dict[str, str] = {}
    failed: dict[str, str | None] = {}

    def on_change() -> None:
        now = {name: loaded.revision for name, loaded in registry.serving().items()}
        for name, revision in served.items():
            if now.get(name) != revision:
                LOADED.labels(name, revision).set(0)
        for name, revision in now.items():
            if served.get(name) != revision:
                LOADED.labels(name, revision).set(1)
                RELOADS.labels(name, "success").inc()
        for status in registry.statuses():
            if status.state == "failed" and failed.get(status.name) != status.target:
                RELOADS.labels(status.name, "failure").inc()
            if status.state == "failed":
                failed[status.name] = status.target
            else:
                failed.pop(status.name, None)
        served.clear()
        served.update(now)

    registry.on_change(on_change)


def worker_started() -> None:
    """Count this process as a live worker (called in its lifespan, never in a preloading master)."""
    WORKERS.set(1)


def count_deploy(action: str, outcome: str) -> None:
    DEPLOYS.labels(action, outcome).inc()


def render() -> bytes:
    """The exposition text of every live and archived worker's metrics."""
    folder = metrics_dir()
    sweep_dead_workers(folder)
    registry = CollectorRegistry()
    MultiProcessCollector(registry, path=str(folder))
    return generate_latest(registry)


def sweep_dead_workers(folder: Path) -> None:
    """Archive the files of workers that are gone (for servers whose master has no exit hook)."""
    pids = {int(match.group(2)) for match in map(_DEAD_FILE.match, os.listdir(folder)) if match}
    for pid in pids - {os.getpid()}:
        if not is_alive(pid):
            archive_dead_worker(pid, folder)


def archive_dead_worker(pid: int, folder: Path | None = None) -> None:
    """Fold a dead worker's counters and histograms into the archive and drop its live gauges."""
    folder = folder or metrics_dir()
    mark_process_dead(pid, str(folder))
    with file_lock(folder / ".archive.lock"):  # workers sweeping and the master reaping
        for kind in _ARCHIVED_KINDS:
            dead = folder / f"{kind}_{pid}.db"
            if not dead.exists():
                continue
            archive = MmapedDict(str(folder / f"{kind}_archive.db"))
            try:
                for key, value, _timestamp, _position in MmapedDict.read_all_values_from_file(str(dead)):
                    archived, _ = archive.read_value(key)
                    archive.write_value(key, archived + value, time.time())
            finally:
                archive.close()
            dead.unlink()
