"""The ``hayhooks`` CLI in-process, without any server: argument parsing, file collection, error and status
rendering, comparing instances."""

import json
import os
import sys
import time
import types
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from hayhooks.cli.client import error_message
from hayhooks.cli.main import app
from hayhooks.cli.pipeline import collect_files, parse_params
from hayhooks.cli.status import compare_instances, render_status
from hayhooks.settings import Settings
from tests.helpers.answers import STATUS

os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"

runner = CliRunner()


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


# --- rendering -------------------------------------------------------------------------------------


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


def test_comparing_instances_that_serve_different_revisions():
    def answer(port: int, revision: str) -> dict:
        worker = {"pid": port, "port": port, "pipelines": {"ver": {"revision": revision, "state": "ready"}}}
        return {"status": "Up!", "cluster": {"converged": True, "starting": [], "workers": [worker]}}

    assert compare_instances({"a": answer(1, "aaa"), "b": answer(2, "aaa")}) == (
        True,
        "all 2 instances (2 workers) agree",
    )
    assert compare_instances({"a": answer(1, "aaa"), "b": answer(2, "bbb")}) == (
        False,
        "instances disagree: revisions differ for ver",
    )


# --- hayhooks run ----------------------------------------------------------------------------------


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


def test_comparing_counts_a_load_under_way_and_names_failed_pipelines():
    def answer(state: str, starting: list[int] | None = None) -> dict:
        worker = {"pid": 1, "port": 1, "pipelines": {"ver": {"revision": "aaa", "state": state}}}
        return {"status": "Up!", "cluster": {"starting": starting or [], "workers": [worker]}}

    assert compare_instances({"a": answer("loading")}) == (False, "workers disagree: loading: ver")
    assert compare_instances({"a": answer("ready", starting=[1])}) == (False, "workers disagree: starting: a")
    assert compare_instances({"a": answer("failed")}) == (True, "all 1 workers agree; failed to load: ver")
    assert compare_instances({"a": answer("ready"), "b": answer("loading")}) == (
        False,
        "instances disagree: loading: ver",
    )


def test_the_headline_says_how_many_workers_started_and_why():
    data = {"status": "Up!", "server": {"workers": 2, "workers_source": "cgroup v2 cpu.max 200000/100000"}}
    assert render_status("http://h:1", data).splitlines()[0] == (
        "hayhooks at http://h:1: Up!; 2 workers from cgroup v2 cpu.max 200000/100000"
    )


def test_status_says_when_a_failed_load_is_tried_again() -> None:
    details = [
        {
            "name": "a",
            "state": "failed",
            "error": "setup() failed",
            "attempts": 2,
            "next_retry_at": time.time() + 30,
        },
        {"name": "b", "state": "failed", "error": "SyntaxError", "attempts": 1, "next_retry_at": None},
    ]
    lines = render_status("http://h:1", {"status": "Up!", "pipelines": [], "details": details}).splitlines()
    assert lines[-2].startswith("  a: setup() failed (attempt 2; next try in ")  # 29 or 30 s
    assert lines[-1] == "  b: SyntaxError (attempt 1; not retried until its files change)"
