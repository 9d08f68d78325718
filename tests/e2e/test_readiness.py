"""Readiness you can route on, and a convergence a deploy pipeline can wait on, on real gunicorn workers.

A changed pipeline whose ``setup()`` waits for a gate file: while it loads, every worker keeps
serving the old revision, ``/ready`` answers 503 naming it, and ``hayhooks status --wait-converged``
does not return 0; once the gate opens, both report the new revision everywhere.
"""

import subprocess
from pathlib import Path

import httpx
import pytest

from hayhooks.pipelines.source import hash_entry
from tests.helpers import pipelines as samples
from tests.helpers.support import BIN, Server, cluster, start_gunicorn, wait_until

WORKERS = 2
CONVERGE = 30.0  # seconds; how fast is the benchmark's business

GATED_SETUP = """
import time
from pathlib import Path

from hayhooks import BasePipelineWrapper

VERSION = {version!r}
GATE = Path({gate!r})


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None
        deadline = time.monotonic() + 50  # a test that never opens the gate does not hold the load forever
        while not GATE.exists() and time.monotonic() < deadline:
            time.sleep(0.02)

    def run_api(self) -> str:
        return VERSION
"""


def gated(version: str, gate: Path) -> str:
    return samples.wrapper_code(GATED_SETUP, version=version, gate=str(gate))


@pytest.fixture
def server(pipelines_dir: Path, tmp_path: Path):
    open_gate = tmp_path / "open-gate"
    open_gate.touch()
    samples.write_wrapper(pipelines_dir, "slow", gated("v1", open_gate), files={})
    started = start_gunicorn(pipelines_dir, tmp_path, workers=WORKERS)
    try:
        yield started.wait_ready()
    finally:
        started.stop()


def hayhooks_status(server: Server, *args: str) -> subprocess.Popen:
    command = [str(BIN / "hayhooks"), "--server", server.url, "status", *args]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(cli: subprocess.Popen) -> tuple[int, str]:
    out, err = cli.communicate(timeout=120)
    return cli.returncode, out + err


def every_worker_is(server: Server, state: str) -> bool:
    entries = [worker["pipelines"].get("slow", {}) for worker in cluster(server)["workers"]]
    return len(entries) == WORKERS and all(entry.get("state") == state for entry in entries)


def test_ready_and_wait_converged_follow_a_slow_reload(server: Server, pipelines_dir: Path, tmp_path: Path):
    old = hash_entry(pipelines_dir / "slow", "files")
    gate = tmp_path / "gate"
    samples.write_wrapper(pipelines_dir, "slow", gated("v2", gate), files={})
    new = hash_entry(pipelines_dir / "slow", "files")
    wait_until(lambda: every_worker_is(server, "loading"), CONVERGE, message="every worker to load the change")

    # Every worker is loading: whichever one answers says so, and names what it serves meanwhile.
    for _ in range(2 * WORKERS):
        answer = httpx.get(f"{server.url}/ready", timeout=5)
        assert answer.status_code == 503, answer.text
        assert answer.json()["status"] == "loading"
        assert answer.json()["pending"] == [{"name": "slow", "revision": new, "serving": old}]
    assert httpx.post(f"{server.url}/slow/run", json={}, timeout=10).json()["result"] == "v1"
    view = cluster(server)
    assert view["converged"] is False and view["loading"] == ["slow"] and "slow" not in view["revisions"]

    code, output = finished(hayhooks_status(server, "--wait-converged", "--timeout", "1"))
    assert code == 1, output
    assert "workers disagree: loading: slow (still, after 1 s)" in output

    waiting = hayhooks_status(server, "--wait-converged", "--timeout", "60")
    gate.touch()
    code, output = finished(waiting)
    assert code == 0, output
    assert output.rstrip().endswith(f"all {WORKERS} workers agree"), output
    assert output.count(new[:12]) == WORKERS and "loading" not in output, output  # printed once converged

    answer = httpx.get(f"{server.url}/ready", timeout=5)
    assert answer.status_code == 200 and answer.json() == {"status": "ready", "pipelines": ["slow"], "failed": []}
    assert cluster(server)["revisions"] == {"slow": new}


def test_a_failed_reload_is_given_up_on_ready_and_converged(server: Server, pipelines_dir: Path):
    samples.write_wrapper(pipelines_dir, "slow", samples.SETUP_FAILS, files={})
    wait_until(lambda: every_worker_is(server, "failed"), CONVERGE, message="every worker to fail the edit")

    answer = httpx.get(f"{server.url}/ready", timeout=5)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"status": "ready", "pipelines": ["slow"], "failed": ["slow"]}
    code, output = finished(hayhooks_status(server, "--wait-converged", "--timeout", "30"))
    assert code == 0, output
    assert f"all {WORKERS} workers agree; failed to load: slow" in output
    assert "no index available" in output  # the errors section says why
