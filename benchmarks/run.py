#!/usr/bin/env python3
"""Benchmark hayhooks against a plain FastAPI app and the published Hayhooks 2.1.0, side by side.

Each scenario starts the servers it needs on free 127.0.0.1 ports, each in its own process group
(always stopped again), measures, and reports ratios taken in the same run, as TARGETS.md asks:

    overhead     POST /echo/run req/s: ours vs plain FastAPI vs published Hayhooks, 1 and 2 workers
    propagation  a file change in the pipelines directory until each of 4 workers answers with it
    redeploy     redeploys through POST /deploy_files while clients call the pipeline; failed calls
    scaling      cpu_heavy req/s with 2 workers vs 1, ours and published Hayhooks
    deploy       deploy a new pipeline through one of 4 workers, until every worker serves it
    chat         POST /v1/chat/completions req/s: ours vs plain FastAPI vs published Hayhooks, 1 and 2 workers
    streaming    time to the first chunk and chunks/s of a streamed /run, vs a plain StreamingResponse
    upload       MiB/s and peak extra memory of a 100 MiB upload to /run, vs a plain FastAPI UploadFile
    mcp          a tool call over /mcp vs the same /echo/run call; cpu_heavy tool calls/s over /mcp, 2 workers vs 1
    start        cold start (launch until every worker serves the examples) and total PSS, 4 workers vs 1
    churn        (only when named) 10 min soak, 4 workers, 8 clients while pipelines are redeployed, broken,
                 fixed, undeployed, re-added and edited; writes results/churn.md and churn.json
    reload-peak  (only when named) peak PSS of 4 workers reloading a 256 MiB pipeline, with
                 HAYHOOKS_MAX_WORKERS_LOADING unset and 1; writes results/reload-peak.md and .json

Usage (stdlib only: run it with any Python 3.11+; the servers run from their own venvs)::

    benchmarks/setup_reference.sh                                # once: wrk + benchmarks/.reference-venv
    python benchmarks/run.py                                     # every scenario
    python benchmarks/run.py overhead scaling --repeats 1        # a selection
    python benchmarks/run.py --reference-venv /tmp/refvenv       # an existing hayhooks==2.1.0 venv
    python benchmarks/run.py churn --churn-seconds 90            # a shorter churn soak

Prints Markdown and writes ``benchmarks/results/latest.md`` and ``benchmarks/results/latest.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(
    0, str(Path(__file__).resolve().parents[1])
)  # hayhooks.bench is standard-library only: any Python 3.11 can run this file

from benchmarks.churn import CHURN_SECONDS, ChurnOptions, churn_soak  # noqa: E402
from benchmarks.common import BENCH_DIR, REPO, Options, log, markdown_table  # noqa: E402
from benchmarks.contenders import ECHO_BODY, Contender, ours, plain, reference, running  # noqa: E402
from benchmarks.mcp_calls import (  # noqa: E402
    Calls,
    Target,
    check_same_answer,
    failed,
    mcp_target,
    measure_calls,
    rotate,
    run_target,
)
from benchmarks.probe import (  # noqa: E402
    PROBE,
    ask,
    http,
    probe_wrapper,
    replace_file,
    revisions_of,
    says,
    until_every_worker,
)
from benchmarks.reload_peak import reload_peak  # noqa: E402
from benchmarks.startup import startup  # noqa: E402
from benchmarks.streaming import StreamTiming, time_stream  # noqa: E402
from benchmarks.throughput import measure_throughput, other_load_note, typical  # noqa: E402
from benchmarks.uploads import UploadTiming, time_uploads  # noqa: E402
from hayhooks.bench.server import signals_end_the_run  # noqa: E402

REFERENCE_VERSION = "2.1.0"
SCENARIOS = ("overhead", "propagation", "redeploy", "scaling", "deploy", "chat", "streaming", "upload", "mcp", "start")
ON_REQUEST = ("churn", "reload-peak")  # run only when named; each writes results/NAME.md and NAME.json when run alone
ONLY_OURS = {"propagation", "mcp", "churn", "reload-peak"}  # scenarios that never start the published Hayhooks
CPU_BODY: dict[str, Any] = {}
KINDS = ("plain", "ours", "reference")  # the servers of the overhead scenario, in table order


# --- scenarios --------------------------------------------------------------------------------------


@dataclass
class Section:
    """One scenario's outcome: a row of the targets table, a details section and the raw data."""

    key: str
    summary: list[str]  # what, ours, published Hayhooks, target, met
    details: str
    data: dict[str, Any]


