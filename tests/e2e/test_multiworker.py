"""Real gunicorn masters with several uvicorn workers, all following one pipelines directory."""

import os
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from hayhooks.pipelines.source import hash_entry
from tests.helpers import pipelines as samples
from tests.helpers.support import (
    BIN,
    Server,
    cluster,
    every_worker_serves,
    free_port,
    no_worker_serves,
    server_env,
    start_gunicorn,
    start_hayhooks,
    wait_until,
)

SLOW = {"delay": 0.05}  # keeps workers busy, so concurrent calls spread over all of them
CONVERGE = 10.0  # seconds; the benchmark measures how fast, the tests only that it happens


@pytest.fixture
def directory(pipelines_dir: Path) -> Path:
    samples.write_wrapper(pipelines_dir, "ver", samples.versioned("v1"), files={})
    samples.write_yaml(pipelines_dir, "prompt", samples.PROMPT_YAML)
    return pipelines_dir


@pytest.fixture
def server(directory: Path, tmp_path: Path):
    started = start_gunicorn(directory, tmp_path, workers=3)
    try:
        yield started.wait_ready()
    finally:
        started.stop()


def disk_revision(directory: Path, name: str) -> str:
    return hash_entry(directory / name, "files")


def test_every_worker_loads_the_directory_at_start(server: Server, directory: Path):
    assert len(server.worker_pids()) == 3
    expected = disk_revision(directory, "ver")
    assert wait_until(lambda: every_worker_serves(server, "ver", SLOW, expected), CONVERGE)
    view = cluster(server)
    assert view["converged"] is True
    assert {worker["pid"] for worker in view["workers"]} == server.worker_pids()
    assert all(worker["pipelines"]["ver"]["revision"] == expected for worker in view["workers"])


def test_api_deploy_and_undeploy_reach_every_worker(server: Server, directory: Path):
    files = samples.wrapper_files(samples.versioned("deployed"), files={})
    response = httpx.post(f"{server.url}/deploy_files", json={"name": "fresh", "files": files, "wait": True})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["converged"] is True and body["lagging"] == []
    assert body["revision"] == disk_revision(directory, "fresh")
    assert wait_until(lambda: every_worker_serves(server, "fresh", SLOW, body["revision"]), CONVERGE)

    response = httpx.post(f"{server.url}/undeploy/fresh", params={"wait": True})
    assert response.status_code == 200 and response.json()["converged"] is True
    assert not (directory / "fresh").exists()
    assert wait_until(lambda: no_worker_serves(server, "fresh"), CONVERGE)
    assert all("fresh" not in worker["pipelines"] for worker in cluster(server)["workers"])


def test_yaml_deploy_reaches_every_worker(server: Server):
    source = samples.PROMPT_YAML.replace("Question about", "Q on")
    response = httpx.post(
        f"{server.url}/deploy-yaml", json={"name": "prompt", "source_code": source, "overwrite": True, "wait": True}
    )
    assert response.status_code == 200 and response.json()["converged"] is True
    body = {"query": "a", "topic": "b"}
    assert wait_until(lambda: every_worker_serves(server, "prompt", body, response.json()["revision"]), CONVERGE)
    assert httpx.post(f"{server.url}/prompt/run", json=body).json() == {"result": {"builder": {"prompt": "Q on b: a"}}}


def test_file_edit_copy_and_delete_in_the_directory(server: Server, directory: Path, tmp_path: Path):
    (directory / "ver" / "pipeline_wrapper.py").write_text(samples.versioned("v2"))
    edited = disk_revision(directory, "ver")
    assert wait_until(lambda: every_worker_serves(server, "ver", SLOW, edited), CONVERGE)
    assert httpx.post(f"{server.url}/ver/run", json={}).json()["result"]["version"] == "v2"

    outside = samples.write_wrapper(tmp_path / "elsewhere", "copied", samples.versioned("c1"), files={})
    shutil.copytree(outside, directory / "copied")
    assert wait_until(lambda: every_worker_serves(server, "copied", SLOW, disk_revision(directory, "copied")), CONVERGE)

    shutil.rmtree(directory / "copied")
    assert wait_until(lambda: no_worker_serves(server, "copied"), CONVERGE)
    assert wait_until(lambda: all("copied" not in w["pipelines"] for w in cluster(server)["workers"]), CONVERGE)


def test_broken_edit_keeps_the_last_good_revision_serving(server: Server, directory: Path):
    good = disk_revision(directory, "ver")
    (directory / "ver" / "pipeline_wrapper.py").write_text(samples.SYNTAX_ERROR)
    broken = disk_revision(directory, "ver")

    def all_failed() -> bool:
        workers = cluster(server)["workers"]
        return len(workers) == 3 and all(w["pipelines"]["ver"]["state"] == "failed" for w in workers)

    wait_until(all_failed, CONVERGE, message="every worker to report the failed load")
    assert every_worker_serves(server, "ver", SLOW, good)
    details = {d["name"]: d for d in httpx.get(f"{server.url}/status").json()["details"]}
    assert details["ver"]["revision"] == good and details["ver"]["target_revision"] == broken
    assert "SyntaxError" in details["ver"]["error"]

    (directory / "ver" / "pipeline_wrapper.py").write_text(samples.versioned("v3"))
    assert wait_until(lambda: every_worker_serves(server, "ver", SLOW, disk_revision(directory, "ver")), CONVERGE)


