"""Prometheus metrics summed over every worker, with prometheus-client's multiprocess mode.

Each worker writes its values to memory-mapped files in one shared folder (:class:`MetricsStore`);
a scrape of any worker adds them up. A dead worker's counters and histograms are folded into one
archive file and its live gauges are removed: by gunicorn's ``child_exit`` at once, and by a sweep
before each scrape for servers without that hook. So a scrape reads a few files however many
workers were ever replaced.
"""

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from hayhooks.cluster.runtime import runtime_dir
from hayhooks.settings import Settings
from hayhooks.system import file_lock, is_alive

if TYPE_CHECKING:
    from hayhooks.pipelines.registry import PipelineRegistry

__all__ = ["CONTENT_TYPE_LATEST", "MetricsStore", "RunMetrics", "ServerMetrics", "metrics_dir"]

METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_DEAD_FILE = re.compile(r"^(counter|histogram|gauge_live\w+?)_(\d+)\.db$")
_ARCHIVED_KINDS = ("counter", "histogram")


def metrics_dir(settings: Settings) -> Path:
    return Path(settings.metrics_dir) if settings.metrics_dir else runtime_dir(settings) / "metrics"


class MetricsStore:
    """The folder of one server's metric files: written by its workers, read by any scrape."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def prepare(self, *, wipe: bool) -> None:
        """Create the folder; ``wipe``: a master starting drops what an earlier server left."""
        if wipe and self.folder.is_dir():
            for stale in self.folder.glob("*.db"):
                stale.unlink(missing_ok=True)
        self.folder.mkdir(parents=True, exist_ok=True)

    def open_for_writing(self) -> "ServerMetrics":
        """This process's metrics, written into the folder."""
        self.prepare(wipe=False)
        # prometheus-client takes its multiprocess folder only from this variable, read whenever a
        # process opens its value files; the workers a preloading master forks inherit it.
        os.environ[METRICS_DIR_ENV] = str(self.folder)
        prometheus_values.ValueClass = prometheus_values.MultiProcessValue()
        return ServerMetrics()

    def render(self, workers: list[dict]) -> bytes:
        """The exposition text of every live and archived worker's metrics.

        ``workers``: the board's records of the live workers, for what each serves now.
        """
        self.sweep_dead_workers()
        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=str(self.folder))
        registry.register(_ServedRevisions(workers))
        return generate_latest(registry)

    def sweep_dead_workers(self) -> None:
        """Archive the files of workers that are gone (for servers whose master has no exit hook)."""
        pids = {int(match.group(2)) for match in map(_DEAD_FILE.match, os.listdir(self.folder)) if match}
        for pid in pids - {os.getpid()}:
            if not is_alive(pid):
                self.archive_dead_worker(pid)

    def archive_dead_worker(self, pid: int) -> None:
        """Fold a dead worker's counters and histograms into the archive and drop its live gauges."""
        mark_process_dead(pid, str(self.folder))
        with file_lock(self.folder / ".archive.lock"):  # workers sweeping and the master reaping
            for kind in _ARCHIVED_KINDS:
                dead = self.folder / f"{kind}_{pid}.db"
                if not dead.exists():
                    continue
                archive = MmapedDict(str(self.folder / f"{kind}_archive.db"))
                try:
                    for key, value, _timestamp, _position in MmapedDict.read_all_values_from_file(str(dead)):
                        archived, _ = archive.read_value(key)
                        archive.write_value(key, archived + value, time.time())
                finally:
                    archive.close()
                dead.unlink()


class _ServedRevisions(Collector):
    """``hayhooks_pipeline_loaded`` from the board, not from value files.

    A multiprocess gauge keeps one row per label set for as long as its worker lives, so a server
    redeployed every few minutes would list (and hold in memory) every revision it ever served.
    """

    def __init__(self, workers: list[dict]) -> None:
        self.workers = workers

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "hayhooks_pipeline_loaded",
            "1 for each revision a live worker serves, by pipeline, revision and worker pid.",
            labels=["pipeline", "revision", "pid"],
        )
        for worker in self.workers:
            for name, entry in sorted(worker.get("pipelines", {}).items()):
                if entry.get("revision"):
                    family.add_metric([name, entry["revision"], str(worker["pid"])], 1)
        yield family


