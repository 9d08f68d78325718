"""Loads that overrun HAYHOOKS_LOAD_TIMEOUT on gunicorn with 2 workers: none keeps burning a core unseen.

A load spinning in Python code is stopped; one asleep in C is reported in /status and /metrics and
its worker keeps serving; one burning a core in C makes its worker retire gracefully: requests keep
being answered, gunicorn starts fresh workers, and they do not load that revision again.
"""

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hayhooks.bench.server import cpu_ticks
from tests.helpers import pipelines as samples
from tests.helpers.support import Server, cluster, start_gunicorn, wait_until

LOAD_TIMEOUT = "3"  # a fresh worker imports Haystack in its first load: about 1 s
# While two cores burn, a fresh worker's loads take longer: it must not fail greet for that.
BUSY_LOAD_TIMEOUT = "8"


@pytest.fixture
def server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Server]:
    samples.write_wrapper(tmp_path / "pipelines", "greet", samples.GREET)
    timeout = BUSY_LOAD_TIMEOUT if "burning" in request.node.name else LOAD_TIMEOUT
    # A load that was stopped is retried (test_faults.py checks retries); here, one load's fate is measured.
    retry = "false" if "spinning" in request.node.name else "true"
    started = start_gunicorn(
        tmp_path / "pipelines",
        tmp_path,
        2,
        HAYHOOKS_LOAD_TIMEOUT=timeout,
        HAYHOOKS_RUNTIME_DIR=str(tmp_path / "rt"),
        HAYHOOKS_LOAD_RETRY=retry,
    )
    try:
        yield started.wait_ready()
    finally:
        started.stop()


def directory(server: Server) -> Path:
    return Path(server.env["HAYHOOKS_PIPELINES_DIR"])


def pipeline_everywhere(server: Server, name: str) -> list[dict]:
    """``name``'s entry on every live worker of the board, once both have one."""
    workers = cluster(server)["workers"]
    entries = [worker["pipelines"].get(name) for worker in workers]
    return entries if len(workers) == 2 and all(entries) else []


def busy_share(pids: set[int], seconds: float = 1.0) -> float:
    """The share of one core the processes used together over ``seconds``."""
    before = cpu_ticks(list(pids))
    time.sleep(seconds)
    return (cpu_ticks(list(pids)) - before) / 100 / seconds


def test_a_load_spinning_in_python_code_is_stopped_and_no_core_stays_busy(server: Server):
    workers = server.worker_pids()
    samples.write_wrapper(directory(server), "spinner", samples.SPINS_IN_SETUP)
    entries = wait_until(lambda: pipeline_everywhere(server, "spinner"), 30, message="spinner failed everywhere")
    wait_until(lambda: all(e["state"] == "failed" for e in pipeline_everywhere(server, "spinner")), 30)
    details = httpx.get(f"{server.url}/status/spinner", timeout=5).json()["details"]
    assert details["error"].endswith("(HAYHOOKS_LOAD_TIMEOUT); stopped"), details
    assert entries and busy_share(workers) < 0.3
    assert server.worker_pids() == workers
    assert all(worker["abandoned_loads"] == [] for worker in cluster(server)["workers"])


def test_a_load_asleep_in_c_is_reported_and_its_worker_keeps_serving(server: Server):
    workers = server.worker_pids()
    samples.write_wrapper(directory(server), "sleeper", samples.SETUP_HANGS)

    def reported_everywhere() -> bool:
        board = cluster(server)["workers"]
        return len(board) == 2 and all(
            {load["pipeline"] for load in w["abandoned_loads"]} == {"sleeper"} for w in board
        )

    wait_until(reported_everywhere, 30, message="the sleeping load reported by both workers")
    assert all(not load["burning"] for w in cluster(server)["workers"] for load in w["abandoned_loads"])
    metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
    (abandoned,) = [line for line in metrics.splitlines() if line.startswith("hayhooks_abandoned_loads ")]
    assert float(abandoned.split()[1]) >= 2, abandoned  # one per worker (two if an early partial write hung too)
    assert (
        httpx.get(f"{server.url}/status/sleeper", timeout=5)
        .json()["details"]["error"]
        .endswith("could not be stopped (blocked outside Python code)")
    )
    assert httpx.post(f"{server.url}/greet/run", json={"name": "Ada"}, timeout=5).status_code == 200
    assert server.worker_pids() == workers and busy_share(workers) < 0.3


def test_a_load_burning_a_core_in_c_retires_its_workers_and_their_replacements_skip_it(server: Server):
    workers = server.worker_pids()
    failures: list[str] = []
    answered = 0
    stop = threading.Event()

    def clients() -> None:  # a user calling the good pipeline throughout, over fresh connections
        nonlocal answered
        while not stop.is_set():
            try:
                answer = httpx.post(f"{server.url}/greet/run", json={"name": "Ada"}, timeout=30)
                if answer.status_code == 200:
                    answered += 1
                else:
                    failures.append(f"{answer.status_code} {answer.text[:200]}")
            except httpx.HTTPError as error:
                failures.append(repr(error))
            time.sleep(0.02)

    caller = threading.Thread(target=clients)
    caller.start()
    try:
        samples.write_wrapper(directory(server), "burner", samples.BURNS_IN_C)
        wait_until(lambda: server.worker_pids().isdisjoint(workers) and len(server.worker_pids()) == 2, 90)
        server.wait_ready()
        burner = wait_until(lambda: pipeline_everywhere(server, "burner"), 30)
        view = cluster(server)
        (stuck,) = {(load["pipeline"], load["revision"]) for load in view["stuck_loads"]}
        assert stuck[0] == "burner" and all(entry["state"] == "failed" for entry in burner)
        error = httpx.get(f"{server.url}/status/burner", timeout=5).json()["details"]["error"]
        assert "burned a core" in error and "not loaded again until the files change" in error, error
        assert busy_share(server.worker_pids()) < 0.3  # the fresh workers do not burn it
        retired = httpx.get(f"{server.url}/metrics", timeout=5).text
        assert "hayhooks_worker_retirements_total 2.0" in retired
        time.sleep(0.5)
    finally:
        stop.set()
        caller.join()
    assert failures == [] and answered > 20, (failures, answered)