def _ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator else float("nan")


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _seconds(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _median_worst(times: list[float | None]) -> tuple[float | None, float | None]:
    """Median and worst of ``times``; ``(None, None)`` unless every one of them completed."""
    if not times or any(t is None for t in times):
        return None, None
    return statistics.median(times), max(times)


def _against_plain(
    opts: Options, name: str, path: str, body: Any, examples: tuple[str, ...]
) -> tuple[dict[int, dict[str, Any]], str]:
    """Throughput of ``path`` on ours, plain FastAPI and the published Hayhooks, 1 and 2 workers:
    the data by worker count, and its table."""
    rows, data, measured = [], {}, []
    for workers in (1, 2):
        log(f"{name}: {workers} worker(s)")
        servers = (plain(opts, workers), ours(opts, workers, examples), reference(opts, workers, examples))
        with running(*servers):
            by_label = measure_throughput(opts, servers, path, body)
        runs = {server.kind: by_label[server.label] for server in servers}
        measured += [result for results in runs.values() for result in results]
        rps = {kind: typical(results, "rps") for kind, results in runs.items()}
        cpu = {kind: typical(results, "cpu_ms_per_request") for kind, results in runs.items()}
        p99 = {kind: typical(results, "p99_ms") for kind, results in runs.items()}
        errors = {kind: sum(r.non_2xx + r.socket_errors for r in results) for kind, results in runs.items()}
        ratios = {f"{kind}/plain": _ratio(rps[kind], rps["plain"]) for kind in ("ours", "reference")}
        cpu_ratio = _ratio(cpu["plain"], cpu["ours"])  # > 1 would mean ours needs less CPU per request
        data[workers] = {
            "rps": rps,
            "ratios": ratios,
            "cpu_ms_per_request": cpu,
            "ours/plain by CPU": cpu_ratio,
            "p99_ms": p99,
            "errors": errors,
            "runs": {kind: [asdict(r) for r in results] for kind, results in runs.items()},
        }
        rows.append(
            [
                str(workers),
                " / ".join(f"{rps[k]:.0f}" for k in KINDS),
                f"{ratios['ours/plain']:.2f}×",
                f"{ratios['reference/plain']:.2f}×",
                " / ".join(f"{cpu[k]:.3f}" for k in KINDS),
                f"{cpu_ratio:.2f}×",
                " / ".join(f"{p99[k]:.1f}" for k in KINDS),
                " / ".join(str(errors[k]) for k in KINDS),
            ]
        )
    table = markdown_table(
        "workers | req/s plain / ours / reference | ours ÷ plain | reference ÷ plain"
        " | CPU ms per request plain / ours / reference | ours ÷ plain by CPU | p99 ms plain / ours / reference"
        " | errors plain / ours / reference",
        rows,
    )
    return data, table + "\n" + _FIGURES + other_load_note(measured)


_FIGURES = (
    'Figures are medians over the repeats; "by CPU" is plain\'s CPU time per request (master and workers)'
    " over ours: it moves less than req/s when the machine is shared. "
)


def _summary_against_plain(what: str, data: dict[int, dict[str, Any]], target: float) -> list[str]:
    ours_ratios = [data[w]["ratios"]["ours/plain"] for w in (1, 2)]
    cpu_ratios = " / ".join(f"{data[w]['ours/plain by CPU']:.2f}×" for w in (1, 2))
    return [
        what,
        " / ".join(f"{r:.2f}×" for r in ours_ratios) + f" (by CPU per request: {cpu_ratios})",
        " / ".join(f"{data[w]['ratios']['reference/plain']:.2f}×" for w in (1, 2)),
        f"≥ {target}×",
        _met(min(ours_ratios) >= target),
    ]


def scenario_overhead(opts: Options) -> Section:
    """``/echo/run`` throughput of ours, a plain FastAPI app and the published Hayhooks, 1 and 2 workers."""
    data, table = _against_plain(opts, "overhead", "/echo/run", ECHO_BODY, ("echo",))
    details = (
        f"{table}\n`POST /echo/run` with `{json.dumps(ECHO_BODY)}`. Plain is `benchmarks/plain_app.py`: the same"
        " pipeline and request/response models in a plain FastAPI `def` endpoint, served like ours (uvicorn for 1"
        " worker, gunicorn with uvicorn workers for 2) with no access log. The published Hayhooks runs as"
        " `hayhooks run --workers N`.\n"
    )
    summary = _summary_against_plain("per-request overhead (`/echo/run` ÷ plain FastAPI, 1 / 2 workers)", data, 0.8)
    return Section("overhead", summary, details, data)


CHAT_BODY = {"model": "echo", "messages": [{"role": "user", "content": "ping"}]}


def scenario_chat(opts: Options) -> Section:
    """Non-streaming ``/v1/chat/completions`` of the echo model vs a plain FastAPI endpoint answering the same JSON."""
    data, table = _against_plain(opts, "chat", "/v1/chat/completions", CHAT_BODY, ("echo",))
    details = (
        f"{table}\n`POST /v1/chat/completions` with `{json.dumps(CHAT_BODY)}`: the echo example's"
        " `run_chat_completion` (a sync method, run in the threadpool). Plain is the `/v1/chat/completions` `def`"
        " endpoint of `benchmarks/plain_app.py`, running the same pipeline and answering the same `chat.completion`"
        " JSON. The published Hayhooks answers through `fastapi-openai-compat`.\n"
    )
    summary = _summary_against_plain(
        "chat completions (`/v1/chat/completions` ÷ plain FastAPI, 1 / 2 workers)", data, 0.9
    )
    return Section("chat", summary, details, data)


def scenario_streaming(opts: Options) -> Section:
    """Time to the first chunk and chunks/s of ``/streamer/run``: ours, plain FastAPI StreamingResponse, published."""
    log("streaming: /streamer/run, 1 worker each")
    servers = (plain(opts, 1), ours(opts, 1, ("streamer",)), reference(opts, 1, ("streamer",)))
    timings: dict[str, StreamTiming] = {}
    with running(*servers):
        for server in servers:
            timing = time_stream(server.port, "/streamer/run", short=10, long=50_000, requests=200, repeats=3)
            timings[server.kind] = timing
            log(
                f"  {server.label:<24} first chunk {timing.first_chunk_ms:.2f} ms (p90 {timing.first_chunk_p90_ms:.2f})"
                f"  {timing.chunks_per_second:,.0f} chunks/s"
            )
    first = {kind: timing.first_chunk_ms for kind, timing in timings.items()}
    rate = {kind: timing.chunks_per_second for kind, timing in timings.items()}
    data = {kind: asdict(timing) for kind, timing in timings.items()}
    data["ours - plain first chunk ms"] = round(first["ours"] - first["plain"], 3)
    data["ours/plain chunks per second"] = _ratio(rate["ours"], rate["plain"])
    rows = [
        [kind, f"{first[kind]:.2f}", f"{timings[kind].first_chunk_p90_ms:.2f}", f"{rate[kind]:,.0f}"] for kind in KINDS
    ]
    details = markdown_table(
        "server | first chunk ms (median) | first chunk ms (p90) | chunks/s of a long stream", rows
    )
    details += (
        '\n`POST /streamer/run`: the streamer example\'s generator of short lines (`{"count": 10}` for the first'
        ' chunk, 200 requests, each on a fresh connection; `{"count": 50000}` for the rate, 3 streams). Plain is'
        " `benchmarks/plain_app.py` serving the same generator through FastAPI's `StreamingResponse`. One worker"
        " each, one request at a time.\n"
    )
    ok = data["ours - plain first chunk ms"] <= 2.0 and data["ours/plain chunks per second"] >= 0.8
    summary = [
        "streaming (`/streamer/run`: first chunk vs plain; chunks/s ÷ plain)",
        f"+{data['ours - plain first chunk ms']:.2f} ms; {data['ours/plain chunks per second']:.2f}×",
        f"+{first['reference'] - first['plain']:.2f} ms; {_ratio(rate['reference'], rate['plain']):.2f}×",
        "≤ +2 ms; ≥ 0.8×",
        _met(ok),
    ]
    return Section("streaming", summary, details, data)


UPLOAD_MIB = 100
UPLOAD_ROUNDS = 7


def scenario_upload(opts: Options) -> Section:
    """A 100 MiB file to ``/file_info/run``: ours, plain FastAPI ``UploadFile``, published; MiB/s and peak memory."""
    log(f"upload: {UPLOAD_MIB} MiB to /file_info/run, 1 worker each")
    servers = (plain(opts, 1), ours(opts, 1, ("file_info",)), reference(opts, 1, ("file_info",)))
    with running(*servers):
        targets = [(server.port, server.pid) for server in servers]
        measured = time_uploads(targets, "/file_info/run", size_mib=UPLOAD_MIB, rounds=UPLOAD_ROUNDS)
    timings: dict[str, UploadTiming] = {server.kind: timing for server, timing in zip(servers, measured, strict=True)}
    for server, timing in zip(servers, measured, strict=True):
        log(f"  {server.label:<24} {timing.mib_per_second:,.0f} MiB/s, peak +{timing.peak_extra_mib:.1f} MiB")
    rate = {kind: timing.mib_per_second for kind, timing in timings.items()}
    data: dict[str, Any] = {kind: asdict(timing) for kind, timing in timings.items()}
    data["ours/plain MiB per second"] = _ratio(rate["ours"], rate["plain"])
    rows = [
        [kind, f"{rate[kind]:,.0f}", f"{timings[kind].seconds:.3f}", f"{timings[kind].peak_extra_mib:.1f}"]
        for kind in KINDS
    ]
    details = markdown_table("server | MiB/s (median) | seconds per upload | peak extra memory MiB", rows)
    details += (
        f"\n`POST /file_info/run` with one {UPLOAD_MIB} MiB file (multipart, sent in 1 MiB writes, a fresh"
        f" connection each, {UPLOAD_ROUNDS} rounds in which the servers take turns): the file_info example, which"
        " describes each file without reading it whole."
        " Plain is `benchmarks/plain_app.py`'s `/file_info/run`, a `def` endpoint taking `list[UploadFile]` and"
        " running the same describe(). Peak extra memory: the server process's high-water mark of resident memory"
        " during an upload over its resident memory before it (the most of the rounds). One worker each.\n"
    )
    ours_peak = timings["ours"].peak_extra_mib
    ok = data["ours/plain MiB per second"] >= 0.8 and ours_peak <= 16
    summary = [
        f"upload ({UPLOAD_MIB} MiB to `/file_info/run`: MiB/s ÷ plain `UploadFile`; peak extra memory)",
        f"{data['ours/plain MiB per second']:.2f}×; +{ours_peak:.1f} MiB",
        f"{_ratio(rate['reference'], rate['plain']):.2f}×; +{timings['reference'].peak_extra_mib:.1f} MiB",
        "≥ 0.8×; ≤ 16 MiB",
        _met(ok),
    ]
    return Section("upload", summary, details, data)


MCP_SETTINGS = {"HAYHOOKS_MCP_JSON_RESPONSE": "true"}  # /mcp answers one JSON body, as /NAME/run does
NO_MCP = "no MCP on the main server"


def _echo_over_mcp(opts: Options) -> tuple[dict[str, Any], str]:
    """echo over ``/echo/run`` and ``/mcp`` on one 1-worker server: latency one call at a time, and req/s."""
    log("mcp: echo over /echo/run and over /mcp, 1 worker")
    targets = {"/echo/run": run_target("echo", ECHO_BODY), "/mcp": mcp_target("echo", ECHO_BODY)}
    server = ours(opts, 1, ("echo",), **MCP_SETTINGS)
    with running(server):
        check_same_answer(server.port, targets["/echo/run"], targets["/mcp"])
        latency, load = (_calls(opts, server, targets, connections) for connections in (1, opts.connections))
    median = {label: typical(results, "p50_ms") for label, results in latency.items()}
    p90 = {label: typical(results, "p90_ms") for label, results in latency.items()}
    rps = {label: typical(results, "ok_rps") for label, results in load.items()}
    cpu = {label: typical(results, "cpu_ms_per_request") for label, results in load.items()}
    not_ok = {label: sum(map(failed, latency[label] + load[label])) for label in targets}
    data: dict[str, Any] = {
        "median_ms": median,
        "p90_ms": p90,
        "ok_rps": rps,
        "cpu_ms_per_request": cpu,
        "failed": not_ok,
        "mcp - run median ms": round(median["/mcp"] - median["/echo/run"], 3),
        "mcp - run p90 ms": round(p90["/mcp"] - p90["/echo/run"], 3),
        "mcp/run ok_rps": _ratio(rps["/mcp"], rps["/echo/run"]),
        "runs": {"latency": _as_data(latency), "load": _as_data(load)},
    }
    rows = [
        [f"`{k}`", f"{median[k]:.2f} / {p90[k]:.2f}", f"{rps[k]:.0f}", f"{cpu[k]:.3f}", str(not_ok[k])] for k in targets
    ]
    rows.append(
        [
            "`/mcp` − `/echo/run`",
            f"{data['mcp - run median ms']:+.2f} / {data['mcp - run p90 ms']:+.2f}",
            f"{data['mcp/run ok_rps']:.2f}×",
            f"{cpu['/mcp'] - cpu['/echo/run']:+.3f}",
            "",
        ]
    )
    table = markdown_table(
        f"call | latency ms median / p90 (1 connection) | calls/s ({opts.connections} connections)"
        " | CPU ms per call | failed answers",
        rows,
    )
    return data, table + "\n" + other_load_note([r for results in (*latency.values(), *load.values()) for r in results])


def _cpu_heavy_over_mcp(opts: Options) -> tuple[dict[str, Any], str]:
    """cpu_heavy tool calls/s over ``/mcp`` with 1 and 2 workers."""
    log("mcp: cpu_heavy over /mcp, 1 vs 2 workers")
    run, mcp = run_target("cpu_heavy", CPU_BODY), mcp_target("cpu_heavy", CPU_BODY)
    servers = tuple(ours(opts, workers, ("cpu_heavy",), **MCP_SETTINGS) for workers in (1, 2))
    with running(*servers):
        for server in servers:
            check_same_answer(server.port, run, mcp)
        runs = rotate(opts, {srv.label: partial(measure_calls, opts, srv, mcp, opts.connections) for srv in servers})
    one, two = (server.label for server in servers)
    rps = {label: typical(results, "ok_rps") for label, results in runs.items()}
    cores = {label: typical(results, "server_cores") for label, results in runs.items()}
    not_ok = {label: sum(map(failed, results)) for label, results in runs.items()}
    data = {
        "ok_rps": rps,
        "cores_busy": cores,
        "failed": not_ok,
        "2w/1w": _ratio(rps[two], rps[one]),
        "runs": _as_data(runs),
    }
    row = [f"{rps[one]:.1f}", f"{rps[two]:.1f}", f"{data['2w/1w']:.2f}×", f"{cores[one]:.2f} / {cores[two]:.2f}"]
    table = markdown_table(
        "1 worker tool calls/s | 2 workers tool calls/s | 2 ÷ 1 | cores busy 1 / 2 workers | failed answers 1 / 2",
        [[*row, f"{not_ok[one]} / {not_ok[two]}"]],
    )
    return data, table + "\n" + other_load_note([result for results in runs.values() for result in results])


def _calls(opts: Options, server: Contender, targets: dict[str, Target], connections: int) -> dict[str, list[Calls]]:
    """Every target on ``server`` with ``connections``, the targets taking turns."""
    return rotate(opts, {label: partial(measure_calls, opts, server, t, connections) for label, t in targets.items()})


def _as_data(runs: dict[str, list[Calls]]) -> dict[str, list[dict[str, Any]]]:
    return {label: [asdict(result) for result in results] for label, results in runs.items()}


def scenario_mcp(opts: Options) -> Section:
    """A tool call over ``/mcp`` vs the same ``/echo/run`` call, and cpu_heavy tool calls/s with 2 workers vs 1."""
    echo, echo_table = _echo_over_mcp(opts)
    cpu, cpu_table = _cpu_heavy_over_mcp(opts)
    tool_call = json.dumps(mcp_target("echo", ECHO_BODY).body)
    details = (
        f"{echo_table}\nOne server of ours with 1 worker (`hayhooks run`, `HAYHOOKS_MCP_JSON_RESPONSE=true`)"
        f" serving the echo example takes `POST /echo/run` with `{json.dumps(ECHO_BODY)}` and `POST /mcp` with"
        f" `{tool_call}` (headers `Accept: application/json, text/event-stream` and `MCP-Protocol-Version:"
        " 2025-06-18`; stateless Streamable HTTP, no `initialize`), answered with one JSON body. Checked once"
        " before timing: the tool call answers 200 `application/json`, `isError` false, with the text that"
        " `/echo/run` gives as `result`. Latency: wrk -t1 -c1, one keep-alive connection with one call at a time,"
        f" wrk's median and p90; calls/s: wrk -t1 -c{opts.connections}. Only answers that are 200 with"
        ' `"isError":false` (`/mcp`) or `"result":` (`/echo/run`) in the body count as calls; failed answers'
        f" are the others and requests with no answer. Figures are medians over {opts.repeats} runs of"
        f" {opts.warmup} s warm-up + {opts.duration} s, the two calls taking turns; CPU ms per call is the"
        " server's CPU time over its calls at the higher load.\n\n"
        f"{cpu_table}\nTool calls of cpu_heavy over `/mcp` the same way, with `{json.dumps(CPU_BODY)}` as its"
        f" arguments, on ours with 1 worker (`hayhooks run`) and with 2 (gunicorn), wrk -t1 -c{opts.connections};"
        " each server's answer is checked first against its `/cpu_heavy/run`. The published Hayhooks serves MCP"
        " only from a separate single process (`hayhooks mcp run`), not from its main server: it has no figures"
        " here.\n"
    )
    difference = echo["mcp - run median ms"]
    summary = [
        "MCP tool calls (`/mcp` echo vs `/echo/run`, 1 worker: median latency; cpu_heavy tool calls/s, 2 workers ÷ 1)",
        f"{difference:+.2f} ms (p90 {echo['mcp - run p90 ms']:+.2f} ms); {cpu['2w/1w']:.2f}×",
        NO_MCP,
        "≤ +2 ms; ≥ 1.7×",
        _met(difference <= 2.0 and cpu["2w/1w"] >= 1.7),
    ]
    return Section("mcp", summary, details, {"echo": echo, "cpu_heavy": cpu})


def scenario_propagation(opts: Options) -> Section:
    """Rewrite the probe's wrapper in the directory of a 4-worker server; time until all 4 answer it."""
    log(f"propagation: {opts.changes} file changes, 4 workers")
    server = ours(opts, 4, examples=(), probe="change-0")
    rounds: list[dict[str, Any]] = []
    with running(server):
        pids = server.worker_pids()
        wrapper = server.pipelines / PROBE / "pipeline_wrapper.py"
        old = revisions_of(server, PROBE)
        for change in range(1, opts.changes + 1):
            marker = f"change-{change}"
            started = replace_file(wrapper, probe_wrapper(marker))
            spread = asyncio.run(until_every_worker(opts, server.port, PROBE, pids, says(marker), started))
            agreed = len(spread.revisions) == 1 and spread.revisions[0] not in old
            rounds.append({**asdict(spread), "revision_agreed": agreed})
            log(f"  change {change:2}: {_seconds(spread.seconds)} s (revisions {', '.join(spread.revisions)})")
            old = set(spread.revisions)
            time.sleep(0.2)
        restarted = sorted(set(pids) ^ set(server.worker_pids()))
    times = [r["seconds"] for r in rounds]
    median, worst = _median_worst(times)
    done = [t for t in times if t is not None]
    details = markdown_table(
        "changes | all 4 workers answered | median s | worst s | best s | one new revision everywhere"
        " | regressions | workers restarted",
        [
            [
                str(len(times)),
                f"{len(done)}/{len(times)}",
                _seconds(median),
                _seconds(worst),
                _seconds(min(done, default=None)),
                f"{sum(r['revision_agreed'] for r in rounds)}/{len(rounds)}",
                str(sum(r["regressions"] for r in rounds)),
                str(len(restarted)),
            ]
        ],
    )
    details += (
        "\nEach change renames a rewritten `pipeline_wrapper.py` into the probe's folder; the clock runs from the"
        f" rename until each of the 4 worker pids has answered `/{PROBE}/run` with the new code (its marker),"
        f" polled with {opts.poll_concurrency} fresh connections in flight. The answers' `x-hayhooks-revision`"
        " must be one new revision. The published Hayhooks has no watcher: a file change never reaches a running"
        " worker.\n"
    )
    summary = [
        "change → every worker (4 workers, file rewrite)",
        f"median {_seconds(median)} s, worst {_seconds(worst)} s",
        "never (no watcher)",
        "median ≤ 0.5 s, worst ≤ 1 s",
        _met(median is not None and median <= 0.5 and worst <= 1.0),
    ]
    data = {"median": median, "worst": worst, "workers_restarted": restarted, "rounds": rounds}
    return Section("propagation", summary, details, data)


async def redeploy_under_load(opts: Options, server: Contender) -> dict[str, Any]:
    """``opts.clients`` clients call the probe in a loop while it is redeployed ``opts.redeploys`` times."""
    statuses: Counter[int] = Counter()
    failures: Counter[str] = Counter()
    stop = asyncio.Event()

    async def client() -> None:
        while not stop.is_set():
            answer = await ask(server.port, PROBE)
            statuses[answer.status] += 1
            if answer.status != 200:
                failures[f"{answer.status} {answer.error[:80]}"] += 1

    clients = [asyncio.create_task(client()) for _ in range(opts.clients)]
    deploys = []
    try:
        await asyncio.sleep(opts.redeploy_pause)
        for number in range(1, opts.redeploys + 1):
            body = {
                "name": PROBE,
                "files": {"pipeline_wrapper.py": probe_wrapper(f"redeploy-{number}")},
                "overwrite": True,
            }
            started = time.monotonic()
            reply = await http(server.port, "POST", "/deploy_files", body, timeout=60)
            deploys.append({"status": reply.status, "seconds": round(time.monotonic() - started, 3)})
            await asyncio.sleep(opts.redeploy_pause)
    finally:
        stop.set()
        await asyncio.gather(*clients)
    last = says(f"redeploy-{opts.redeploys}")
    final = await until_every_worker(opts, server.port, PROBE, server.worker_pids(), last, time.monotonic())
    total = sum(statuses.values())
    return {
        "workers": server.workers,
        "requests": total,
        "failed": total - statuses[200],
        "statuses": dict(statuses),
        "failures": dict(failures),
        "deploys": deploys,
        "every_worker_on_last": final.seconds is not None,
    }


def scenario_redeploy(opts: Options) -> Section:
    """Failed calls while a pipeline is redeployed under load: ours with 4 workers, the reference with 1."""
    outcomes = {}
    for server in (ours(opts, 4, examples=(), probe="redeploy-0"), reference(opts, 1, examples=(), probe="redeploy-0")):
        log(f"redeploy: {server.label}, {opts.redeploys} redeploys, {opts.clients} clients")
        with running(server):
            outcome = outcomes[server.kind] = asyncio.run(redeploy_under_load(opts, server))
        log(f"  {outcome['failed']} of {outcome['requests']} failed {outcome['failures'] or ''}")
    rows = [
        [
            kind,
            str(o["workers"]),
            str(o["requests"]),
            str(o["failed"]),
            ", ".join(f"{status}: {count}" for status, count in sorted(o["statuses"].items())),
            ", ".join(str(d["status"]) for d in o["deploys"]),
            f"{statistics.median(d['seconds'] for d in o['deploys']):.3f}",
            "yes" if o["every_worker_on_last"] else "no",
        ]
        for kind, o in outcomes.items()
    ]
    details = markdown_table(
        "server | workers | calls | failed | statuses | deploy answers | median deploy s | every worker on the last",
        rows,
    )
    details += (
        f"\n{opts.clients} clients call `/{PROBE}/run` in a closed loop (a fresh connection per call) while"
        f" `POST /deploy_files` (overwrite) replaces it {opts.redeploys} times, {opts.redeploy_pause:g} s apart."
        " The published Hayhooks runs with 1 worker here: with several, a deploy reaches only the worker that"
        " received it, and the others keep serving the old code without failing (see the deploy scenario).\n"
    )
    ours_o, ref_o = outcomes["ours"], outcomes["reference"]
    summary = [
        "redeploys under load (failed calls)",
        f"{ours_o['failed']} of {ours_o['requests']} (4 workers)",
        f"{ref_o['failed']} of {ref_o['requests']} (1 worker)",
        "0 failed",
        _met(ours_o["failed"] == 0 and ours_o["every_worker_on_last"]),
    ]
    return Section("redeploy", summary, details, outcomes)


def scenario_scaling(opts: Options) -> Section:
    """cpu_heavy throughput with 1 and 2 workers, ours and the published Hayhooks."""
    log("scaling: cpu_heavy, 1 vs 2 workers")
    servers = tuple(make(opts, workers, examples=("cpu_heavy",)) for make in (ours, reference) for workers in (1, 2))
    with running(*servers):
        runs = measure_throughput(opts, servers, "/cpu_heavy/run", CPU_BODY)
    rps = {label: typical(results, "rps") for label, results in runs.items()}
    cores = {label: typical(results, "server_cores") for label, results in runs.items()}
    data: dict[str, Any] = {
        "rps": rps,
        "cores_busy": cores,
        "runs": {k: [asdict(r) for r in v] for k, v in runs.items()},
    }
    rows = []
    for kind in ("ours", "reference"):
        one, two = (server.label for server in servers if server.kind == kind)
        data[f"{kind} 2w/1w"] = _ratio(rps[two], rps[one])
        rows.append(
            [
                kind,
                f"{rps[one]:.1f}",
                f"{rps[two]:.1f}",
                f"{data[f'{kind} 2w/1w']:.2f}×",
                f"{cores[one]:.2f} / {cores[two]:.2f}",
            ]
        )
    details = markdown_table("server | 1 worker req/s | 2 workers req/s | 2 ÷ 1 | cores busy 1 / 2 workers", rows)
    details += (
        f"\n`POST /cpu_heavy/run` with `{json.dumps(CPU_BODY)}` (about 9 ms of GIL-holding Python per call)."
        " Cores busy is the CPU time of the server's processes over wall time: on a 2-core machine, wrk and"
        " anything else running take from what 2 workers can get. "
        + other_load_note([result for results in runs.values() for result in results])
    )
    summary = [
        "CPU-bound scaling (cpu_heavy, 2 workers ÷ 1)",
        f"{data['ours 2w/1w']:.2f}×",
        f"{data['reference 2w/1w']:.2f}×",
        "≥ 1.7×",
        _met(data["ours 2w/1w"] >= 1.7),
    ]
    return Section("scaling", summary, details, data)


async def deploy_and_spread(opts: Options, server: Contender, name: str, pids: list[int]) -> dict[str, Any]:
    """Deploy a new probe ``name`` through one connection, then poll until every worker serves it."""
    body = {"name": name, "files": {"pipeline_wrapper.py": probe_wrapper(name)}, "overwrite": False}
    started = time.monotonic()
    reply = await http(server.port, "POST", "/deploy_files", body, timeout=60)
    answered = round(time.monotonic() - started, 4)
    spread = await until_every_worker(opts, server.port, name, pids, says(name), started)
    serving = len(set(spread.reached) & set(pids))
    return {
        "name": name,
        "deploy_status": reply.status,
        "deploy_seconds": answered,
        "workers": len(pids),
        "workers_serving": serving,
        **asdict(spread),
    }


def scenario_deploy(opts: Options) -> Section:
    """Deploy through one of 4 workers; time until every worker serves it, or count the ones that do."""
    outcomes: dict[str, list[dict[str, Any]]] = {}
    for server in (ours(opts, 4), reference(opts, 4)):
        log(f"deploy: {server.label}, {opts.deploys} new pipelines")
        with running(server):
            pids = server.worker_pids()
            outcomes[server.kind] = runs = [
                asyncio.run(deploy_and_spread(opts, server, f"fresh_{number}", pids))
                for number in range(1, opts.deploys + 1)
            ]
        for run in runs:
            log(
                f"  {run['name']}: deploy {run['deploy_status']} in {run['deploy_seconds']:.3f} s,"
                f" served by {run['workers_serving']}/{run['workers']} workers, all by {_seconds(run['seconds'])} s"
            )
    rows = []
    for kind, runs in outcomes.items():
        median, worst = _median_worst([run["seconds"] for run in runs])
        rows.append(
            [
                kind,
                str(len(runs)),
                ", ".join(str(run["deploy_status"]) for run in runs),
                f"{statistics.median(run['deploy_seconds'] for run in runs):.3f}",
                ", ".join(f"{run['workers_serving']}/{run['workers']}" for run in runs),
                _seconds(median),
                _seconds(worst),
            ]
        )
    details = markdown_table(
        "server | deploys | answers | median deploy s | workers serving it | median s to all | worst s to all", rows
    )
    details += (
        "\nEach deploy posts a new pipeline to `/deploy_files` on one connection; the clock runs from sending it"
        f" until each of the 4 worker pids has answered `/NAME/run` (polled for at most {opts.settle_timeout:g} s"
        f" with {opts.poll_concurrency} fresh connections in flight).\n"
    )
    median, worst = _median_worst([run["seconds"] for run in outcomes["ours"]])
    serving = [run["workers_serving"] for run in outcomes["reference"]]
    reach = f"{min(serving)}" if min(serving) == max(serving) else f"{min(serving)}–{max(serving)}"
    summary = [
        "API deploy with 4 workers",
        f"every worker: median {_seconds(median)} s, worst {_seconds(worst)} s",
        f"reaches {reach} of 4 workers",
        "every worker, ≤ 0.5 s",
        _met(worst is not None and worst <= 0.5),
    ]
    return Section("deploy", summary, details, outcomes)


def scenario_start(opts: Options) -> Section:
    """Cold start and total PSS of 1 and 4 workers, ours (preload off and on) and the published Hayhooks."""
    details, data = startup(opts, rounds=max(opts.repeats, 3))
    ratios = data["ratios"]
    ours_4, ours_preload, published = (
        ratios[label] for label in ("ours, 4 workers", "ours, 4 workers, preload", "published, 4 workers")
    )
    summary = [
        "cold start; total PSS (4 workers ÷ 1)",
        f"{ours_preload['seconds']:.2f}×; {ours_preload['pss']:.2f}× with preload"
        f" ({ours_4['seconds']:.2f}×; {ours_4['pss']:.2f}× without)",
        f"{published['seconds']:.2f}×; {published['pss']:.2f}×",
        "≤ 1.3×; ≤ 1.5×",
        _met(ours_preload["seconds"] <= 1.3 and ours_preload["pss"] <= 1.5),
    ]
    return Section("start", summary, details, data)


def scenario_churn(opts: Options) -> Section:
    """The churn soak (``benchmarks/churn.py``): failed stable runs, p99 calm vs churn, PSS start and end."""
    return Section("churn", *churn_soak(opts))


def scenario_reload_peak(opts: Options) -> Section:
    """The reload peak (``benchmarks/reload_peak.py``): PSS of 4 workers reloading a heavy pipeline, capped or not."""
    return Section("reload-peak", *reload_peak(opts))


SCENARIO_FUNCTIONS: dict[str, Callable[[Options], Section]] = {
    "overhead": scenario_overhead,
    "propagation": scenario_propagation,
    "redeploy": scenario_redeploy,
    "scaling": scenario_scaling,
    "deploy": scenario_deploy,
    "chat": scenario_chat,
    "streaming": scenario_streaming,
    "upload": scenario_upload,
    "mcp": scenario_mcp,
    "start": scenario_start,
    "churn": scenario_churn,
    "reload-peak": scenario_reload_peak,
}


# --- report -----------------------------------------------------------------------------------------


def environment(opts: Options) -> dict[str, Any]:
    """What the numbers were measured on."""

    def git(*args: str) -> str:
        run = subprocess.run(["git", "-C", str(REPO), *args], capture_output=True, text=True)
        return run.stdout.strip()

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git("rev-parse", "--short", "HEAD") + ("+dirty" if git("status", "--porcelain", "hayhooks") else ""),
        "cpu": f"{os.cpu_count()} × {cpu}",
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "ours": _versions(opts.venv),
        "reference": _versions(opts.reference_venv),
        "wrk": f"-t1 -c{opts.connections}, {opts.warmup} s warm-up + {opts.duration} s, median of {opts.repeats}",
    }


