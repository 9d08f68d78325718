"""Uploads to ``/NAME/run`` on gunicorn with 3 workers: files and typed fields, limits, leftovers,
file answers, and the CLIs (ours and the published one) uploading files."""

import hashlib
import json
import os
import socket
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from tests.helpers import pipelines as samples
from tests.helpers.support import BIN, REPO, Server, start_gunicorn, wait_until

LIMIT = 8 * 1024 * 1024
PUBLISHED_CLI = REPO / "benchmarks" / ".reference-venv" / "bin" / "hayhooks"
BIG = os.urandom(3 * 1024 * 1024)  # past the 1 MiB spool threshold: goes to a temp file on disk


@pytest.fixture(scope="module")
def spool(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("spool")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, spool: Path):
    tmp_path = tmp_path_factory.mktemp("uploads")
    directory = tmp_path / "pipelines"
    directory.mkdir()
    samples.write_wrapper(directory, "answers", samples.FILE_ANSWERS, samples.FILE_ANSWERS_FILES)
    started = start_gunicorn(
        directory,
        tmp_path,
        3,
        TMPDIR=str(spool),  # upload temp files only: the runtime folder goes elsewhere
        HAYHOOKS_RUNTIME_DIR=str(tmp_path / "runtime"),
        HAYHOOKS_MAX_UPLOAD_BYTES=str(LIMIT),
    )
    try:
        yield started.wait_ready()
    finally:
        started.stop()


@pytest.fixture(scope="module")
def uploads(server: Server) -> Server:
    """The server once ``uploads`` (deployed through the API, so at runtime) is served."""
    deployed = httpx.post(
        f"{server.url}/deploy_files",
        json={"name": "uploads", "files": samples.wrapper_files(samples.UPLOADS), "overwrite": True, "wait": True},
        timeout=60,
    )
    assert deployed.status_code == 200, deployed.text
    return server


def spooled_files(server: Server, spool: Path) -> list[str]:
    """Temp files of uploads: entries of the spool folder, and files in it the workers hold open
    (Linux creates them unnamed, so an open descriptor is what a leak looks like)."""
    held = []
    for pid in server.worker_pids():
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:
                continue
            if target.startswith(str(spool)):
                held.append(f"{pid}: {target}")
    return [*(entry.name for entry in spool.iterdir()), *held]


def post_files(url: str, name: str = "uploads", **fields: str) -> httpx.Response:
    files = [("files", ("big.bin", BIG, "application/octet-stream")), ("files", ("note.txt", b"hi", "text/plain"))]
    data = {"count": "2", "excited": "true", "tags": ["a", "b"], "meta": '{"source": "scan"}', **fields}
    return httpx.post(f"{url}/{name}/run", data=data, files=files, timeout=60)


def test_files_and_typed_fields_reach_every_worker(uploads: Server, spool: Path):
    """Fresh connections until every worker answered; each saw the same bytes and typed fields."""
    expected = hashlib.sha256(BIG).hexdigest()
    seen: set[int] = set()

    def one(_: int) -> int:
        answer = post_files(uploads.url)
        assert answer.status_code == 200, answer.text
        result = answer.json()["result"]
        assert result["count"] == 2 and result["excited"] is True and result["tags"] == ["a", "b"]
        assert result["meta"] == {"source": "scan", "pages": 0}
        assert [(f["filename"], f["size"]) for f in result["files"]] == [("big.bin", len(BIG)), ("note.txt", 2)]
        assert result["files"][0]["sha256"] == expected
        return int(answer.headers["x-hayhooks-worker"])

    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(6) as pool:
        while seen != uploads.worker_pids() and time.monotonic() < deadline:
            seen |= set(pool.map(one, range(12)))
    assert seen == uploads.worker_pids()
    wait_until(lambda: not spooled_files(uploads, spool), 10, message="no temp file left")


def test_a_field_that_does_not_convert_answers_422(uploads: Server):
    answer = post_files(uploads.url, count="lots")
    assert answer.status_code == 422
    assert answer.json()["detail"][0]["loc"] == ["body", "count"]


def test_a_failing_pipeline_leaves_no_temp_file(uploads: Server, spool: Path):
    answer = post_files(uploads.url, count="-1")
    assert answer.status_code == 500 and "count must not be negative" in answer.json()["detail"]
    wait_until(lambda: not spooled_files(uploads, spool), 10, message="no temp file left")


