"""The default worker count follows the container's CPU quota and the CPU affinity, not the host's cores."""

import os
from pathlib import Path

import pytest

from hayhooks.cpus import Count, available_cpus
from hayhooks.settings import Settings

HOST_CORES = 64


@pytest.fixture(autouse=True)
def big_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 64-core node on which this process may run anywhere, unless a test narrows the affinity."""
    monkeypatch.setattr(os, "cpu_count", lambda: HOST_CORES)
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(HOST_CORES)))


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def proc_cgroup(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "proc-self-cgroup"
    path.write_text(text)
    return path


def test_cgroup_v2_quota_of_a_container(tmp_path: Path):
    write(tmp_path / "cpu.max", "200000 100000\n")
    assert available_cpus(tmp_path, proc_cgroup(tmp_path, "0::/\n")) == Count(2, "cgroup v2 cpu.max 200000/100000")


def test_a_fractional_quota_rounds_up_and_never_gives_zero(tmp_path: Path):
    write(tmp_path / "cpu.max", "150000 100000\n")
    assert available_cpus(tmp_path, proc_cgroup(tmp_path, "0::/\n")).count == 2
    write(tmp_path / "cpu.max", "1000 100000\n")
    assert available_cpus(tmp_path, proc_cgroup(tmp_path, "0::/\n")).count == 1


def test_no_quota_means_every_core_of_the_host(tmp_path: Path):
    write(tmp_path / "cpu.max", "max 100000\n")
    assert available_cpus(tmp_path, proc_cgroup(tmp_path, "0::/\n")) == Count(HOST_CORES, "os.cpu_count()")
    assert available_cpus(tmp_path / "absent", tmp_path / "no-proc-file") == Count(HOST_CORES, "os.cpu_count()")


def test_the_tightest_limit_on_the_way_to_the_root_wins(tmp_path: Path):
    write(tmp_path / "cpu.max", "400000 100000\n")
    write(tmp_path / "kubepods" / "cpu.max", "max 100000\n")
    write(tmp_path / "kubepods" / "pod1" / "cpu.max", "300000 100000\n")
    cgroup = proc_cgroup(tmp_path, "0::/kubepods/pod1\n")
    assert available_cpus(tmp_path, cgroup) == Count(3, "cgroup v2 cpu.max 300000/100000")
    # Inside a container the named path often does not exist under the mount: its root is the container's.
    outside = proc_cgroup(tmp_path, "0::/system.slice/docker-abc.scope\n")
    assert available_cpus(tmp_path, outside).count == 4


def test_cgroup_v1_cfs_quota(tmp_path: Path):
    folder = tmp_path / "cpu,cpuacct" / "docker" / "abc"
    write(folder / "cpu.cfs_quota_us", "250000\n")
    write(folder / "cpu.cfs_period_us", "100000\n")
    cgroup = proc_cgroup(tmp_path, "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n0::/\n")
    assert available_cpus(tmp_path, cgroup) == Count(3, "cgroup v1 cfs quota 250000/100000")
    write(folder / "cpu.cfs_quota_us", "-1\n")  # no limit
    assert available_cpus(tmp_path, cgroup) == Count(HOST_CORES, "os.cpu_count()")


def test_cpu_affinity_narrower_than_the_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1, 2})
    assert available_cpus(tmp_path, proc_cgroup(tmp_path, "0::/\n")) == Count(3, "CPU affinity (3 of 64)")
    write(tmp_path / "cpu.max", "800000 100000\n")
    assert available_cpus(tmp_path, proc_cgroup(tmp_path, "0::/\n")).count == 3
    write(tmp_path / "cpu.max", "100000 100000\n")
    assert available_cpus(tmp_path, proc_cgroup(tmp_path, "0::/\n")) == Count(1, "cgroup v2 cpu.max 100000/100000")


@pytest.mark.parametrize("garbage", ["", "lots 100000", "200000 0", "-5 100000", "200000", "\xff\xfe"])
def test_a_quota_that_does_not_parse_is_no_limit(tmp_path: Path, garbage: str):
    write(tmp_path / "cpu.max", garbage)
    assert available_cpus(tmp_path, proc_cgroup(tmp_path, "0::/\n")).count == HOST_CORES


def test_settings_resolve_the_worker_count_and_say_from_where(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write(tmp_path / "cpu.max", "200000 100000\n")
    monkeypatch.delenv("WEB_CONCURRENCY", raising=False)
    monkeypatch.delenv("HAYHOOKS_WORKERS", raising=False)
    assert Settings(_env_file=None, cgroup_root=tmp_path).worker_count() == Count(2, "cgroup v2 cpu.max 200000/100000")
    monkeypatch.setenv("WEB_CONCURRENCY", "5")
    assert Settings(_env_file=None, cgroup_root=tmp_path).worker_count() == Count(5, "WEB_CONCURRENCY")
    assert Settings(_env_file=None, cgroup_root=tmp_path, workers=7).worker_count() == Count(7, "HAYHOOKS_WORKERS")