def _versions(venv: Path) -> str:
    """``hayhooks X, haystack-ai Y`` as installed in ``venv``."""
    script = (
        "import importlib.metadata as m; print(*(f'{p} {m.version(p)}' for p in ('hayhooks', 'haystack-ai')), sep=', ')"
    )
    with contextlib.suppress(OSError):
        run = subprocess.run([str(venv / "bin" / "python"), "-I", "-c", script], capture_output=True, text=True)
        return run.stdout.strip() or "not installed"
    return "not installed"


def render(sections: list[Section], env: dict[str, Any], seconds: float) -> str:
    lines = [
        "# hayhooks benchmark",
        "",
        f"{env['date']}, commit {env['commit']}, {env['cpu']}, Python {env['python']}; load average at start"
        f" {' '.join(f'{x:.2f}' for x in env['load_average'])}. Ours: {env['ours']}; published: {env['reference']}."
        f" wrk: {env['wrk']}. Full run: {seconds:.0f} s.",
        "",
        markdown_table("what | ours | published Hayhooks | target | met", [s.summary for s in sections]),
    ]
    for section in sections:
        lines += [f"## {section.key}", "", section.details]
    return "\n".join(lines)


# --- main -------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> Options:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"any of {', '.join(SCENARIOS + ON_REQUEST)} (default: all but {', '.join(ON_REQUEST)})",
    )
    parser.add_argument("--venv", type=Path, default=REPO / ".venv", help="venv with our hayhooks (default: .venv)")
    parser.add_argument(
        "--reference-venv",
        type=Path,
        default=BENCH_DIR / ".reference-venv",
        help="venv with hayhooks==2.1.0; made by setup_reference.sh when missing",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per wrk measurement (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of wrk warm-up before each (default 2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (default 32)")
    parser.add_argument("--repeats", type=int, default=3, help="wrk measurements per server, median (default 3)")
    parser.add_argument("--changes", type=int, default=20, help="file changes in propagation (default 20)")
    parser.add_argument("--redeploys", type=int, default=10, help="redeploys under load (default 10)")
    parser.add_argument("--redeploy-pause", type=float, default=1.0, help="seconds between redeploys (default 1)")
    parser.add_argument("--clients", type=int, default=6, help="clients during redeploys (default 6)")
    parser.add_argument("--deploys", type=int, default=5, help="new pipelines deployed in deploy (default 5)")
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=5.0,
        help="seconds to wait for every worker to answer a change (default 5)",
    )
    parser.add_argument(
        "--poll-concurrency",
        type=int,
        default=8,
        help="fresh connections in flight while polling the workers (default 8)",
    )
    parser.add_argument(
        "--churn-seconds", type=float, default=CHURN_SECONDS, help=f"length of the churn soak (default {CHURN_SECONDS})"
    )
    parser.add_argument("--results", type=Path, default=BENCH_DIR / "results", help="where latest.md/.json go")
    args = parser.parse_args(argv)
    unknown = set(args.scenarios) - set(SCENARIOS + ON_REQUEST)
    if unknown:
        parser.error(
            f"unknown scenario(s) {', '.join(sorted(unknown))}; choose from {', '.join(SCENARIOS + ON_REQUEST)}"
        )
    return ChurnOptions(
        scenarios=tuple(args.scenarios) or SCENARIOS,
        venv=args.venv.absolute(),
        reference_venv=args.reference_venv.absolute(),
        duration=args.duration,
        warmup=args.warmup,
        connections=args.connections,
        repeats=max(1, args.repeats),
        changes=args.changes,
        redeploys=args.redeploys,
        redeploy_pause=args.redeploy_pause,
        clients=args.clients,
        deploys=args.deploys,
        settle_timeout=args.settle_timeout,
        poll_concurrency=args.poll_concurrency,
        results=args.results.absolute(),
        scratch=scratch_dir(),
        churn_seconds=args.churn_seconds,
    )


def scratch_dir() -> Path:
    """A temporary folder for pipelines directories and server logs, removed at exit."""
    scratch = Path(tempfile.mkdtemp(prefix="hayhooks-bench-"))
    atexit.register(shutil.rmtree, scratch, True)
    return scratch


def check_tools(opts: Options) -> None:
    """Fail early on a missing wrk or venv; make the reference venv when it is missing."""
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: run benchmarks/setup_reference.sh (or apt-get install wrk)")
    if not (opts.venv / "bin" / "hayhooks").exists():
        raise SystemExit(f"no hayhooks in {opts.venv}: pip install -e '.[dev]' there, or pass --venv")
    if set(opts.scenarios) - ONLY_OURS and not (opts.reference_venv / "bin" / "hayhooks").exists():
        log(f"making the reference venv {opts.reference_venv} (hayhooks=={REFERENCE_VERSION})")
        subprocess.run(["bash", str(BENCH_DIR / "setup_reference.sh"), str(opts.reference_venv)], check=True)


def main(argv: list[str] | None = None) -> int:
    opts = parse_args(argv)
    with signals_end_the_run():
        check_tools(opts)
        env = environment(opts)
        started = time.monotonic()
        sections = [SCENARIO_FUNCTIONS[name](opts) for name in opts.scenarios]
        seconds = time.monotonic() - started
    report = render(sections, env, seconds)
    print(report)
    opts.results.mkdir(parents=True, exist_ok=True)
    stem = opts.scenarios[0] if len(opts.scenarios) == 1 and opts.scenarios[0] in ON_REQUEST else "latest"
    (opts.results / f"{stem}.md").write_text(report)
    payload = {
        "environment": env,
        "seconds": round(seconds, 1),
        "options": {k: str(v) for k, v in asdict(opts).items()},
        "scenarios": {section.key: {"summary": section.summary, "data": section.data} for section in sections},
    }
    (opts.results / f"{stem}.json").write_text(json.dumps(payload, indent=2, default=str) + "\n")
    log(f"wrote {opts.results / f'{stem}.md'} and {stem}.json in {seconds:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
