"""``hayhooks bench``: end to end on the bundled examples (wrk and the built-in generator), the
PSS/USS reader on this very process, wrk parsing, the recommendation and the failure paths."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hayhooks.bench.load import LoadResult, parse_wrk, percentile
from hayhooks.bench.report import Row, recommend, render_recommendation
from hayhooks.bench.runner import choose_pipeline, sample_body
from hayhooks.bench.server import MIB, Memory, TreeMemory, parse_smaps_rollup, read_memory, tree_memory
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


def test_plot_without_matplotlib_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from hayhooks.cli.main import app

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    result = CliRunner().invoke(app, ["bench", "--plot", "x.png"])
    assert result.exit_code == 1
    assert "pip install 'hayhooks[bench]'" in result.output


# --- pieces ---------------------------------------------------------------------------------------------


def test_memory_reader_on_this_process() -> None:
    before = read_memory(os.getpid())
    assert before is not None and before.pss > 0 and 0 < before.uss <= before.pss + 1024
    ballast = bytearray(64 * MIB)  # private, written pages
    for offset in range(0, len(ballast), 4096):
        ballast[offset] = 1
    after = read_memory(os.getpid())
    assert after.uss - before.uss >= 60 * MIB and after.pss - before.pss >= 60 * MIB
    del ballast
    assert read_memory(2**22 + 12345) is None  # no such process


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


def test_parse_smaps_rollup() -> None:
    text = "55d0-7ffe ---p 0 00:00 0 [rollup]\nRss: 300 kB\nPss: 120 kB\nPrivate_Clean: 8 kB\nPrivate_Dirty: 92 kB\n"
    assert parse_smaps_rollup(text) == Memory(pss=120 * 1024, uss=100 * 1024)
    assert parse_smaps_rollup("Rss: 1 kB\n") is None


WRK_OUTPUT = """Running 2s test @ http://127.0.0.1:4000/echo/run
  1 threads and 8 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     3.01ms    1.10ms  20.50ms   90.00%
    Req/Sec     2.60k   100.00     2.80k    70.00%
  Latency Distribution
     50%    2.80ms
     75%    3.20ms
     90%    4.00ms
     99%  812.00us
  5200 requests in 2.00s, 900.00KB read
  Socket errors: connect 0, read 1, write 0, timeout 2
  Non-2xx or 3xx responses: 4
Requests/sec:   2598.70
Transfer/sec:    450.00KB
"""


def test_parse_wrk() -> None:
    result = parse_wrk(WRK_OUTPUT)
    assert (result.requests, result.rps, result.p50_ms, result.p99_ms) == (5200, 2598.7, 2.8, 0.812)
    assert (result.non_2xx, result.socket_errors, result.errors, result.seconds) == (4, 3, 7, 2.0)


def test_percentile() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == 50 and percentile(values, 99) == 99 and percentile(values, 100) == 100
    assert math.isnan(percentile([], 50))


def _row(workers: int, rps: float, preload: bool = False, pss_mib: int = 100) -> Row:
    memory = Memory(pss_mib * MIB, pss_mib * MIB)
    tree = TreeMemory(total=memory, master=Memory(0, 0), per_worker=memory, workers=workers)
    return Row(workers, preload, LoadResult(100, rps, 1.0, 2.0), tree, 1.9, 0.05, 0.0)


def test_recommend_takes_the_smallest_count_within_five_percent() -> None:
    rows = [_row(1, 100, pss_mib=100), _row(2, 196, pss_mib=180), _row(4, 200, pss_mib=340)]
    pick = recommend(rows, cores=2)
    assert pick.row.workers == 2 and pick.best.workers == 4
    assert "CPU-bound" in pick.reason and "2 cores" in pick.reason and "80 MiB" in pick.reason
    # with both preload modes, the same count with less memory wins
    rows = [_row(1, 100), _row(2, 199, pss_mib=180), _row(2, 200, preload=True, pss_mib=150)]
    assert recommend(rows, cores=2).row.preload is True
    # still growing at the largest count, with cores to spare: say so
    assert "try more" in recommend([_row(1, 100), _row(2, 190)], cores=8).reason
    # a worker that sat idle is pointed out
    lopsided = _row(2, 100)
    lopsided.worker_cores = [0.02, 1.0]
    rows = [_row(1, 100), lopsided]
    assert "Uneven: with 2 (no preload) workers" in render_recommendation(recommend(rows, cores=2), rows)


def test_choose_pipeline_and_sample_body(tmp_path: Path) -> None:
    examples = REPO / "examples" / "pipelines"
    assert choose_pipeline(examples, None) == "cpu_heavy"
    (tmp_path / "b.yml").write_text("")
    (tmp_path / "a").mkdir()  # no pipeline_wrapper.py: not a pipeline
    assert choose_pipeline(tmp_path, None) == "b"
    openapi = {
        "paths": {
            "/echo/run": {"post": {"requestBody": {"content": {"application/json": {"schema": {"$ref": "#/x/R"}}}}}}
        },
        "components": {
            "schemas": {
                "R": {
                    "properties": {
                        "text": {"type": "string"},
                        "n": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                        "opt": {"type": "string"},
                    },
                    "required": ["text", "n"],
                }
            }
        },
    }
    assert sample_body(openapi, "echo") == {"text": "ping", "n": 1}
    assert sample_body({}, "echo") == {}


def test_bench_modules_import_only_the_standard_library() -> None:
    """So the CLI starts fast, and benchmarks/run.py (stdlib only) can import the helpers."""
    code = (
        "import sys, hayhooks.bench.server, hayhooks.bench.load, hayhooks.bench.report, hayhooks.bench.runner;"
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'pydantic', 'typer', 'haystack', 'httpx', 'fastapi',"
        " 'matplotlib', 'uvloop'}))"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(run.stdout.replace("'", '"')) == []
