"""Logs of real servers (gunicorn, ``hayhooks run``, plain uvicorn): one format in every process, request
ids end to end, access and reload lines."""

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.helpers import pipelines as samples
from tests.helpers.support import (
    Server,
    every_worker_serves,
    free_port,
    server_env,
    start_gunicorn,
    start_hayhooks,
    wait_until,
)


def json_entries(server: Server) -> list[dict]:
    """Every complete non-empty line of the server's output, parsed: all of them must be JSON."""
    entries = []
    for line in server.output().splitlines(keepends=True):
        if not line.endswith("\n"):  # still being written
            break
        if line.strip():
            try:
                entries.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"not a JSON line: {line!r}\n--- output:\n{server.output()}")
    return entries


def entries_once(server: Server, found: Callable[[dict], bool]) -> list[dict]:
    """The server's JSON lines once one of them is ``found``: access lines follow their response."""

    def entries() -> list[dict]:
        lines = json_entries(server)
        return lines if any(map(found, lines)) else []

    return wait_until(entries, 10, message="the log line")


def test_gunicorn_writes_only_json_with_request_ids_and_reload_revisions(pipelines_dir: Path, tmp_path: Path):
    samples.write_wrapper(pipelines_dir, "versioned", samples.versioned("one"))
    server = start_gunicorn(pipelines_dir, tmp_path, workers=2, HAYHOOKS_LOG_FORMAT="json", HAYHOOKS_ACCESS_LOG="true")
    try:
        server.wait_ready()
        old = wait_until(lambda: every_worker_serves(server, "versioned", {}), 30, 0.2, "every worker to serve")
        response = httpx.post(f"{server.url}/versioned/run", json={}, headers={"X-Request-ID": "abc123"}, timeout=10)
        assert response.headers["x-request-id"] == "abc123"
        worker = int(response.headers["x-hayhooks-worker"])

        samples.write_wrapper(pipelines_dir, "versioned", samples.versioned("two"))

        def reloads() -> list[dict]:
            lines = [e for e in json_entries(server) if e.get("old_revision") == old and e.get("new_revision")]
            return lines if {line["pid"] for line in lines} == server.worker_pids() else []

        reloaded = wait_until(reloads, 30, 0.2, "every worker to log its reload")
        entries = json_entries(server)
    finally:
        server.stop()

    messages = [entry["message"] for entry in entries]
    assert any(message.startswith("Booting worker") for message in messages)
    assert sum(message == "Application startup complete." for message in messages) == 2
    assert all({"time", "level", "pid", "logger", "message"} <= entry.keys() for entry in entries)
    (access,) = [entry for entry in entries if entry.get("request_id") == "abc123"]
    assert access["logger"] == "hayhooks.access"
    assert (access["request_id"], access["pipeline"], access["pid"], access["status"]) == (
        "abc123",
        "versioned",
        worker,
        200,
    )
    for line in reloaded:
        assert line["logger"] == "hayhooks.reload" and line["pipeline"] == "versioned"
        assert line["new_revision"] != old and line["load_seconds"] >= 0


def test_gunicorn_without_access_log_writes_no_access_lines(pipelines_dir: Path, tmp_path: Path):
    samples.write_wrapper(pipelines_dir, "greet", samples.GREET)
    server = start_gunicorn(pipelines_dir, tmp_path, workers=2, HAYHOOKS_ACCESS_LOG="false")
    try:
        server.wait_ready()
        for _ in range(4):
            response = httpx.post(f"{server.url}/greet/run", json={"name": "Ada"}, headers={"X-Request-ID": "q1"})
            assert response.headers["x-request-id"] == "q1"
        output = server.output()
    finally:
        server.stop()
    assert "hayhooks.access" not in output and "/greet/run" not in output  # neither ours nor uvicorn's
    assert re.search(r" INFO \[\d+\] uvicorn\.error: Application startup complete\.", output)


def test_hayhooks_run_writes_json_and_one_access_line_per_request(pipelines_dir: Path, tmp_path: Path):
    samples.write_wrapper(pipelines_dir, "greet", samples.GREET)
    server = start_hayhooks(pipelines_dir, tmp_path, HAYHOOKS_LOG_FORMAT="json", HAYHOOKS_ACCESS_LOG="true")
    try:
        server.wait_ready()
        httpx.post(f"{server.url}/greet/run", json={"name": "Ada"}, headers={"X-Request-ID": "solo"})
        entries = entries_once(
            server, lambda entry: entry["logger"] == "hayhooks.access" and "/greet/run" in entry["message"]
        )
    finally:
        server.stop()
    assert any(entry["message"] == "Application startup complete." for entry in entries)
    (access,) = [entry for entry in entries if "/greet/run" in entry["message"]]  # uvicorn's own is off
    assert (access["logger"], access["request_id"], access["pid"]) == ("hayhooks.access", "solo", server.pid)


def test_plain_uvicorn_gets_the_same_format_from_create_app(pipelines_dir: Path, tmp_path: Path):
    """``uvicorn --factory`` sets up only its own loggers; ``create_app`` takes the whole process over."""
    samples.write_wrapper(pipelines_dir, "greet", samples.GREET)
    port = free_port()
    command = [sys.executable, "-m", "uvicorn", "--factory", "hayhooks:create_app", "--port", str(port)]
    env = server_env(pipelines_dir, port, HAYHOOKS_LOG_FORMAT="json", HAYHOOKS_ACCESS_LOG="true")
    server = Server(command, env, port, tmp_path / "uvicorn.log")
    try:
        server.wait_ready()
        httpx.post(f"{server.url}/greet/run", json={"name": "Ada"}, headers={"X-Request-ID": "plain"})
        entries = entries_once(
            server, lambda entry: entry["logger"] == "hayhooks.access" and "/greet/run" in entry["message"]
        )
    finally:
        server.stop()
    assert any(entry["message"] == "Application startup complete." for entry in entries)
    (access,) = [entry for entry in entries if "/greet/run" in entry["message"]]  # uvicorn's own is silenced
    assert (access["logger"], access["request_id"]) == ("hayhooks.access", "plain")
