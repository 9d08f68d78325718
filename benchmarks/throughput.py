"""Throughput with wrk (``hayhooks.bench.load``), and the CPU time behind each figure
(``hayhooks.bench.cpu``): unlike req/s, a server's CPU per request hardly moves when the machine is shared."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from benchmarks.common import Options, log
from hayhooks.bench.load import run_wrk
from hayhooks.bench.server import ServerProcess

NOISY_LOAD = 0.10  # more CPU than this used by other processes during a measurement makes it suspect


@dataclass
class Throughput:
    """One wrk measurement, as ``latest.json`` lists it."""

    rps: float
    requests: int
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p99_ms: float
    cpu_ms_per_request: float  # CPU time of the whole server tree per answered request
    other_load: float  # share of the machine's CPU used by anything but the server and wrk
    server_cores: float  # CPU time of the server tree ÷ wall time: cores it kept busy


def wrk(opts: Options, server: ServerProcess, path: str, body: Any) -> Throughput:
    """A closed loop of ``opts.connections`` keep-alive connections on one thread, after a warm-up."""
    load = dict(connections=opts.connections, scratch=opts.scratch)
    if opts.warmup > 0:
        run_wrk(server.port, path, json.dumps(body), duration=opts.warmup, **load)
    meter = server.cpu_meter()
    result = run_wrk(server.port, path, json.dumps(body), duration=opts.duration, **load)
    cpu = meter.stop()
    counts = {key: value for key, value in asdict(result).items() if key != "seconds"}
    return Throughput(
        **counts,
        cpu_ms_per_request=round(1000 * cpu.server / max(1, result.requests), 4),
        other_load=round(cpu.others_share, 3),
        server_cores=round(cpu.cores(cpu.server), 3),
    )


def other_load_note(results: list[Throughput]) -> str:
    """How busy the rest of the machine was during ``results``, and what that did to the figures."""
    noisy = sum(result.other_load > NOISY_LOAD for result in results)
    worst = max(result.other_load for result in results)
    note = f"Other processes used up to {worst:.0%} of the machine's CPU during these {len(results)} measurements"
    if not noisy:
        return note + ".\n"
    return (
        f"{note}; {noisy} were taken while they used more than {NOISY_LOAD:.0%} and count only where a server"
        " had no quieter one. **The machine was shared: take these ratios with care.**\n"
    )


def measure_throughput(
    opts: Options, servers: tuple[ServerProcess, ...], path: str, body: Any
) -> dict[str, list[Throughput]]:
    """wrk every server ``opts.repeats`` times, rotating the order each round so drift spreads evenly."""
    results: dict[str, list[Throughput]] = {server.label: [] for server in servers}
    for round_ in range(opts.repeats):
        shift = round_ % len(servers)
        for server in servers[shift:] + servers[:shift]:
            result = wrk(opts, server, path, body)
            results[server.label].append(result)
            log(
                f"  {server.label:<24} {result.rps:9.1f} req/s  p99 {result.p99_ms:7.1f} ms"
                f"  CPU {result.cpu_ms_per_request:.3f} ms/req  other load {result.other_load:.0%}"
            )
    return results


def typical(results: list[Throughput], metric: str) -> float:
    """Median of ``metric`` over the measurements the rest of the machine left alone (all if none did).

    On a shared machine, other processes' bursts slow a measurement down and raise its CPU per
    request too (contended caches, more switches), so those runs are set aside when quieter ones exist.
    """
    quiet = [result for result in results if result.other_load <= NOISY_LOAD] or results
    return statistics.median(getattr(result, metric) for result in quiet)