class RunMetrics:
    """The metric children of one pipeline, resolved once so a request only adds numbers."""

    def __init__(self, metrics: "ServerMetrics", pipeline: str) -> None:
        self.pipeline = pipeline
        self._requests = metrics.requests
        self.in_flight = metrics.in_flight.labels(pipeline)
        self.latency = metrics.latency.labels(pipeline)

    def finished(self, status: int, seconds: float) -> None:
        self._requests.labels(self.pipeline, str(status)).inc()
        self.latency.observe(seconds)


class ServerMetrics:
    """The metrics one worker writes. Not registered globally: a scrape reads the store's files."""

    def __init__(self) -> None:
        self.requests = Counter(
            "hayhooks_requests_total",
            "Pipeline run requests, by pipeline and HTTP status.",
            ["pipeline", "status"],
            registry=None,
        )
        self.latency = Histogram(
            "hayhooks_request_duration_seconds",
            "Time to answer a pipeline run request.",
            ["pipeline"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=None,
        )
        self.in_flight = Gauge(
            "hayhooks_requests_in_flight",
            "Pipeline run requests being answered now.",
            ["pipeline"],
            multiprocess_mode="livesum",
            registry=None,
        )
        self.reloads = Counter(
            "hayhooks_reloads_total",
            "Pipeline loads by the watcher/reconciler, by outcome.",
            ["pipeline", "outcome"],
            registry=None,
        )
        self.deploys = Counter(
            "hayhooks_deploys_total",
            "Deploys and undeploys through the API, by outcome.",
            ["action", "outcome"],
            registry=None,
        )
        self.workers = Gauge("hayhooks_workers", "Live worker processes.", multiprocess_mode="livesum", registry=None)
        self.abandoned_loads = Gauge(
            "hayhooks_abandoned_loads",
            "Loads that overran HAYHOOKS_LOAD_TIMEOUT and could not be stopped, still running in live workers.",
            multiprocess_mode="livesum",
            registry=None,
        )
        self.retirements = Counter(
            "hayhooks_worker_retirements_total",
            "Workers that retired because a load they could not stop burned a core.",
            registry=None,
        )
        self.tool_calls = Counter(
            "hayhooks_mcp_tool_calls_total",
            "MCP tool calls, by tool and outcome (ok, error, invalid, busy, timeout, refused).",
            ["tool", "outcome"],
            registry=None,
        )
        self.tool_latency = Histogram(
            "hayhooks_mcp_tool_call_duration_seconds",
            "Time to answer an MCP tool call.",
            ["tool"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=None,
        )

    def for_pipeline(self, pipeline: str) -> RunMetrics:
        return RunMetrics(self, pipeline)

    def worker_started(self) -> None:
        """Count this process as a live worker (called in its lifespan, never in a preloading master)."""
        self.workers.set(1)

    def count_tool_call(self, tool: str, outcome: str, seconds: float) -> None:
        self.tool_calls.labels(tool, outcome).inc()
        self.tool_latency.labels(tool).observe(seconds)

    def count_deploy(self, action: str, outcome: str) -> None:
        self.deploys.labels(action, outcome).inc()

    def observe_registry(self, registry: "PipelineRegistry") -> None:
        """Count a worker's loads in ``hayhooks_reloads_total`` as its registry changes."""
        served: dict[str, str] = {}
        failed: dict[str, str | None] = {}

        def on_change() -> None:
            now = {name: loaded.revision for name, loaded in registry.serving().items()}
            for name, revision in now.items():
                if served.get(name) != revision:
                    self.reloads.labels(name, "success").inc()
            for status in registry.statuses():
                if status.state == "failed" and failed.get(status.name) != status.target:
                    self.reloads.labels(status.name, "failure").inc()
                if status.state == "failed":
                    failed[status.name] = status.target
                else:
                    failed.pop(status.name, None)
            served.clear()
            served.update(now)

        registry.on_change(on_change)
