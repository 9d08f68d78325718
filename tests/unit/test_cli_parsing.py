"""The ``hayhooks`` CLI without a real server: argument parsing, file collection, rendering, HTTP errors."""

import json
import os
import socket
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner, Result

from hayhooks.cli.client import error_message
from hayhooks.cli.main import app
from hayhooks.cli.pipeline import collect_files, parse_params
from hayhooks.cli.status import render_status
from hayhooks.settings import Settings

os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"

runner = CliRunner()
SERVER_MODULES = ("haystack", "fastapi", "uvicorn", "starlette")
WATCHED_MODULES = (*SERVER_MODULES, "pydantic", "httpx", "rich")

STATUS = {
    "status": "Up!",
    "pipelines": ["a", "b"],
    "worker": {"pid": 123, "host": "myhost", "port": 1416},
    "details": [
        {"name": "a", "state": "ready", "revision": "3f2a9c01beef", "error": None, "kind": "files"},
        {"name": "b", "state": "failed", "revision": None, "error": "setup() failed: boom", "kind": "yaml"},
    ],
    "cluster": {
        "converged": True,
        "workers": [
            {
                "pid": 123,
                "pipelines": {
                    "a": {"revision": "3f2a9c01beef", "state": "ready"},
                    "b": {"revision": None, "state": "failed"},
                },
            },
            {
                "pid": 124,
                "pipelines": {
                    "a": {"revision": "3f2a9c01beef", "state": "ready"},
                    "b": {"revision": None, "state": "failed"},
                },
            },
        ],
        "lagging": [],
    },
}


