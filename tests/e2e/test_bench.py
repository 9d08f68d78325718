"""``hayhooks bench`` as a user runs it: end to end on the bundled examples (wrk and the built-in
generator) and the failure paths, the memory of a process tree, and what its modules import."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hayhooks.bench.server import TreeMemory, tree_memory
from tests.helpers.support import BIN, REPO

QUICK = ["--pipeline", "echo", "--workers", "1,2", "--duration", "2", "--warmup", "0.5", "--connections", "8"]


def bench(tmp_path: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``hayhooks bench ARGS`` with its temporary folders under ``tmp_path/tmp``, which must end empty."""
    scratch = tmp_path / "tmp"
    scratch.mkdir(exist_ok=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith("HAYHOOKS_")}
    env.update(HAYSTACK_TELEMETRY_ENABLED="False", TMPDIR=str(scratch))
    run = subprocess.run(
        [str(BIN / "hayhooks"), "bench", *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=timeout
    )
    assert list(scratch.iterdir()) == [], "the bench left its temporary folder behind"
    assert not _processes_under(scratch), "the bench left server processes behind"
    return run


def _processes_under(folder: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if str(folder) in os.readlink(proc / "cwd"):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def table(output: str) -> list[dict[str, str]]:
    """The rows of the printed table, as {column: cell}."""
    lines = [line for line in output.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")), strict=True)) for line in lines[2:]]


def check_rows(output: str, expected: set[tuple[str, str]]) -> list[dict[str, str]]:
    rows = table(output)
    assert {(row["workers"], row["preload"]) for row in rows} == expected, output
    for row in rows:
        assert float(row["req/s"]) > 0, row
        assert float(row["PSS MiB"]) > 0 and float(row["USS MiB"]) > 0 and float(row["PSS/worker MiB"]) > 0, row
        assert float(row["p99 ms"]) >= float(row["p50 ms"]) > 0, row
        assert row["errors"] == "0", row
    assert "Recommendation: " in output and "Why: " in output, output
    return rows


# --- end to end ---------------------------------------------------------------------------------------


@pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk is not installed")
def test_bench_with_wrk(tmp_path: Path) -> None:
    run = bench(tmp_path, *QUICK, "--load-generator", "wrk")
    assert run.returncode == 0, run.stderr
    assert "wrk -t1 -c8" in run.stdout
    check_rows(run.stdout, {("1", "off"), ("2", "off")})


def test_bench_builtin_generator_both_preload_modes_and_plot(tmp_path: Path) -> None:
    chart = tmp_path / "out.png"
    run = bench(tmp_path, *QUICK, "--load-generator", "builtin", "--both", "--plot", str(chart))
    assert run.returncode == 0, run.stderr
    assert "built-in generator" in run.stdout
    rows = check_rows(run.stdout, {("1", "off"), ("1", "on"), ("2", "off"), ("2", "on")})
    assert all(float(row["load gen CPU"]) > 0 for row in rows)  # measured, not a placeholder
    data = chart.read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) > 1000


def test_every_request_failing_exits_nonzero_and_leaves_the_directory_alone(tmp_path: Path) -> None:
    pipelines = tmp_path / "mine"
    shutil.copytree(REPO / "examples" / "pipelines" / "echo", pipelines / "broken")
    wrapper = pipelines / "broken" / "pipeline_wrapper.py"
    wrapper.write_text(wrapper.read_text().replace("return self.pipeline.run(", 'raise RuntimeError("boom")  # ('))
    before = sorted(str(path.relative_to(pipelines)) for path in pipelines.rglob("*"))
    run = bench(
        tmp_path, "--pipelines-dir", str(pipelines), "--workers", "1", "--duration", "1", "--body", '{"text": "x"}'
    )
    assert run.returncode == 1
    assert "POST /broken/run" in run.stderr and "answered 500" in run.stderr and "boom" in run.stderr, run.stderr
    assert sorted(str(path.relative_to(pipelines)) for path in pipelines.rglob("*")) == before


def test_unknown_pipeline_and_bad_body_fail_before_starting_anything(tmp_path: Path) -> None:
    run = bench(tmp_path, "--pipeline", "nope", "--workers", "1")
    assert run.returncode == 1 and "no pipeline 'nope'" in run.stderr and "cpu_heavy" in run.stderr
    run = bench(tmp_path, "--pipeline", "echo", "--body", "{not json")
    assert run.returncode == 1 and "--body is not valid JSON" in run.stderr


def test_wrong_body_says_which_field_is_missing(tmp_path: Path) -> None:
    run = bench(tmp_path, "--pipeline", "echo", "--workers", "1", "--duration", "1", "--body", "{}")
    assert run.returncode == 1
    assert "answered 422: text: Field required (pass the pipeline's fields with --body" in run.stderr, run.stderr


def test_sigterm_stops_the_servers_and_removes_the_copy(tmp_path: Path) -> None:
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {key: value for key, value in os.environ.items() if not key.startswith("HAYHOOKS_")}
    env.update(HAYSTACK_TELEMETRY_ENABLED="False", TMPDIR=str(scratch))
    command = [str(BIN / "hayhooks"), "bench", *QUICK[:2], "--workers", "2", "--duration", "30"]
    process = subprocess.Popen(command, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        for line in process.stderr:
            if "serving echo" in line:
                break
        assert _processes_under(scratch), "no server running yet"
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 128 + signal.SIGTERM
    finally:
        process.kill()
        process.wait()
        process.stderr.close()
    assert list(scratch.iterdir()) == [] and not _processes_under(scratch)


# --- processes ----------------------------------------------------------------------------------------


def test_tree_memory_sums_master_and_workers() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        memory = tree_memory(os.getpid(), [child.pid])
        assert isinstance(memory, TreeMemory) and memory.workers == 1
        assert memory.total == memory.master + memory.per_worker
        assert memory.per_worker.pss > 0
    finally:
        child.kill()
        child.wait()


def test_bench_modules_import_only_the_standard_library() -> None:
    """So the CLI starts fast, and benchmarks/run.py (stdlib only) can import the helpers."""
    code = (
        "import sys, hayhooks.bench.server, hayhooks.bench.load, hayhooks.bench.report, hayhooks.bench.runner;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pydantic', 'typer', 'haystack', 'httpx', 'fastapi',"
        " 'matplotlib', 'uvloop'}))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(run.stdout.replace("'", '"')) == []
