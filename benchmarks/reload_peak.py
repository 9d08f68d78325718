"""The reload peak: the memory a 4-worker server takes for a moment while it reloads a memory-heavy pipeline.

Our server only: the published Hayhooks has no watcher and no cap on workers loading at once. Each
worker holds the old and the new revision while it swaps, so without a cap the 4 workers take 4
extra copies of the pipeline's model together; with ``HAYHOOKS_MAX_WORKERS_LOADING=1`` they take
turns and the server holds one extra copy at most.

gunicorn with 4 workers serves one wrapper whose ``setup()`` allocates ``BALLAST_MIB`` and touches
every page (so it is resident, like a loaded model), then sleeps ``LOAD_SECONDS`` (the rest of a
model's load). The wrapper is rewritten in the directory ``RELOADS`` times for each setting; the
server's total PSS (master and workers) is sampled every ``SAMPLE_SECONDS`` from before the rewrite
until every worker serves the new revision and a little after. Reported per setting: the steady
PSS before the reloads, the highest peak, and the median time from the rewrite until every worker
serves the new revision (by the cluster view of ``/status``).
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

from benchmarks.common import Options, log, markdown_table
from benchmarks.contenders import Contender, ours, running
from benchmarks.probe import replace_file
from hayhooks.bench.server import MIB, call

NAME = "heavy"
WORKERS = 4
BALLAST_MIB = 256
LOAD_SECONDS = 0.5
RELOADS = 3
SAMPLE_SECONDS = 0.02
STEADY_SECONDS = 1.0  # sampled before each rewrite: the steady PSS
AFTER_SECONDS = 1.0  # sampled after every worker serves the new revision: the old revisions are gone
SETTLE_TIMEOUT = 60.0
CAPS = {"unset": {}, "1": {"HAYHOOKS_MAX_WORKERS_LOADING": "1"}}
# One extra copy of the model, and what a worker's load allocates besides it.
PEAK_TARGET_MIB = 1.25 * BALLAST_MIB

_WRAPPER = '''"""heavy: a model of BALLAST_MIB MiB, resident, loaded in LOAD_SECONDS; revision @VERSION@."""

import time

from hayhooks import BasePipelineWrapper

VERSION = "@VERSION@"
PAGE = 4096


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None
        size = @BALLAST@ * 1024 * 1024
        self.model = bytearray(size)
        self.model[::PAGE] = b"\\x01" * (size // PAGE)  # every page written, so resident
        time.sleep(@SECONDS@)

    def run_api(self) -> str:
        """Say which revision answered."""
        return VERSION
'''


def heavy_wrapper(version: str) -> str:
    return (
        _WRAPPER.replace("@VERSION@", version)
        .replace("@BALLAST@", str(BALLAST_MIB))
        .replace("@SECONDS@", str(LOAD_SECONDS))
    )


def served(server: Contender) -> dict[int, tuple[str | None, str | None]]:
    """Each worker's ``(revision, state)`` of the pipeline, by the cluster view."""
    status, answer = call(server.port, "GET", "/status", timeout=5)
    workers = answer.get("cluster", {}).get("workers", []) if status == 200 and isinstance(answer, dict) else []
    entries = {worker["pid"]: worker.get("pipelines", {}).get(NAME, {}) for worker in workers}
    return {pid: (entry.get("revision"), entry.get("state")) for pid, entry in entries.items()}


def one_new_revision(server: Contender, old: set[str | None]) -> str | None:
    """The revision every worker serves, ready, if it is one and not an ``old`` one (a worker waiting for
    its turn, or loading, still serves an old revision)."""
    now = served(server)
    revisions = {revision for revision, _ in now.values()}
    if len(now) != WORKERS or any(state != "ready" for _, state in now.values()) or len(revisions) != 1:
        return None
    return None if revisions & old else next(iter(revisions))


class PssSampler:
    """The server's total PSS every ``SAMPLE_SECONDS``, in a thread, as ``(seconds since start, MiB)``."""

    def __init__(self, server: Contender) -> None:
        self.server = server
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.started = time.monotonic()

    def __enter__(self) -> PssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _sample(self) -> None:
        while not self._stop.is_set():
            memory = self.server.memory()
            if memory is not None:
                self.samples.append((time.monotonic() - self.started, memory.total.pss / MIB))
            self._stop.wait(SAMPLE_SECONDS)

    def between(self, start: float, end: float) -> list[float]:
        return [mib for at, mib in self.samples if start <= at < end]


def reload_once(server: Contender, sampler: PssSampler, version: str, old: set[str | None]) -> dict[str, Any]:
    """Rewrite the wrapper; the steady PSS before, the peak, the PSS after, and the time to every worker."""
    assert server.pipelines is not None
    time.sleep(STEADY_SECONDS)
    steady_from = time.monotonic() - sampler.started - STEADY_SECONDS
    written = replace_file(server.pipelines / NAME / "pipeline_wrapper.py", heavy_wrapper(version))
    written_at = written - sampler.started
    revision = None
    deadline = time.monotonic() + SETTLE_TIMEOUT
    while revision is None and time.monotonic() < deadline:
        revision = one_new_revision(server, old)
        time.sleep(0.01)
    everywhere = time.monotonic() - written if revision else None
    time.sleep(AFTER_SECONDS)
    ended = time.monotonic() - sampler.started
    steady = sampler.between(steady_from, written_at)
    during = sampler.between(written_at, ended)
    after = sampler.between(ended - AFTER_SECONDS / 2, ended)
    return {
        "version": version,
        "revision": revision,
        "every_worker_s": round(everywhere, 3) if everywhere is not None else None,
        "steady_mib": round(statistics.median(steady), 1) if steady else None,
        "peak_mib": round(max(during), 1) if during else None,
        "after_mib": round(statistics.median(after), 1) if after else None,
        "samples": len(during),
    }


