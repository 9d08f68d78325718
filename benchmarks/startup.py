"""Cold start and memory: launch until every worker serves the directory, and the server's total PSS.

Every example pipeline (wrappers and YAML files) in a fresh directory; each server is started alone
(nothing else of the benchmark runs meanwhile) and the clock runs from launching the command until
every worker serves: ours, once ``GET /status`` shows every worker with every pipeline ready
(polled every 50 ms); the published Hayhooks, whose ``/status`` shows one worker's view, once each
of its workers has logged ``Application startup complete.``, which its uvicorn logs after the
startup deploy of the directory. Memory is PSS summed over the whole process tree (master, workers,
our deploy checker), once the start-up CPU burst is over. The servers take turns, round after
round, and the medians are reported: the machine is shared, so one start says little.
"""

from __future__ import annotations

import contextlib
import os
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.churn import tree_pss
from benchmarks.common import EXAMPLES, Options, log, markdown_table
from benchmarks.contenders import Contender, ours, reference
from hayhooks.bench.cpu import CLOCK_TICKS

EXAMPLE_PIPELINES = tuple(sorted(path.name for path in EXAMPLES.iterdir() if not path.name.startswith((".", "_"))))
POLL_SECONDS = 0.05
START_TIMEOUT = 120.0
STARTED = "Application startup complete."
DEPLOYED = re.compile(r"Startup deploy complete: (\d+)/(\d+) pipelines deployed")


@dataclass(frozen=True)
class Kind:
    """One server configuration of the comparison."""

    label: str
    server: str  # "ours" or "reference"
    workers: int
    settings: dict[str, str] = field(default_factory=dict)

    def make(self, opts: Options) -> Contender:
        if self.server == "ours":
            return ours(opts, self.workers, EXAMPLE_PIPELINES, **self.settings)
        return reference(opts, self.workers, EXAMPLE_PIPELINES, ready=every_worker_started)


KINDS = (
    Kind("ours, 1 worker (hayhooks run)", "ours", 1),
    Kind("ours, 4 workers", "ours", 4),
    Kind("ours, 4 workers, preload", "ours", 4, {"HAYHOOKS_PRELOAD": "true"}),
    Kind("published, 1 worker", "reference", 1),
    Kind("published, 4 workers", "reference", 4),
)


def every_worker_started(server: Contender) -> str:
    """The published Hayhooks: until each worker logged the end of its start-up (its deploy included)."""
    started = server.output().count(STARTED)
    return "" if started >= server.workers else f"{server.workers} workers to log {STARTED!r} ({started} did)"


def cpu_seconds_spent(server: Contender) -> float:
    """CPU time the server's processes used so far, with that of the children they already reaped
    (the published Hayhooks' spawn helpers, a checker that exited): less load-dependent than wall time."""
    ticks = 0
    for pid in server.tree():
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / CLOCK_TICKS


def measure(opts: Options, kind: Kind) -> dict[str, Any]:
    """One cold start of ``kind``: seconds (and CPU seconds) until every worker serves, then the total PSS."""
    server = kind.make(opts)
    started = time.monotonic()
    server.start()
    try:
        server.wait_serving(START_TIMEOUT, interval=POLL_SECONDS)
        seconds = time.monotonic() - started
        cpu = cpu_seconds_spent(server)
        server.wait_idle(timeout=60.0)
        memory = tree_pss(server)
        deployed = [f"{done}/{total}" for done, total in DEPLOYED.findall(server.output())]
    finally:
        server.stop(timeout=20.0)
    return {
        "seconds": round(seconds, 3),
        "cpu_seconds": round(cpu, 2),
        "pss_mib": memory["total_mib"],
        "processes": memory["processes"],
        "deployed": deployed,
    }


def startup(opts: Options, rounds: int) -> tuple[str, dict[str, Any]]:
    """The details and the data of the cold-start and memory comparison (``ratios``: each kind's
    median seconds and PSS over its own server's one worker)."""
    runs: dict[str, list[dict[str, Any]]] = {kind.label: [] for kind in KINDS}
    loads = []
    for number in range(1, rounds + 1):
        for kind in KINDS:
            loads.append(os.getloadavg()[0])
            run = measure(opts, kind)
            runs[kind.label].append(run)
            log(f"start: round {number}, {kind.label}: {run['seconds']:.2f} s, {run['pss_mib']:.0f} MiB")
    seconds = {label: statistics.median(run["seconds"] for run in results) for label, results in runs.items()}
    pss = {label: statistics.median(run["pss_mib"] for run in results) for label, results in runs.items()}
    cpu = {label: statistics.median(run["cpu_seconds"] for run in results) for label, results in runs.items()}
    one = {"ours": KINDS[0].label, "reference": KINDS[3].label}
    rows = []
    for kind in KINDS:
        base = one[kind.server]
        times = [run["seconds"] for run in runs[kind.label]]
        deployed = sorted({d for run in runs[kind.label] for d in run["deployed"]})
        rows.append(
            [
                kind.label,
                f"{seconds[kind.label]:.2f} ({min(times):.2f}–{max(times):.2f})",
                f"{seconds[kind.label] / seconds[base]:.2f}×",
                f"{cpu[kind.label]:.2f} ({cpu[kind.label] / cpu[base]:.2f}×)",
                f"{pss[kind.label]:.0f}",
                f"{pss[kind.label] / pss[base]:.2f}×",
                ", ".join(deployed) if deployed else "all",
            ]
        )
    details = markdown_table(
        "server | s to every worker serving: median (min–max) | ÷ 1 worker | CPU s by then (÷ 1 worker)"
        " | total PSS MiB | ÷ 1 worker"
        " | pipelines each worker deployed",
        rows,
    )
    details += (
        "\nCPU s is what the server's processes (and the children they reaped) used until every worker served:"
        " on a shared 2-core machine it moves less than the wall time.\n"
        f"\n{len(EXAMPLE_PIPELINES)} pipelines ({', '.join(EXAMPLE_PIPELINES)}), {rounds} rounds, servers in turn;"
        f" load average (1 min) at each start: median {statistics.median(loads):.2f}, max {max(loads):.2f}."
        " The published Hayhooks deploys the directory with its default parallel strategy, whose loads race"
        " (`dictionary changed size during iteration`, `cannot import name`): its workers start without some"
        " pipelines, as the last column counts.\n"
    )
    ratios = {
        kind.label: {
            "seconds": seconds[kind.label] / seconds[one[kind.server]],
            "pss": pss[kind.label] / pss[one[kind.server]],
            "cpu": cpu[kind.label] / cpu[one[kind.server]],
        }
        for kind in KINDS
    }
    data = {
        "runs": runs,
        "median_seconds": seconds,
        "median_cpu_seconds": cpu,
        "median_pss_mib": pss,
        "ratios": ratios,
        "load_average": loads,
    }
    return details, data
