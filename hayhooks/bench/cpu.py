"""CPU accounting for a measurement: who used the cores meanwhile, read from ``/proc`` and ``getrusage``.

A request rate alone cannot say whether the server, the load generator or a neighbour took the CPU;
these numbers can, so a reader sees how far a shared machine moved a result. Linux only.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_ticks(pids: list[int]) -> int:
    """utime + stime of ``pids`` (those still alive), in clock ticks."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
    return total


def machine_busy_seconds() -> float:
    """CPU time all cores spent busy so far, hypervisor steal included (/proc/stat)."""
    user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, Path("/proc/stat").read_text().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS


def children_cpu_seconds() -> float:
    """CPU time of this process's children that finished (and were waited for) so far: the load
    generator runs, whose CPU a live server's ``/proc`` numbers do not include."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class CpuUsage:
    """CPU seconds used during ``wall`` seconds, by whom; above ``wall`` means more than one core."""

    wall: float
    server: float  # the server's processes
    workers: tuple[float, ...]  # each worker's share of ``server``, in the order they were given
    generator: float  # this process's children that ended meanwhile: the load generator
    machine: float  # every core's busy time

    @property
    def others(self) -> float:
        """What the rest of the machine used: neither the server nor the load generator."""
        return max(0.0, self.machine - self.server - self.generator)

    @property
    def others_share(self) -> float:
        """``others`` as a share of all the machine's cores over the wall time."""
        return self.others / (self.wall * (os.cpu_count() or 1)) if self.wall > 0 else 0.0

    def cores(self, seconds: float) -> float:
        """``seconds`` of CPU over the wall time: how many cores they kept busy."""
        return seconds / self.wall if self.wall > 0 else 0.0


class CpuMeter:
    """Started when made; ``stop()`` says what the server (``server_seconds`` reads its CPU time so
    far), each of ``workers``, the load generator and the machine used since."""

    def __init__(self, server_seconds: Callable[[], float], workers: list[int]) -> None:
        self._server_seconds = server_seconds
        self._workers = workers
        self._start = self._totals()

    def _totals(self) -> CpuUsage:
        return CpuUsage(
            wall=time.monotonic(),
            server=self._server_seconds(),
            workers=tuple(cpu_ticks([pid]) / CLOCK_TICKS for pid in self._workers),
            generator=children_cpu_seconds(),
            machine=machine_busy_seconds(),
        )

    def stop(self) -> CpuUsage:
        start, end = self._start, self._totals()
        return CpuUsage(
            wall=end.wall - start.wall,
            server=end.server - start.server,
            workers=tuple(after - before for before, after in zip(start.workers, end.workers, strict=True)),
            generator=end.generator - start.generator,
            machine=end.machine - start.machine,
        )
