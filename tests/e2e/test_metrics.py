"""GET /metrics sums every worker of a real gunicorn, and forgets dead workers' live gauges."""

import contextlib
import os
import signal
from pathlib import Path

import httpx
import pytest

from tests.helpers import pipelines as samples
from tests.helpers.metrics import scrape, value
from tests.helpers.support import Server, answers_by_worker, start_gunicorn, start_hayhooks, wait_until

SLOW = {"delay": 0.05}


def loaded_pids(samples: dict, pipeline: str) -> set[int]:
    return {
        int(dict(labels)["pid"])
        for (name, labels), number in samples.items()
        if name == "hayhooks_pipeline_loaded" and dict(labels)["pipeline"] == pipeline and number == 1
    }


@pytest.fixture
def runtime(tmp_path: Path) -> Path:
    return tmp_path / "runtime"


@pytest.fixture
def server(pipelines_dir: Path, tmp_path: Path, runtime: Path):
    samples.write_wrapper(pipelines_dir, "ver", samples.versioned("v1"), files={})
    started = start_gunicorn(pipelines_dir, tmp_path, workers=3, HAYHOOKS_RUNTIME_DIR=str(runtime))
    try:
        yield started.wait_ready()
    finally:
        started.stop()


def test_requests_to_several_workers_appear_in_one_scrape(server: Server):
    before = value(scrape(server), "hayhooks_requests_total", pipeline="ver", status="200")
    seen = answers_by_worker(server.url, "ver", SLOW, requests=60)
    assert len(seen) >= 2 and 0 not in seen, seen  # several workers answered
    bad = httpx.post(f"{server.url}/ver/run", json={"delay": "slow"})
    assert bad.status_code == 422
    after = scrape(server)
    assert value(after, "hayhooks_requests_total", pipeline="ver", status="200") == before + 60
    assert value(after, "hayhooks_requests_total", pipeline="ver", status="422") == 1
    assert value(after, "hayhooks_request_duration_seconds_count", pipeline="ver") >= 61
    assert value(after, "hayhooks_requests_in_flight", pipeline="ver") == 0
    assert value(after, "hayhooks_workers") == 3
    assert loaded_pids(after, "ver") == server.worker_pids()


def test_a_killed_workers_live_gauges_disappear_and_its_counts_stay(server: Server):
    answers_by_worker(server.url, "ver", SLOW, requests=30)
    counted = value(scrape(server), "hayhooks_requests_total", pipeline="ver", status="200")
    victim = min(server.worker_pids())
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in server.worker_pids() and len(server.worker_pids()) == 3, 30)
    wait_until(lambda: loaded_pids(scrape(server), "ver") == server.worker_pids(), 10, message="gauges follow")
    after = scrape(server)
    assert victim not in loaded_pids(after, "ver")
    assert value(after, "hayhooks_workers") == 3
    assert value(after, "hayhooks_requests_total", pipeline="ver", status="200") == counted


def test_reloads_and_deploys_are_counted(server: Server, pipelines_dir: Path):
    (pipelines_dir / "ver" / "pipeline_wrapper.py").write_text(samples.SYNTAX_ERROR)
    wait_until(lambda: value(scrape(server), "hayhooks_reloads_total", pipeline="ver", outcome="failure") == 3, 10)
    files = samples.wrapper_files(samples.versioned("d1"), files={})
    assert httpx.post(f"{server.url}/deploy_files", json={"name": "dep", "files": files, "wait": True}).is_success
    assert httpx.post(f"{server.url}/deploy_files", json={"name": "dep", "files": files}).status_code == 409
    result = scrape(server)
    assert value(result, "hayhooks_deploys_total", action="deploy", outcome="success") == 1
    assert value(result, "hayhooks_deploys_total", action="deploy", outcome="rejected") == 1
    # 3 workers loaded "ver" at start and "dep" after the deploy (+1 validation load is not a reload)
    assert value(result, "hayhooks_reloads_total", pipeline="dep", outcome="success") == 3


def test_scrapes_stay_small_after_many_worker_restarts(pipelines_dir: Path, tmp_path: Path, runtime: Path):
    samples.write_wrapper(pipelines_dir, "ver", samples.versioned("v1"), files={})
    server = start_gunicorn(
        pipelines_dir, tmp_path, workers=2, HAYHOOKS_RUNTIME_DIR=str(runtime), HAYHOOKS_MAX_REQUESTS="10"
    )
    try:
        server.wait_ready()
        first = set(server.worker_pids())
        ok = 0
        for _ in range(120):
            # a connection accepted just as its worker retires can be reset (uvicorn's max_requests)
            with contextlib.suppress(httpx.TransportError):
                ok += httpx.post(f"{server.url}/ver/run", json={}, timeout=30).status_code == 200
        assert ok >= 100
        assert not first & server.worker_pids(), "max_requests should have replaced the first workers"
        wait_until(lambda: httpx.get(f"{server.url}/ready").status_code == 200, 30)
        result = scrape(server)
        assert value(result, "hayhooks_requests_total", pipeline="ver", status="200") == ok
        files = sorted(path.name for path in (runtime / "metrics").glob("*.db"))
        assert "counter_archive.db" in files
        pids = {name.rsplit("_", 1)[1][:-3] for name in files} - {"archive"}
        assert pids <= {str(pid) for pid in server.worker_pids()}, files
    finally:
        server.stop()


def test_single_worker_serves_the_same_endpoint(pipelines_dir: Path, tmp_path: Path):
    samples.write_wrapper(pipelines_dir, "ver", samples.versioned("v1"), files={})
    server = start_hayhooks(pipelines_dir, tmp_path)
    try:
        server.wait_ready()
        httpx.post(f"{server.url}/ver/run", json={})
        result = scrape(server)
        assert value(result, "hayhooks_requests_total", pipeline="ver", status="200") == 1
        assert loaded_pids(result, "ver") == {server.pid}
    finally:
        server.stop()
