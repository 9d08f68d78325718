"""How workers follow the directory: in-flight requests, busy threadpools, polling, symlink swaps."""

import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from hayhooks.pipelines.source import hash_entry
from tests.helpers import pipelines as samples
from tests.helpers.metrics import runs_in_flight
from tests.helpers.support import Server, every_worker_serves, start_gunicorn, start_hayhooks, wait_until

SLOW = {"delay": 0.05}
THREADPOOL = 40  # anyio's default thread limiter: the threads every sync run_api of a worker shares


def revision(folder: Path) -> str:
    return hash_entry(folder, "files")


def status_revision(server: Server, name: str) -> str | None:
    """The revision of ``name`` the worker answering ``GET /status`` serves."""
    details = httpx.get(f"{server.url}/status", timeout=5).json()["details"]
    return next(detail["revision"] for detail in details if detail["name"] == name)


def test_a_request_finishes_on_the_revision_it_started_with(pipelines_dir: Path, tmp_path: Path):
    folder = samples.write_wrapper(pipelines_dir, "ver", samples.versioned("v1"), files={})
    old = revision(folder)
    server = start_hayhooks(pipelines_dir, tmp_path)
    try:
        server.wait_ready()
        answers: list[httpx.Response] = []
        slow = threading.Thread(
            target=lambda: answers.append(httpx.post(f"{server.url}/ver/run", json={"delay": 3}, timeout=30))
        )
        slow.start()
        wait_until(lambda: runs_in_flight(server, "ver") == 1, 5, message="the slow run to be accepted")
        (folder / "pipeline_wrapper.py").write_text(samples.versioned("v2"))
        new = revision(folder)
        assert wait_until(lambda: every_worker_serves(server, "ver", {}, new), 5)
        assert answers == [], "the slow run ended before the swap: it proves nothing"
        slow.join()
        assert answers[0].status_code == 200
        assert answers[0].json()["result"]["version"] == "v1"
        assert answers[0].headers["x-hayhooks-revision"] == old
    finally:
        server.stop()


def test_reloads_do_not_wait_for_a_saturated_request_threadpool(pipelines_dir: Path, tmp_path: Path):
    """Runs hold every thread of the only worker's request threadpool: one run more than it has threads
    is in flight, and only as many as it has threads have started. Proves an edit still lands within
    3s, and that the threadpool stayed saturated until it did."""
    folder = samples.write_wrapper(pipelines_dir, "ver", samples.versioned("v1"), files={})
    samples.write_wrapper(pipelines_dir, "gated", samples.GATED, files={})
    gate = samples.Gate(tmp_path / "gate")
    held = THREADPOOL + 1
    server = start_hayhooks(pipelines_dir, tmp_path)
    try:
        server.wait_ready()
        limits = httpx.Limits(max_connections=held)
        with httpx.Client(timeout=60, limits=limits) as client, ThreadPoolExecutor(held) as callers:
            runs = [callers.submit(client.post, f"{server.url}/gated/run", json=gate.body) for _ in range(held)]
            try:
                wait_until(
                    lambda: runs_in_flight(server, "gated") == held and gate.started() == THREADPOOL,
                    20,
                    message=f"{held} runs in flight, {THREADPOOL} of them started",
                )
                (folder / "pipeline_wrapper.py").write_text(samples.versioned("v2"))
                new = revision(folder)
                assert wait_until(lambda: status_revision(server, "ver") == new, 3, message="the reload")
                assert gate.started() == THREADPOOL, "a run got a thread before the reload landed: not saturated"
            finally:
                gate.open()
        assert [run.result().status_code for run in runs] == [200] * held
    finally:
        server.stop()


def test_polling_mode_follows_the_directory(pipelines_dir: Path, tmp_path: Path):
    folder = samples.write_wrapper(pipelines_dir, "ver", samples.versioned("v1"), files={})
    server = start_gunicorn(
        pipelines_dir, tmp_path, workers=2, HAYHOOKS_WATCH_POLL="true", HAYHOOKS_RESCAN_INTERVAL="0"
    )
    try:
        server.wait_ready()
        (folder / "pipeline_wrapper.py").write_text(samples.versioned("v2"))
        assert wait_until(lambda: every_worker_serves(server, "ver", SLOW, revision(folder)), 10)
        samples.write_yaml(pipelines_dir, "prompt", samples.PROMPT_YAML)
        body = {"query": "q", "topic": "t"}
        assert wait_until(lambda: every_worker_serves(server, "prompt", body), 10)
    finally:
        server.stop()


def test_a_swapped_root_symlink_is_followed(tmp_path: Path):
    """git-sync style: the pipelines directory is a link that is atomically repointed to a new tree."""
    first, second = tmp_path / "rev1", tmp_path / "rev2"
    samples.write_wrapper(first, "ver", samples.versioned("v1"), files={})
    samples.write_wrapper(second, "ver", samples.versioned("v2"), files={})
    samples.write_wrapper(second, "added", samples.versioned("a1"), files={})
    link = tmp_path / "current"
    link.symlink_to(first)
    server = start_gunicorn(link, tmp_path, workers=2, HAYHOOKS_RESCAN_INTERVAL="30")
    try:
        server.wait_ready()
        assert wait_until(lambda: every_worker_serves(server, "ver", SLOW, revision(first / "ver")), 10)
        staged = tmp_path / "current.new"
        staged.symlink_to(second)
        os.replace(staged, link)
        assert wait_until(lambda: every_worker_serves(server, "ver", SLOW, revision(second / "ver")), 10)
        assert wait_until(lambda: every_worker_serves(server, "added", SLOW, revision(second / "added")), 10)
        shutil.rmtree(first)
    finally:
        server.stop()
