"""HAYHOOKS_MAX_WORKERS_LOADING on gunicorn with 4 workers: at most one of them loads a pipeline at once,
on a cold start and on a reload, and a worker killed while it holds the turn does not stall the others.

The wrapper's ``setup()`` notes its start and end (pid, version, time) in a file outside the pipelines
directory, so the test sees which workers loaded when, not what the server says of itself.
"""

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from hayhooks.pipelines.source import hash_entry
from tests.helpers import pipelines as samples
from tests.helpers.support import Server, cluster, start_gunicorn, wait_until

WORKERS = 4
CONVERGE = 60.0  # seconds: 4 workers load one after the other, on 2 shared cores


class Loads:
    """The loads the record file tells of: ``(pid, version) -> [start, end or None]``."""

    def __init__(self, record: Path) -> None:
        self.record = record

    def read(self) -> dict[tuple[int, str], list[float | None]]:
        loads: dict[tuple[int, str], list[float | None]] = {}
        text = self.record.read_text() if self.record.exists() else ""
        for line in text.splitlines():
            event, pid, version, at = line.split()
            interval = loads.setdefault((int(pid), version), [None, None])
            interval[0 if event == "start" else 1] = float(at)
        return loads

    def of(self, version: str) -> dict[int, list[float | None]]:
        return {pid: interval for (pid, v), interval in self.read().items() if v == version}


def overlapping(loads: dict[int, list[float | None]]) -> list[tuple[int, int]]:
    """Pairs of workers whose loads ran at the same time (a load that never ended runs on)."""
    ordered = sorted(loads.items(), key=lambda item: item[1][0] or 0.0)
    return [
        (pid_a, pid_b)
        for (pid_a, (_, end_a)), (pid_b, (start_b, _)) in zip(ordered, ordered[1:], strict=False)
        if end_a is None or start_b is None or start_b < end_a
    ]


@pytest.fixture
def loads(tmp_path: Path) -> Loads:
    return Loads(tmp_path / "loads.txt")


def write_heavy(directory: Path, loads: Loads, version: str, seconds: float) -> str:
    """Write the recording wrapper as ``heavy``; its revision."""
    code = samples.wrapper_code(samples.RECORDS_SETUP, version=version, record=str(loads.record), seconds=seconds)
    folder = samples.write_wrapper(directory, "heavy", code, files={})
    return hash_entry(folder, "files")


@pytest.fixture
def server(tmp_path: Path, loads: Loads, request: pytest.FixtureRequest) -> Iterator[Server]:
    directory = tmp_path / "pipelines"
    write_heavy(directory, loads, "v1", request.param)
    started = start_gunicorn(directory, tmp_path, WORKERS, HAYHOOKS_MAX_WORKERS_LOADING="1")
    try:
        yield started.wait_ready(timeout=CONVERGE)
    finally:
        started.stop()


def every_worker_on(server: Server, revision: str) -> bool:
    """Every live worker the OS lists serves ``revision`` of ``heavy``, by the board."""
    workers = cluster(server)["workers"]
    on = {w["pid"] for w in workers if w["pipelines"].get("heavy", {}).get("revision") == revision}
    return on == server.worker_pids() and len(on) == WORKERS


@pytest.mark.parametrize("server", [0.3], indirect=True)
def test_one_worker_at_a_time_loads_on_a_cold_start_and_on_a_reload(server: Server, loads: Loads):
    assert sorted(loads.of("v1")) == sorted(server.worker_pids())
    assert overlapping(loads.of("v1")) == [], loads.read()

    revision = write_heavy(Path(server.env["HAYHOOKS_PIPELINES_DIR"]), loads, "v2", 0.3)
    wait_until(lambda: every_worker_on(server, revision), CONVERGE, message="every worker on v2")
    assert sorted(loads.of("v2")) == sorted(server.worker_pids())
    assert overlapping(loads.of("v2")) == [], loads.read()


@pytest.mark.parametrize("server", [0.2], indirect=True)
def test_a_worker_killed_while_it_holds_the_turn_frees_it(server: Server, loads: Loads):
    first = server.worker_pids()
    revision = write_heavy(Path(server.env["HAYHOOKS_PIPELINES_DIR"]), loads, "v2", 2.0)

    def loading_now() -> int | None:
        return next((pid for pid, (start, end) in loads.of("v2").items() if start and end is None), None)

    holder = wait_until(loading_now, CONVERGE, interval=0.02, message="a worker loading v2")
    os.kill(holder, signal.SIGKILL)

    # the three others and gunicorn's replacement all get their turn, one at a time
    wait_until(lambda: every_worker_on(server, revision), CONVERGE, message="every live worker on v2")
    live = server.worker_pids()
    assert holder not in live and len(live - first) == 1
    v2 = loads.of("v2")
    assert set(v2) == live | {holder}
    killed = v2.pop(holder)
    assert killed[1] is None  # it never finished: the others' turns came from its death
    assert all(start > killed[0] for start, _ in v2.values())
    assert overlapping(v2) == [], loads.read()