def test_killed_worker_is_replaced_by_one_serving_everything(server: Server, directory: Path):
    files = samples.wrapper_files(samples.versioned("runtime"), files={})
    deployed = httpx.post(f"{server.url}/deploy_files", json={"name": "runtime", "files": files, "wait": True}).json()
    victim = min(server.worker_pids())
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in server.worker_pids() and len(server.worker_pids()) == 3, 30)
    assert wait_until(lambda: every_worker_serves(server, "runtime", SLOW, deployed["revision"]), CONVERGE)
    assert wait_until(lambda: every_worker_serves(server, "ver", SLOW, disk_revision(directory, "ver")), CONVERGE)
    assert wait_until(lambda: victim not in {w["pid"] for w in cluster(server)["workers"]}, CONVERGE)


def test_concurrent_deploys_of_one_name_end_whole_and_identical(server: Server, directory: Path):
    answers: list[httpx.Response] = []

    def deploy(version: str) -> None:
        files = samples.wrapper_files(samples.versioned(version), files={"data.txt": version * 1000})
        answers.append(
            httpx.post(
                f"{server.url}/deploy_files",
                json={"name": "race", "files": files, "overwrite": True},
                timeout=60,
            )
        )

    threads = [threading.Thread(target=deploy, args=(f"r{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [a.status_code for a in answers] == [200] * 8, [a.text for a in answers]
    on_disk = disk_revision(directory, "race")
    assert on_disk in {a.json()["revision"] for a in answers}
    version = (directory / "race" / "data.txt").read_text()[:2]
    assert f"VERSION = {version!r}" in (directory / "race" / "pipeline_wrapper.py").read_text()
    assert wait_until(lambda: every_worker_serves(server, "race", SLOW, on_disk), CONVERGE)
    assert not [p for p in directory.iterdir() if p.name.startswith((".staging", ".trash"))]


@pytest.mark.parametrize(
    "command",
    [
        ["uvicorn", "--factory", "hayhooks:create_app", "--workers", "2"],
        ["fastapi", "run", "-e", "hayhooks.run.asgi:app", "--workers", "2"],
    ],
    ids=["uvicorn", "fastapi"],
)
def test_other_servers_with_two_workers_follow_the_directory(directory: Path, tmp_path: Path, command: list[str]):
    port = free_port()
    argv = [str(BIN / command[0]), *command[1:], "--host", "127.0.0.1", "--port", str(port)]
    server = Server(argv, server_env(directory, port), port, tmp_path / "server.log")
    try:
        server.wait_ready()
        files = samples.wrapper_files(samples.versioned("other"), files={})
        answer = httpx.post(f"{server.url}/deploy_files", json={"name": "other", "files": files, "wait": True})
        assert answer.json()["converged"] is True and len(answer.json()["workers"]) == 2
        assert wait_until(lambda: every_worker_serves(server, "other", SLOW, answer.json()["revision"]), CONVERGE)
    finally:
        server.stop()


def test_hayhooks_run_with_two_workers_starts_gunicorn(directory: Path, tmp_path: Path):
    server = start_hayhooks(directory, tmp_path, "--workers", "2")
    try:
        server.wait_ready()
        assert len(server.worker_pids()) == 2
        assert wait_until(lambda: every_worker_serves(server, "ver", SLOW, disk_revision(directory, "ver")), CONVERGE)
        assert "uvicorn_worker.UvicornWorker" in server.output()
    finally:
        assert server.stop() == 0


def test_the_default_worker_count_follows_the_containers_cpu_quota(directory: Path, tmp_path: Path):
    """A container limited to one CPU starts one worker, whatever the host's core count (a fake cgroup root)."""
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "cpu.max").write_text("100000 100000\n")
    server = start_gunicorn(directory, tmp_path, workers=None, HAYHOOKS_CGROUP_ROOT=str(cgroup))
    try:
        server.wait_ready()
        assert len(server.worker_pids()) == 1
        source = "cgroup v2 cpu.max 100000/100000"
        assert httpx.get(f"{server.url}/status").json()["server"] == {"workers": 1, "workers_source": source}
        assert f"hayhooks: workers=1 (from {source})" in server.output()
        shown = subprocess.run(
            [str(BIN / "hayhooks"), "--server", server.url, "status"], capture_output=True, text=True, timeout=60
        )
        assert shown.returncode == 0 and f"; 1 worker from {source}" in shown.stdout.splitlines()[0], shown
    finally:
        assert server.stop() == 0
