"""``hayhooks bench``'s pieces, in-process: the PSS/USS reader on this very process, wrk parsing,
percentiles, the recommendation, choosing a pipeline and a body, and --plot without matplotlib."""

import math
import os
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hayhooks.bench.load import LoadResult, parse_wrk, percentile
from hayhooks.bench.report import Row, recommend, render_recommendation
from hayhooks.bench.runner import choose_pipeline, sample_body
from hayhooks.bench.server import MIB, Memory, TreeMemory, parse_smaps_rollup, read_memory
from tests.helpers.support import REPO


def test_plot_without_matplotlib_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from hayhooks.cli.main import app

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "matplotlib" else real(name, *a))
    result = CliRunner().invoke(app, ["bench", "--plot", "x.png"])
    assert result.exit_code == 1
    assert "pip install 'hayhooks[bench]'" in result.output


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
