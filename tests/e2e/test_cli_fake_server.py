"""The ``hayhooks`` CLI against a local fake server, and in fresh interpreters: what it sends, prints and imports."""

import json
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from hayhooks.cli.main import app
from tests.helpers.answers import STATUS

runner = CliRunner()
SERVER_MODULES = ("haystack", "fastapi", "uvicorn", "starlette")
WATCHED_MODULES = (*SERVER_MODULES, "pydantic", "httpx", "rich")


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


def test_help_exits_0_without_importing_the_server() -> None:
    done, imported = run_in_subprocess("--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: hayhooks" in done.stdout
    assert imported == []


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
        "skip_mcp": False,
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


def test_status_imports_no_server_modules(server: FakeServer) -> None:
    server.routes[("GET", "/status")] = (200, STATUS)
    done, imported = run_in_subprocess("--server", server.url, "status")
    assert done.returncode == 0, done.stderr
    assert "all 2 workers agree" in done.stdout
    assert not set(imported) & set(SERVER_MODULES)
