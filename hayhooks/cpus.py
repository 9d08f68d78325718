"""How many CPUs this process may use: the container's CPU quota and the process's CPU affinity.

``os.cpu_count()`` is the host's: a pod limited to 2 CPUs on a 64-core node sees 64. The limit is
in the process's cgroup (v2 ``cpu.max``; v1 ``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``) and
``taskset``/cpusets show in the affinity mask. Only the standard library: the settings import this.
"""

import math
import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
# Where a v1 hierarchy mounts the cpu controller: joined with cpuacct (usually) or alone.
V1_CPU_FOLDERS = ("cpu,cpuacct", "cpuacct,cpu", "cpu")


@dataclass(frozen=True)
class Count:
    """A resolved number and where it came from, for the start-up log and ``/status``."""

    count: int
    source: str


@dataclass(frozen=True)
class _Quota:
    cpus: float
    source: str


def available_cpus(cgroup_root: Path = DEFAULT_CGROUP_ROOT, proc_self_cgroup: Path = PROC_SELF_CGROUP) -> Count:
    """The CPUs this process may keep busy: ``min(affinity, ceil(quota / period))``, at least 1.

    The quota is the tightest one found from the process's own cgroup (as ``/proc/self/cgroup``
    names it) up to ``cgroup_root``: a parent's limit binds its children too, and inside a container
    the root of the mount is usually the container's own cgroup (the path named may not exist there).
    """
    host = os.cpu_count() or 1
    affinity = _affinity() or host
    quota = _tightest_quota(cgroup_root, _cgroup_paths(proc_self_cgroup))
    if quota is not None and math.ceil(quota.cpus) <= affinity:
        return Count(max(1, math.ceil(quota.cpus)), quota.source)
    if affinity < host:
        return Count(affinity, f"CPU affinity ({affinity} of {host})")
    return Count(host, "os.cpu_count()")


def _affinity() -> int | None:
    """How many CPUs the scheduler lets this process run on (Linux); None where it cannot say."""
    try:
        return len(os.sched_getaffinity(0)) or None
    except (AttributeError, OSError):
        return None


def _cgroup_paths(proc_self_cgroup: Path) -> tuple[str, str]:
    """This process's cgroup path in the v2 hierarchy and in the v1 cpu hierarchy ("/" if unknown)."""
    unified, cpu = "/", "/"
    try:
        lines = proc_self_cgroup.read_text().splitlines()
    except OSError:
        return unified, cpu
    for line in lines:
        parts = line.split(":", 2)  # hierarchy-id:controllers:path
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            unified = path or "/"
        elif "cpu" in controllers.split(","):
            cpu = path or "/"
    return unified, cpu


def _from_leaf_to_root(root: Path, path: str) -> list[Path]:
    """``root/a/b``, ``root/a``, ``root`` for the cgroup path ``/a/b``."""
    parts = [part for part in path.split("/") if part and part not in {".", ".."}]
    return [root.joinpath(*parts[:depth]) for depth in range(len(parts), -1, -1)]


def _tightest_quota(root: Path, paths: tuple[str, str]) -> _Quota | None:
    """The smallest CPU quota of the v2 and v1 cgroups on the way from this process's cgroup to the root."""
    unified, cpu = paths
    quotas = [_v2_quota(folder) for folder in _from_leaf_to_root(root, unified)]
    for mount in V1_CPU_FOLDERS:
        quotas += [_v1_quota(folder) for folder in _from_leaf_to_root(root / mount, cpu)]
    found = [quota for quota in quotas if quota is not None]
    return min(found, key=lambda quota: quota.cpus) if found else None


def _v2_quota(folder: Path) -> _Quota | None:
    """``cpu.max`` holds ``QUOTA PERIOD`` in microseconds, or ``max PERIOD`` for no limit."""
    fields = _read_fields(folder / "cpu.max")
    if len(fields) != 2 or fields[0] == "max":
        return None
    return _quota(fields[0], fields[1], f"cgroup v2 cpu.max {fields[0]}/{fields[1]}")


def _v1_quota(folder: Path) -> _Quota | None:
    """``cpu.cfs_quota_us`` (-1: no limit) over ``cpu.cfs_period_us``."""
    quota, period = _read_fields(folder / "cpu.cfs_quota_us"), _read_fields(folder / "cpu.cfs_period_us")
    if len(quota) != 1 or len(period) != 1:
        return None
    return _quota(quota[0], period[0], f"cgroup v1 cfs quota {quota[0]}/{period[0]}")


def _quota(quota: str, period: str, source: str) -> _Quota | None:
    """The quota as CPUs; None for no limit and for what does not parse (a limit we cannot read is none)."""
    try:
        quota_us, period_us = int(quota), int(period)
    except ValueError:
        return None
    if quota_us <= 0 or period_us <= 0:
        return None
    return _Quota(quota_us / period_us, source)


def _read_fields(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except (OSError, UnicodeDecodeError):
        return []
