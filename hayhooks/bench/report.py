"""What ``hayhooks bench`` prints and draws: the table, the recommendation, the chart."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from hayhooks.bench.load import LoadResult
from hayhooks.bench.server import MIB, TreeMemory

WITHIN = 0.05  # a worker count this close to the best throughput counts as good as the best
PLOT_HINT = "pip install 'hayhooks[bench]'"


@dataclass
class Row:
    """One configuration's measurement."""

    workers: int
    preload: bool
    load: LoadResult
    memory: TreeMemory | None
    server_cores: float  # server CPU seconds / wall seconds
    generator_cores: float  # load generator CPU seconds / wall seconds
    other_cores: float  # everything else on the machine, same unit
    worker_cores: list[float] = field(default_factory=list)  # each worker's CPU seconds / wall seconds

    @property
    def rps(self) -> float:
        return self.load.rps

    @property
    def pss_total(self) -> float:
        return self.memory.total.pss / MIB if self.memory else math.nan


@dataclass
class Recommendation:
    row: Row
    best: Row
    reason: str


COLUMNS = (
    "workers",
    "preload",
    "req/s",
    "p50 ms",
    "p99 ms",
    "errors",
    "PSS MiB",
    "USS MiB",
    "PSS/worker MiB",
    "server CPU",
    "per worker",
    "load gen CPU",
    "other CPU",
)


def _mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / MIB:.0f}"


def _number(value: float, digits: int = 1) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    low, high = min(values), max(values)
    return f"{low:.2f}" if f"{low:.2f}" == f"{high:.2f}" else f"{low:.2f}-{high:.2f}"


def unbalanced(row: Row) -> bool:
    """Some worker was mostly idle while another was busy: the connections did not spread."""
    return (
        len(row.worker_cores) > 1
        and max(row.worker_cores) > 0.2
        and min(row.worker_cores) < 0.5 * max(row.worker_cores)
    )


def row_cells(row: Row) -> list[str]:
    memory = row.memory
    return [
        str(row.workers),
        "on" if row.preload else "off",
        _number(row.rps),
        _number(row.load.p50_ms),
        _number(row.load.p99_ms),
        str(row.load.errors),
        _mib(memory.total.pss if memory else None),
        _mib(memory.total.uss if memory else None),
        _mib(memory.per_worker.pss if memory else None),
        _number(row.server_cores, 2),
        _spread(row.worker_cores),
        _number(row.generator_cores, 2),
        _number(row.other_cores, 2),
    ]


def render_table(rows: list[Row]) -> str:
    """A Markdown table, padded so it also reads well in a terminal."""
    cells = [list(COLUMNS)] + [row_cells(row) for row in rows]
    widths = [max(len(line[column]) for line in cells) for column in range(len(COLUMNS))]

    def line(values: list[str]) -> str:
        return "| " + " | ".join(value.rjust(width) for value, width in zip(values, widths, strict=True)) + " |"

    separator = "|" + "|".join("-" * (width + 1) + ":" for width in widths) + "|"
    return "\n".join([line(cells[0]), separator, *(line(values) for values in cells[1:])])


def _same_mode(rows: list[Row], preload: bool) -> list[Row]:
    return sorted((row for row in rows if row.preload == preload), key=lambda row: row.workers)


def recommend(rows: list[Row], cores: int) -> Recommendation:
    """The smallest worker count within 5% of the best throughput (the less memory on a tie), and why."""
    best = max(rows, key=lambda row: row.rps)
    good = [row for row in rows if row.rps >= (1 - WITHIN) * best.rps]
    choice = min(good, key=lambda row: (row.workers, row.pss_total if not math.isnan(row.pss_total) else math.inf))
    return Recommendation(choice, best, _reason(choice, _same_mode(rows, choice.preload), cores))


def _busy(row: Row) -> float:
    """Cores busy during the row's measurement: the server, the load generator and everything else."""
    return row.server_cores + row.generator_cores + row.other_cores


def _reason(choice: Row, mode: list[Row], cores: int) -> str:
    counts = [row.workers for row in mode]
    cost = _memory_per_extra_worker(mode)
    cost_note = f" (each extra worker costs about {cost:.0f} MiB)" if cost is not None else ""
    smaller = [row for row in mode if row.workers < choice.workers]
    workers = f"{choice.workers} worker{'s' if choice.workers != 1 else ''}"
    busy = f"{_busy(choice):.1f} of {cores} cores busy"
    if len(counts) == 1:
        return "only one worker count was measured: pass several, e.g. --workers 1,2,4."
    growing = choice.workers == max(counts) and smaller and choice.rps > (1 + WITHIN) * smaller[-1].rps
    full = _busy(choice) >= 0.9 * cores
    if growing and not full:
        return (
            f"throughput still grows at {workers}, the most measured, with cores left ({busy}): try more"
            " (pipelines that wait on I/O can use more workers than cores)."
        )
    if choice.workers >= cores:
        text = (
            f"CPU-bound: throughput stops growing once the {cores} cores are busy ({busy} at {workers});"
            f" more workers only add memory{cost_note} and latency."
        )
        one_per_core = next((row for row in mode if row.workers == cores), None)
        if choice.workers > cores and one_per_core is not None and _busy(one_per_core) < 0.9 * cores:
            text += (
                f" One worker per core kept only {_busy(one_per_core):.1f} cores busy (a worker leaves part of its"
                " core idle even with requests waiting); a few more workers fill those gaps."
            )
        return text
    if full:
        return (
            f"the cores are full at {workers} already (the server {choice.server_cores:.1f}, the load generator"
            f" and other processes {choice.generator_cores + choice.other_cores:.1f} of {cores}): more workers"
            f" only add memory{cost_note}; on a machine of its own the server could use one worker per core."
        )
    return (
        f"throughput stops growing at {workers} with cores left ({busy}): something else limits it (a lock or a"
        f" remote service the pipeline waits on, or too few --connections); more workers only add memory{cost_note}."
    )