def measure(opts: Options, cap: str) -> dict[str, Any]:
    """Start a 4-worker server with the cap, serve the heavy wrapper, reload it ``RELOADS`` times."""
    log(f"reload-peak: 4 workers, HAYHOOKS_MAX_WORKERS_LOADING {cap}, {RELOADS} reloads of {BALLAST_MIB} MiB")
    server = ours(opts, WORKERS, examples=(), HAYHOOKS_DEPLOY_API="false", **CAPS[cap])
    assert server.pipelines is not None
    replace_file(server.pipelines / NAME / "pipeline_wrapper.py", heavy_wrapper("v0"))
    with running(server):
        started = time.monotonic()
        revision = None
        while revision is None and time.monotonic() - started < SETTLE_TIMEOUT:
            revision = one_new_revision(server, set())
            time.sleep(0.05)
        cold_start = time.monotonic() - started
        server.wait_idle(timeout=30.0)
        rounds, old = [], {revision}
        with PssSampler(server) as sampler:
            for number in range(1, RELOADS + 1):
                outcome = reload_once(server, sampler, f"v{number}", old)
                old.add(outcome["revision"])
                rounds.append(outcome)
                log(
                    f"  reload {number}: steady {outcome['steady_mib']} MiB, peak {outcome['peak_mib']} MiB,"
                    f" every worker after {outcome['every_worker_s']} s"
                )
    times = [r["every_worker_s"] for r in rounds if r["every_worker_s"] is not None]
    steady = [r["steady_mib"] for r in rounds if r["steady_mib"] is not None]
    peaks = [r["peak_mib"] for r in rounds if r["peak_mib"] is not None]
    return {
        "cap": cap,
        "cold_start_s": round(cold_start, 2),
        "steady_mib": round(statistics.median(steady), 1) if steady else None,
        "peak_mib": max(peaks, default=None),
        "rise_mib": round(max(p - s for p, s in zip(peaks, steady, strict=False)), 1) if peaks else None,
        "every_worker_s": round(statistics.median(times), 3) if times else None,
        "converged": f"{len(times)}/{len(rounds)}",
        "rounds": rounds,
    }


def reload_peak(opts: Options) -> tuple[list[str], str, dict[str, Any]]:
    """Both settings, one after the other; the summary row, the details and the data."""
    results = {cap: measure(opts, cap) for cap in CAPS}
    rows = [
        [
            cap,
            str(result["steady_mib"]),
            str(result["peak_mib"]),
            f"+{result['rise_mib']}",
            str(result["every_worker_s"]),
            result["converged"],
        ]
        for cap, result in results.items()
    ]
    details = markdown_table(
        "HAYHOOKS_MAX_WORKERS_LOADING | steady PSS MiB | peak PSS MiB | peak − steady MiB"
        " | rewrite → every worker s (median) | reloads that converged",
        rows,
    )
    details += (
        f"\n4 gunicorn workers serve one wrapper whose `setup()` allocates {BALLAST_MIB} MiB, writes every page"
        f" (resident, like a loaded model) and takes {LOAD_SECONDS} s more. It is rewritten in the directory"
        f" {RELOADS} times per setting; the server's total PSS (master and workers, deploy API off, so no deploy"
        f" checker) is sampled every {SAMPLE_SECONDS * 1000:.0f} ms from {STEADY_SECONDS} s before each rewrite"
        f" until {AFTER_SECONDS} s after every worker serves the new revision. Peak − steady is the largest of the"
        f" reloads. Each worker holds the old and the new revision while it swaps: unset, the 4 load at once; at 1,"
        " one at a time, the others serving the old revision meanwhile, and each gives its turn back only once"
        " its old revision is freed. The published Hayhooks has no watcher and no such cap.\n"
    )
    unset, capped = results["unset"], results["1"]
    met = (
        capped["rise_mib"] is not None
        and capped["rise_mib"] <= PEAK_TARGET_MIB
        and capped["converged"] == f"{RELOADS}/{RELOADS}"
    )
    summary = [
        f"reload peak (4 workers, a {BALLAST_MIB} MiB pipeline rewritten: peak − steady PSS; rewrite → every worker)",
        f"cap 1: +{capped['rise_mib']} MiB, {capped['every_worker_s']} s; unset: +{unset['rise_mib']} MiB,"
        f" {unset['every_worker_s']} s",
        "no cap (every worker loads at once)",
        f"cap 1: ≤ +{PEAK_TARGET_MIB:.0f} MiB (one extra copy)",
        "yes" if met else "**no**",
    ]
    return summary, details, results
