"""Hostile pipeline code on gunicorn with 2 workers: what is not an ``Exception`` (``sys.exit``,
``KeyboardInterrupt``, ``GeneratorExit``) is a failed deploy or run answered in JSON, and no worker ends."""

from pathlib import Path

import httpx
import pytest

from tests.helpers import pipelines as samples
from tests.helpers.support import Server, start_gunicorn


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("hostile")
    samples.write_wrapper(folder / "pipelines", "base_exceptions", samples.RAISES_BASE_EXCEPTIONS)
    started = start_gunicorn(folder / "pipelines", folder, 2, HAYHOOKS_RUNTIME_DIR=str(folder / "runtime"))
    try:
        yield started.wait_ready()
    finally:
        started.stop()


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (samples.EXITS_IN_SETUP, "setup() of 'hostile' failed: SystemExit: 3"),
        (samples.INTERRUPTS_ON_IMPORT, "Failed to import pipeline_wrapper.py of 'hostile': KeyboardInterrupt"),
    ],
)
def test_a_deploy_that_exits_or_interrupts_answers_422_and_writes_nothing(server: Server, code: str, message: str):
    workers = server.worker_pids()
    answer = httpx.post(
        f"{server.url}/deploy_files", json={"name": "hostile", "files": samples.wrapper_files(code)}, timeout=60
    )
    assert answer.status_code == 422 and message in answer.json()["detail"], answer.text
    assert not (Path(server.env["HAYHOOKS_PIPELINES_DIR"]) / "hostile").exists()
    assert server.worker_pids() == workers


@pytest.mark.parametrize(
    ("kind", "message"), [("exit", "SystemExit"), ("interrupt", "KeyboardInterrupt"), ("generator", "GeneratorExit")]
)
def test_a_run_that_raises_a_base_exception_answers_500_in_json_and_the_worker_lives(
    server: Server, kind: str, message: str
):
    workers = server.worker_pids()
    for _ in range(6):  # over fresh connections: both workers take some
        answer = httpx.post(f"{server.url}/base_exceptions/run", json={"kind": kind}, timeout=30)
        assert answer.status_code == 500, answer.text
        assert answer.json()["detail"].startswith(f"Pipeline execution failed: {message}"), answer.text
    assert httpx.post(f"{server.url}/base_exceptions/run", json={"kind": "fine"}, timeout=30).json() == {
        "result": "fine"
    }
    assert server.worker_pids() == workers