class FakeServer:
    """A local HTTP server answering canned JSON per ``(method, path)`` and recording what it got."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], tuple[int, Any]] = {}
        self.received: list[tuple[str, str, Any]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                fake.received.append((self.command, self.path, body))
                status, payload = fake.routes.get((self.command, self.path), (404, {"detail": "Not Found"}))
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    thread = threading.Thread(target=fake.httpd.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


def invoke(server: FakeServer, *args: str) -> Result:
    return runner.invoke(app, ["--server", server.url, *args])


def run_in_subprocess(*args: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    """Run the CLI in a fresh interpreter; also return which of the watched modules it imported."""
    code = (
        "import json, sys\n"
        "from hayhooks.cli.main import main\n"
        f"sys.argv = ['hayhooks', *{list(args)!r}]\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        f"    print(json.dumps([m for m in {WATCHED_MODULES!r} if m in sys.modules]), file=sys.stderr)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    return done, json.loads(done.stderr.splitlines()[-1])


# --- parsing ---------------------------------------------------------------------------------------


def test_param_values_are_json_when_they_parse_else_strings() -> None:
    params = [
        "n=3",
        "q=hello",
        'docs=["a"]',
        "flag=true",
        "none=null",
        "eq=a=b",
        "empty=",
        "nan=NaN",
        'quoted="3"',
    ]
    assert parse_params(params) == {
        "n": 3,
        "q": "hello",
        "docs": ["a"],
        "flag": True,
        "none": None,
        "eq": "a=b",
        "empty": "",
        "nan": "NaN",
        "quoted": "3",
    }


@pytest.mark.parametrize("bad", ["novalue", "=3"])
def test_param_without_key_and_equals_is_rejected(bad: str) -> None:
    with pytest.raises(typer.BadParameter):
        parse_params([bad])
    result = runner.invoke(app, ["pipeline", "run", "x", "--param", bad])
    assert result.exit_code == 2
    assert "expected key=value" in result.output


def test_collect_files_skips_debris(tmp_path: Path) -> None:
    (tmp_path / "pipeline_wrapper.py").write_text("wrapper")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "helper.py").write_text("helper ✓")
    for debris in ["__pycache__/w.cpython-311.pyc", ".git/config", "sub/.hidden", "stale.pyc", "notes.txt~"]:
        (tmp_path / debris).parent.mkdir(exist_ok=True)
        (tmp_path / debris).write_text("debris")
    assert collect_files(tmp_path) == {"pipeline_wrapper.py": "wrapper", "sub/helper.py": "helper ✓"}


def test_binary_file_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "model.bin").write_bytes(b"\xff\xfe\x00\x81")
    result = runner.invoke(app, ["--server", "http://127.0.0.1:9", "pipeline", "deploy-files", str(tmp_path)])
    assert result.exit_code == 1
    assert "model.bin is not UTF-8 text" in result.stderr


def test_validation_errors_are_listed_by_field() -> None:
    body = {
        "detail": [
            {
                "loc": ["body", "name"],
                "msg": "String should match pattern",
                "type": "string_pattern_mismatch",
            },
            {"loc": ["body", "files", "a.py"], "msg": "Field required", "type": "missing"},
        ]
    }
    assert error_message(json.dumps(body)) == (
        "invalid request:\n  name: String should match pattern\n  files.a.py: Field required"
    )
    assert error_message("plain text failure") == "plain text failure"


def test_help_exits_0_without_importing_the_server() -> None:
    done, imported = run_in_subprocess("--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: hayhooks" in done.stdout
    assert imported == []


# --- against a fake server -------------------------------------------------------------------------


def test_conflict_prints_the_server_detail_and_exits_1(server: FakeServer, tmp_path: Path) -> None:
    server.routes[("POST", "/deploy_files")] = (409, {"detail": "Pipeline 'x' already exists"})
    (tmp_path / "pipeline_wrapper.py").write_text("pass\n")
    result = invoke(server, "pipeline", "deploy-files", "-n", "x", str(tmp_path))
    assert result.exit_code == 1
    assert "Pipeline 'x' already exists" in result.stderr
    assert result.stdout == ""


def test_deploy_files_sends_the_directory(server: FakeServer, tmp_path: Path) -> None:
    server.routes[("POST", "/deploy_files")] = (
        200,
        {"name": "greeter", "revision": "abc", "converged": True, "lagging": [], "workers": 3},
    )
    pipeline_dir = tmp_path / "greeter"
    pipeline_dir.mkdir()
    (pipeline_dir / "pipeline_wrapper.py").write_text("pass\n")
    result = invoke(server, "deploy", str(pipeline_dir), "--overwrite")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Pipeline 'greeter' deployed, revision abc, served by all 3 workers"
    assert server.received == [
        (
            "POST",
            "/deploy_files",
            {
                "name": "greeter",
                "files": {"pipeline_wrapper.py": "pass\n"},
                "overwrite": True,
                "save_files": True,
                "wait": True,
            },
        )
    ]


def test_deploy_yaml_names_the_pipeline_after_the_file(server: FakeServer, tmp_path: Path) -> None:
    server.routes[("POST", "/deploy-yaml")] = (200, {"name": "chat", "converged": False, "lagging": [124]})
    yaml_file = tmp_path / "chat.yml"
    yaml_file.write_text("components: {}\n")
    result = invoke(server, "deploy", str(yaml_file), "--no-wait")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "Pipeline 'chat' deployed"
    assert "lagging: 124" in result.stderr
    assert server.received[0][2] == {
        "name": "chat",
        "source_code": "components: {}\n",
        "overwrite": False,
        "description": None,
        "wait": False,
    }


def test_undeploy_and_run(server: FakeServer) -> None:
    server.routes[("POST", "/undeploy/x")] = (200, {"success": True})
    server.routes[("POST", "/x/run")] = (200, {"result": {"answer": "hi", "n": 3}})
    assert invoke(server, "pipeline", "undeploy", "x").stdout.strip() == "Pipeline 'x' undeployed"
    result = invoke(server, "pipeline", "run", "x", "--param", "n=3", "-p", "q=hello")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {"answer": "hi", "n": 3}
    assert server.received[-1] == ("POST", "/x/run", {"n": 3, "q": "hello"})


def test_unreachable_server_exits_1() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = runner.invoke(app, ["--server", url, "status"])
    assert result.exit_code == 1
    assert f"cannot reach hayhooks at {url}" in result.stderr


def test_status_table(server: FakeServer) -> None:
    server.routes[("GET", "/status")] = (200, STATUS)
    result = invoke(server, "status")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"hayhooks at {server.url}: Up! (answered by worker pid 123 on myhost:1416)\n"
        "\n"
        "PIPELINE  STATE   PID 123       PID 124\n"
        "a         ready   3f2a9c01beef  3f2a9c01beef\n"
        "b         failed  failed        failed\n"
        "all 2 workers agree\n"
        "\n"
        "errors:\n"
        "  b: setup() failed: boom\n"
    )


def test_status_reports_disagreement() -> None:
    lagging = json.loads(json.dumps(STATUS))
    lagging["cluster"]["converged"] = False
    lagging["cluster"]["lagging"] = [124]
    lagging["cluster"]["workers"][1]["pipelines"] = {"a": {"revision": "0000aaaa1111ffff", "state": "loading"}}
    lines = render_status("http://h:1", lagging).splitlines()
    assert lines[3:6] == [
        "a         ready   3f2a9c01beef  0000aaaa1111 (loading)",
        "b         failed  failed        -",
        "workers disagree: revisions differ for a, b; lagging: 124",
    ]


def test_status_of_an_older_server() -> None:
    assert render_status("http://h:1", {"status": "Up!", "pipelines": ["a"]}) == (
        "hayhooks at http://h:1: Up!\n\nPIPELINE  STATE\na         -"
    )
    assert render_status("http://h:1", {"status": "Up!"}) == "hayhooks at http://h:1: Up!\nno pipelines deployed"


def test_status_imports_no_server_modules(server: FakeServer) -> None:
    server.routes[("GET", "/status")] = (200, STATUS)
    done, imported = run_in_subprocess("--server", server.url, "status")
    assert done.returncode == 0, done.stderr
    assert "all 2 workers agree" in done.stdout
    assert not set(imported) & set(SERVER_MODULES)


def test_run_sets_env_and_calls_serve(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    seen: dict[str, Any] = {}

    def serve(settings: Settings) -> None:
        seen.update(host=settings.host, port=settings.port, workers=settings.workers, dir=settings.pipelines_dir)
        seen["env"] = Settings().model_dump() == settings.model_dump()  # what an exec'd gunicorn would read

    for variable in ["HOST", "PORT", "PIPELINES_DIR", "WORKERS", "ROOT_PATH", "ADDITIONAL_PYTHON_PATH"]:
        monkeypatch.delenv(f"HAYHOOKS_{variable}", raising=False)
    monkeypatch.setitem(sys.modules, "hayhooks.run.uvicorn", types.SimpleNamespace(serve=serve))
    result = runner.invoke(app, ["run", "--host", "0.0.0.0", "-p", "8080", "-w", "2", "-d", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert seen == {"host": "0.0.0.0", "port": 8080, "workers": 2, "dir": tmp_path, "env": True}
    assert "HAYHOOKS_ROOT_PATH" not in os.environ
