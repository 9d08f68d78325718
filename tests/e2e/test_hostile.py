"""Hostile pipelines on gunicorn with 2 workers: a deploy that exits, crashes, hangs or blows its memory
fails in its disposable check process with a 422 naming what happened; what is not an ``Exception``
(``sys.exit``, ``KeyboardInterrupt``, ``GeneratorExit``) is a failed deploy or run answered in JSON; no
worker ends; and a YAML alias bomb is refused at once, from the API and from the directory."""

import time
from pathlib import Path

import httpx
import pytest

from tests.helpers import pipelines as samples
from tests.helpers.hostile_yaml import alias_bomb
from tests.helpers.support import Server, start_gunicorn, wait_until

FILE_LIMIT = 512 * 1024
TOTAL_LIMIT = 1024 * 1024
LOAD_TIMEOUT = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("hostile")
    samples.write_wrapper(folder / "pipelines", "base_exceptions", samples.RAISES_BASE_EXCEPTIONS)
    started = start_gunicorn(
        folder / "pipelines",
        folder,
        2,
        HAYHOOKS_RUNTIME_DIR=str(folder / "runtime"),
        HAYHOOKS_DEPLOY_MAX_FILE_BYTES=str(FILE_LIMIT),
        HAYHOOKS_DEPLOY_MAX_TOTAL_BYTES=str(TOTAL_LIMIT),
        HAYHOOKS_DEPLOY_CHECK_MEMORY_MB="512",
        HAYHOOKS_LOAD_TIMEOUT=str(LOAD_TIMEOUT),
    )
    try:
        yield started.wait_ready()
    finally:
        started.stop()


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (samples.EXITS_IN_SETUP, "setup() of 'hostile' failed: SystemExit: 3"),
        (samples.INTERRUPTS_ON_IMPORT, "Failed to import pipeline_wrapper.py of 'hostile': KeyboardInterrupt"),
        (samples.EXITS_ON_IMPORT, "Loading 'hostile' ended its process (exit code 1) during import or setup()"),
        (samples.CRASHES_IN_SETUP, "Loading 'hostile' ended its process (killed by SIGSEGV)"),
        (samples.HOGS_MEMORY, "MemoryError (the deploy check allows 512 MiB: HAYHOOKS_DEPLOY_CHECK_MEMORY_MB)"),
        (samples.SETUP_HANGS, f"Loading 'hostile' took longer than {LOAD_TIMEOUT}s (HAYHOOKS_LOAD_TIMEOUT)"),
    ],
    ids=["sys.exit in setup", "KeyboardInterrupt at import", "os._exit at import", "segfault", "64 GiB", "hangs"],
)
def test_a_hostile_deploy_answers_422_naming_what_happened_writes_nothing_and_every_worker_lives(
    server: Server, code: str, message: str
):
    workers = server.worker_pids()
    for _ in range(2):  # over fresh connections: most likely through both workers
        answer = httpx.post(
            f"{server.url}/deploy_files", json={"name": "hostile", "files": samples.wrapper_files(code)}, timeout=60
        )
        assert answer.status_code == 422 and message in answer.json()["detail"], answer.text
    assert not (Path(server.env["HAYHOOKS_PIPELINES_DIR"]) / "hostile").exists()
    assert server.worker_pids() == workers
    good = {"name": "after", "files": samples.wrapper_files(samples.GREET), "overwrite": True, "wait": True}
    answer = httpx.post(f"{server.url}/deploy_files", json=good, timeout=30)
    assert answer.status_code == 200 and answer.json()["converged"], answer.text


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


def test_a_yaml_alias_bomb_is_refused_at_once_from_the_api_and_from_the_directory(server: Server):
    started = time.perf_counter()
    answer = httpx.post(f"{server.url}/deploy-yaml", json={"name": "bomb", "source_code": alias_bomb()}, timeout=30)
    assert time.perf_counter() - started < 1
    assert answer.status_code == 422 and "expands to more than" in answer.json()["detail"], answer.text
    directory = Path(server.env["HAYHOOKS_PIPELINES_DIR"])
    (directory / "dropped.yml").write_text(alias_bomb())

    def refused_everywhere() -> bool:
        cluster = httpx.get(f"{server.url}/status", timeout=5).json()["cluster"]["workers"]
        return len(cluster) == 2 and all(w["pipelines"].get("dropped", {}).get("state") == "failed" for w in cluster)

    wait_until(refused_everywhere, 10, message="the dropped bomb failed in every worker")
    for _ in range(10):  # no core is held: every worker answers at once
        started = time.perf_counter()
        assert httpx.get(f"{server.url}/health", timeout=5).status_code == 200
        assert time.perf_counter() - started < 0.5
    (directory / "dropped.yml").unlink()


WRAPPER = samples.wrapper_files(samples.RAISES_BASE_EXCEPTIONS)


@pytest.mark.parametrize(
    ("files", "status", "limit"),
    [
        ({**WRAPPER, **{f"data/{n}.txt": "x" for n in range(20_000)}}, 422, "HAYHOOKS_DEPLOY_MAX_FILES"),
        ({**WRAPPER, "/".join(["d"] * 300) + "/f.txt": "x"}, 422, "HAYHOOKS_DEPLOY_MAX_PATH_DEPTH"),
        ({**WRAPPER, "big.txt": "x" * (FILE_LIMIT + 1)}, 413, "HAYHOOKS_DEPLOY_MAX_FILE_BYTES"),
        ({**WRAPPER, **{f"{n}.txt": "x" * (FILE_LIMIT - 1) for n in range(3)}}, 413, "HAYHOOKS_DEPLOY_MAX_TOTAL_BYTES"),
    ],
    ids=["20000 files", "300 levels deep", "one file too big", "too much in all"],
)
def test_deploy_payloads_over_a_limit_are_refused_naming_it(server: Server, files: dict, status: int, limit: str):
    answer = httpx.post(f"{server.url}/deploy_files", json={"name": "payload", "files": files}, timeout=60)
    assert answer.status_code == status and limit in answer.json()["detail"], answer.text[:300]
    assert not (Path(server.env["HAYHOOKS_PIPELINES_DIR"]) / "payload").exists()
