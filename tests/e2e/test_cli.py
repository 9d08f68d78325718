"""The ``hayhooks`` CLI driving a real ``hayhooks run`` server, as a user would from a shell."""

import json
import subprocess
import threading
from pathlib import Path

import pytest

from tests.helpers import pipelines as samples
from tests.helpers.support import BIN, REPO, Server, start_hayhooks

EXAMPLES = REPO / "examples" / "pipelines"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    tmp_path = tmp_path_factory.mktemp("cli")
    directory = tmp_path / "pipelines"
    directory.mkdir()
    samples.write_wrapper(directory, "greet", samples.GREET)
    started = start_hayhooks(directory, tmp_path)
    try:
        yield started.wait_ready()
    finally:
        started.stop()


def hayhooks(server: Server, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "hayhooks"), "--server", server.url, *args], capture_output=True, text=True, timeout=120
    )


def test_status_shows_a_table_of_pipelines(server: Server):
    result = hayhooks(server, "status")
    assert result.returncode == 0, result.stderr
    assert "greet" in result.stdout and "ready" in result.stdout
    assert "agree" in result.stdout


def test_run_with_params(server: Server):
    result = hayhooks(server, "pipeline", "run", "greet", "--param", "name=Ada", "--param", "excited=true")
    assert result.returncode == 0, result.stderr
    assert "Hello, Ada!" in result.stdout


def test_deploy_files_run_and_undeploy(server: Server):
    result = hayhooks(server, "pipeline", "deploy-files", "-n", "echo_cli", str(EXAMPLES / "echo"))
    assert result.returncode == 0, result.stderr
    assert "echo_cli" in result.stdout
    run = hayhooks(server, "pipeline", "run", "echo_cli", "--param", "text=ping")
    assert run.returncode == 0 and "ping" in run.stdout

    again = hayhooks(server, "pipeline", "deploy-files", "-n", "echo_cli", str(EXAMPLES / "echo"))
    assert again.returncode != 0
    assert "already exists" in again.stderr
    assert (
        hayhooks(server, "pipeline", "deploy-files", "-n", "echo_cli", "--overwrite", str(EXAMPLES / "echo")).returncode
        == 0
    )

    gone = hayhooks(server, "pipeline", "undeploy", "echo_cli")
    assert gone.returncode == 0, gone.stderr
    missing = hayhooks(server, "pipeline", "undeploy", "echo_cli")
    assert missing.returncode != 0 and "not found" in missing.stderr


def test_deploy_yaml_and_json_params(server: Server):
    result = hayhooks(server, "pipeline", "deploy-yaml", str(EXAMPLES / "chat_prompt.yml"))
    assert result.returncode == 0, result.stderr
    run = hayhooks(server, "pipeline", "run", "chat_prompt", "--param", "query=Why?", "--param", 'topic="42"')
    assert run.returncode == 0, run.stderr
    assert "Question: Why?" in run.stdout and "about 42" in run.stdout
    assert hayhooks(server, "pipeline", "undeploy", "chat_prompt").returncode == 0


def test_deploy_chooses_files_or_yaml_by_path(server: Server, tmp_path: Path):
    folder = hayhooks(server, "deploy", "-n", "cpu_cli", str(EXAMPLES / "cpu_heavy"))
    assert folder.returncode == 0, folder.stderr
    yaml_file = hayhooks(server, "deploy", str(EXAMPLES / "chat_prompt.yml"), "--overwrite")
    assert yaml_file.returncode == 0, yaml_file.stderr
    run = hayhooks(server, "pipeline", "run", "cpu_cli", "--param", "rounds=10")
    assert run.returncode == 0 and json.loads(run.stdout)["rounds"] == 10
    other = tmp_path / "notes.txt"
    other.write_text("x")
    assert hayhooks(server, "deploy", str(other)).returncode != 0


def test_errors_print_the_servers_message(server: Server):
    bad = hayhooks(server, "pipeline", "run", "greet", "--param", "excited=maybe")
    assert bad.returncode != 0
    assert "excited" in bad.stderr
    unknown = hayhooks(server, "pipeline", "run", "nope")
    assert unknown.returncode != 0 and "404" in unknown.stderr


def test_server_address_from_environment(server: Server):
    env = {"PATH": str(BIN), "HAYHOOKS_HOST": "127.0.0.1", "HAYHOOKS_PORT": str(server.port)}
    result = subprocess.run([str(BIN / "hayhooks"), "status"], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "greet" in result.stdout


def test_unreachable_server_fails_clearly():
    result = subprocess.run(
        [str(BIN / "hayhooks"), "--server", "http://127.0.0.1:9", "status"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert "cannot reach hayhooks" in result.stderr


GATED_STREAM = """
from pathlib import Path
import time

from hayhooks import BasePipelineWrapper


def lines(gate):
    yield "first é\\n"
    while not Path(gate).exists():
        time.sleep(0.02)
    yield "second ü\\n"


class PipelineWrapper(BasePipelineWrapper):
    def setup(self):
        self.pipeline = None

    def run_api(self, gate: str):
        return lines(gate)
"""


def test_a_streamed_result_is_printed_as_it_arrives(server: Server, tmp_path: Path):
    deployed = hayhooks(server, "deploy", "-n", "streamer_cli", str(EXAMPLES / "streamer"))
    assert deployed.returncode == 0, deployed.stderr
    whole = hayhooks(server, "pipeline", "run", "streamer_cli", "--param", "count=3")
    assert whole.returncode == 0, whole.stderr
    assert whole.stdout == "line 0\nline 1\nline 2\n"

    folder = tmp_path / "gated"
    folder.mkdir()
    (folder / "pipeline_wrapper.py").write_text(GATED_STREAM)
    assert hayhooks(server, "deploy", "-n", "gated_cli", str(folder)).returncode == 0
    gate = tmp_path / "gate"
    with subprocess.Popen(
        [str(BIN / "hayhooks"), "--server", server.url, "pipeline", "run", "gated_cli", "--param", f"gate={gate}"],
        stdout=subprocess.PIPE,
        text=True,
        encoding="utf-8",
    ) as cli:
        fallback = threading.Timer(30, gate.touch)  # a CLI that buffers fails below instead of hanging
        fallback.start()
        try:
            assert cli.stdout.readline() == "first é\n"
            assert not gate.exists(), "the first line arrived only after the whole answer"
            gate.touch()
        finally:
            fallback.cancel()
        assert cli.stdout.read() == "second ü\n"
        assert cli.wait(timeout=60) == 0