def _memory_per_extra_worker(mode: list[Row]) -> float | None:
    """MiB of PSS one more worker adds, from the smallest and largest counts measured."""
    measured = [row for row in mode if not math.isnan(row.pss_total)]
    if len(measured) < 2 or measured[-1].workers == measured[0].workers:
        return None
    return (measured[-1].pss_total - measured[0].pss_total) / (measured[-1].workers - measured[0].workers)


def render_recommendation(recommendation: Recommendation, rows: list[Row]) -> str:
    row, best = recommendation.row, recommendation.best
    memory = row.memory
    memory_text = (
        f"server memory {memory.total.pss / MIB:.0f} MiB PSS, {memory.per_worker.pss / MIB:.0f} MiB per worker"
        if memory
        else "memory not measurable here"
    )
    best_text = "the best measured"
    if best is not row:
        best_text = f"{row.rps / best.rps:.0%} of the best, {best.rps:.1f} at {best.workers}"
    plural = "s" if row.workers != 1 else ""
    lines = [
        f"Recommendation: {row.workers} worker{plural} (preload {'on' if row.preload else 'off'})"
        f": {row.rps:.1f} req/s ({best_text}), {memory_text}.",
        f"Why: {recommendation.reason}",
    ]
    if uneven := [f"{r.workers} ({'preload' if r.preload else 'no preload'})" for r in rows if unbalanced(r)]:
        lines.append(
            f"Uneven: with {', '.join(uneven)} workers some worker was mostly idle (see 'per worker'): its row"
            " understates that count; rerun, or re-open connections more often (--reconnect)."
        )
    if saving := _preload_saving(rows, row.workers):
        lines.append(f"Preload saves {saving:.0f} MiB (PSS) at {row.workers} workers.")
    return "\n".join(lines)


def noise_note(rows: list[Row], cores: int, load_average: float) -> str | None:
    """A warning when other processes competed for the CPU during the measurements."""
    busiest = max(rows, key=lambda row: row.other_cores)
    if busiest.other_cores <= 0.25 * cores and load_average <= cores:
        return None
    return (
        f"Note: the machine was shared (load average {load_average:.2f} at the start; other processes kept up to"
        f" {busiest.other_cores:.1f} of the {cores} cores busy during a measurement): the numbers are noisy,"
        " rerun on a quiet machine."
    )


def _preload_saving(rows: list[Row], workers: int) -> float | None:
    pair = {row.preload: row.pss_total for row in rows if row.workers == workers}
    if len(pair) == 2 and not any(math.isnan(value) for value in pair.values()):
        return pair[False] - pair[True]
    return None


# --- chart -------------------------------------------------------------------------------------------------


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def check_plotting() -> None:
    """PlotUnavailable, with how to install it, if matplotlib is missing."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        raise PlotUnavailable(f"--plot needs matplotlib: {PLOT_HINT}")


def plot(rows: list[Row], path: Path, title: str) -> None:
    """Throughput and p99 latency against workers (top), server memory (bottom), one line per preload mode."""
    check_plotting()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (speed, memory) = plt.subplots(2, 1, sharex=True, figsize=(8, 7), height_ratios=(3, 2))
    latency = speed.twinx()
    modes = sorted({row.preload for row in rows})
    colors = {False: "tab:blue", True: "tab:green"}
    for preload in modes:
        mode = _same_mode(rows, preload)
        workers = [row.workers for row in mode]
        label = f"preload {'on' if preload else 'off'}"
        color = colors[preload]
        speed.plot(workers, [row.rps for row in mode], "o-", color=color, label=f"req/s, {label}")
        latency.plot(workers, [row.load.p99_ms for row in mode], "s--", color=color, alpha=0.6, label=f"p99, {label}")
        memory.plot(workers, [row.pss_total for row in mode], "o-", color=color, label=f"PSS total, {label}")
        uss = [row.memory.total.uss / MIB if row.memory else math.nan for row in mode]
        memory.plot(workers, uss, "^:", color=color, label=f"USS total, {label}")
    counts = sorted({row.workers for row in rows})
    memory.set_xticks(counts)
    memory.set_xlabel("workers")
    speed.set_ylabel("throughput (req/s)")
    latency.set_ylabel("p99 latency (ms)")
    memory.set_ylabel("server memory (MiB)")
    speed.set_ylim(bottom=0)
    latency.set_ylim(bottom=0)
    memory.set_ylim(bottom=0)
    handles, labels = speed.get_legend_handles_labels()
    more_handles, more_labels = latency.get_legend_handles_labels()
    speed.legend(handles + more_handles, labels + more_labels, loc="lower right", fontsize="small")
    memory.legend(loc="upper left", fontsize="small")
    speed.grid(alpha=0.3)
    memory.grid(alpha=0.3)
    speed.set_title(title)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
