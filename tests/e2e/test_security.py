"""Limits on runs (timeout, concurrency) and the CLI's token, against a real ``hayhooks run``."""

import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from tests.helpers import pipelines as samples
from tests.helpers.support import BIN, start_hayhooks


@pytest.fixture
def limited(pipelines_dir: Path, tmp_path: Path):
    samples.write_wrapper(pipelines_dir, "ver", samples.versioned("v1"), files={})
    server = start_hayhooks(
        pipelines_dir,
        tmp_path,
        HAYHOOKS_RUN_TIMEOUT="1",
        HAYHOOKS_MAX_CONCURRENT_RUNS="2",
        HAYHOOKS_ADMIN_TOKEN="admin-secret",
    )
    try:
        yield server.wait_ready()
    finally:
        server.stop()


def test_a_run_over_the_timeout_answers_504_and_the_worker_keeps_serving(limited):
    slow = httpx.post(f"{limited.url}/ver/run", json={"delay": 3}, timeout=30)
    assert slow.status_code == 504
    assert "HAYHOOKS_RUN_TIMEOUT" in slow.json()["detail"]
    assert httpx.post(f"{limited.url}/ver/run", json={}, timeout=30).status_code == 200


def test_runs_over_the_concurrency_bound_answer_503(limited):
    answers: list[int] = []
    threads = [
        threading.Thread(
            target=lambda: answers.append(
                httpx.post(f"{limited.url}/ver/run", json={"delay": 0.8}, timeout=30).status_code
            )
        )
        for _ in range(5)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [200, 200, 503, 503, 503]
    assert httpx.post(f"{limited.url}/ver/run", json={}).status_code == 200


def test_cli_sends_the_token(limited, pipelines_dir: Path):
    source = pipelines_dir.parent / "src"
    samples.write_wrapper(source, "tok", samples.versioned("t"), files={})

    def cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
        command = [str(BIN / "hayhooks"), "--server", limited.url, *args]
        return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)

    refused = cli("pipeline", "deploy-files", "-n", "tok", str(source / "tok"))
    assert refused.returncode == 1 and "401" in refused.stderr
    assert cli("--token", "admin-secret", "pipeline", "deploy-files", "-n", "tok", str(source / "tok")).returncode == 0
    env = {"PATH": str(BIN), "HAYHOOKS_ADMIN_TOKEN": "admin-secret"}
    assert cli("pipeline", "undeploy", "tok", env=env).returncode == 0