def test_over_the_limit_answers_413_and_leaves_no_temp_file(uploads: Server, spool: Path):
    assert not spooled_files(uploads, spool)
    announced = httpx.post(
        f"{uploads.url}/uploads/run",
        data={"count": "1"},
        files=[("files", ("huge.bin", b"x" * (LIMIT + 1024)))],
        timeout=60,
    )
    assert announced.status_code == 413

    def chunked():  # no Content-Length: the limit is checked while reading
        boundary = "b0undary"
        yield f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="huge.bin"\r\n\r\n'.encode()
        for _ in range(LIMIT // (1024 * 1024) + 2):
            yield b"x" * 1024 * 1024
        yield f"\r\n--{boundary}--\r\n".encode()

    streamed = httpx.post(
        f"{uploads.url}/uploads/run",
        content=chunked(),
        headers={"content-type": "multipart/form-data; boundary=b0undary"},
        timeout=60,
    )
    assert streamed.status_code == 413
    assert "HAYHOOKS_MAX_UPLOAD_BYTES" in streamed.json()["detail"]
    wait_until(lambda: not spooled_files(uploads, spool), 10, message="no temp file left")


def test_a_client_that_disconnects_mid_upload_leaves_no_temp_file(uploads: Server, spool: Path):
    boundary = "cut0ff"
    head = f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="cut.bin"\r\n\r\n'.encode()
    with socket.create_connection(("127.0.0.1", uploads.port)) as connection:
        connection.sendall(
            (
                f"POST /uploads/run HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {6 * 1024 * 1024}\r\n"
                f"Content-Type: multipart/form-data; boundary={boundary}\r\n\r\n"
            ).encode()
            + head
            + BIG
        )
        wait_until(lambda: spooled_files(uploads, spool), 10, message="the half upload spooled to disk")
    wait_until(lambda: not spooled_files(uploads, spool), 10, message="the temp file removed after the disconnect")
    assert post_files(uploads.url).status_code == 200  # the worker is fine


@pytest.mark.parametrize(
    ("kind", "media_type", "body", "header"),
    [
        ("file", "text/csv", b"name,value\nalpha,1\n", ("content-disposition", 'attachment; filename="report.csv"')),
        ("stream", "text/csv", b"a,b,c", ("x-kind", "stream")),
        ("bytes", "image/png", b"\x89PNG\r\n", ("x-kind", "bytes")),
    ],
)
def test_a_returned_response_passes_through_unchanged(server: Server, kind, media_type, body, header):
    answer = httpx.post(f"{server.url}/answers/run", json={"kind": kind}, timeout=30)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith(media_type)
    assert answer.content == body
    assert answer.headers[header[0]] == header[1]
    assert answer.headers["x-hayhooks-revision"]


@pytest.fixture
def upload_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("alpha")
    (folder / "sub" / "b.md").write_text("# beta")
    (folder / ".hidden").write_text("secret")
    (tmp_path / "big.bin").write_bytes(BIG)
    return folder


def test_our_cli_uploads_files_and_folders(uploads: Server, upload_folder: Path):
    run = subprocess.run(
        [str(BIN / "hayhooks"), "--server", uploads.url, "pipeline", "run", "uploads"]
        + ["--file", str(upload_folder.parent / "big.bin"), "--dir", str(upload_folder)]
        + ["--param", "count=5", "--param", "excited=true", "--param", 'tags=["x"]', "--param", "label=007"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout)
    assert [(f["filename"], f["size"]) for f in result["files"]] == [("big.bin", len(BIG)), ("a.txt", 5), ("b.md", 6)]
    assert result["files"][2]["content_type"] == "text/markdown"
    assert (result["count"], result["excited"], result["tags"], result["label"]) == (5, True, ["x"], "007")

    missing = subprocess.run(
        [str(BIN / "hayhooks"), "--server", uploads.url, "pipeline", "run", "uploads", "--file", "/nonexistent"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "/nonexistent is not a file" in missing.stderr


def test_the_published_cli_uploads_to_our_server(uploads: Server, upload_folder: Path):
    assert PUBLISHED_CLI.exists(), "run `make tools` (scripts/ensure-published-hayhooks.sh) first"
    environment = {
        "PATH": os.environ["PATH"],
        "HAYHOOKS_HOST": "127.0.0.1",
        "HAYHOOKS_PORT": str(uploads.port),
        "HAYSTACK_TELEMETRY_ENABLED": "False",
        "COLUMNS": "200",
    }
    run = subprocess.run(
        [str(PUBLISHED_CLI), "pipeline", "run", "uploads", "--dir", str(upload_folder)]
        + ["--param", "count=3", "--param", "excited=true", "--param", 'meta={"source": "cli"}'],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "a.txt" in run.stdout and "b.md" in run.stdout and "cli" in run.stdout
