"""Tool calls over ``/mcp`` (MCP Streamable HTTP, stateless, one JSON answer each) and the same
``/NAME/run`` call, driven alike by wrk.

``hayhooks.bench.load``'s wrk script sends only ``Content-Type`` and counts any 2xx as served;
a tool call needs MCP's headers, and a failed tool still answers 200 (``isError``), so this script
sends the headers it is given and counts the answers that are 200 and carry the body of a success.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import subprocess
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import Options, log
from benchmarks.throughput import Throughput
from hayhooks.bench.load import REQUEST_TIMEOUT, LoadError, parse_wrk, wrk_latency_ms
from hayhooks.bench.server import HOST, ServerProcess

MCP_HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-06-18"}

WRK_SCRIPT = """\
-- written by benchmarks/mcp_calls.py: POST BENCH_BODY with the headers of BENCH_HEADERS ("Name: value"
-- lines) on keep-alive connections; count the answers that are 200 and whose body contains BENCH_WANTED.
wrk.method = "POST"
wrk.body = os.getenv("BENCH_BODY")
wrk.headers["Content-Type"] = "application/json"
for name, value in string.gmatch(os.getenv("BENCH_HEADERS") or "", "([^:\\n]+):%s*([^\\n]*)") do
  wrk.headers[name] = value
end
local wanted = os.getenv("BENCH_WANTED") or ""
local threads = {}
ok = 0

function setup(thread)
  table.insert(threads, thread)
end

function response(status, headers, body)
  if status == 200 and string.find(body, wanted, 1, true) then ok = ok + 1 end
end

function done(summary, latency, requests)
  local total = 0
  for _, thread in ipairs(threads) do total = total + thread:get("ok") end
  io.write(string.format("ok answers: %d\\n", total))
end
"""


@dataclass(frozen=True)
class Target:
    """One request wrk repeats, and the text in the body of an answer that succeeded."""

    path: str
    body: dict[str, Any]
    wanted: str
    headers: dict[str, str] = field(default_factory=dict)


def run_target(name: str, body: dict[str, Any]) -> Target:
    """``POST /NAME/run``: a success is ``{"result": ...}``."""
    return Target(f"/{name}/run", body, '"result":')


def mcp_target(name: str, arguments: dict[str, Any]) -> Target:
    """A ``tools/call`` of ``name`` on ``/mcp``, stateless: no ``initialize`` before it."""
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    return Target("/mcp", call, '"isError":false', MCP_HEADERS)


def _post(port: int, target: Target) -> tuple[int, str, Any]:
    """One request on a new connection: status, content type and decoded JSON (None if it is not)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=30)
    try:
        headers = {"Content-Type": "application/json", **target.headers}
        connection.request("POST", target.path, json.dumps(target.body), headers)
        response = connection.getresponse()
        raw = response.read()
        kind = response.getheader("content-type", "")
    finally:
        connection.close()
    try:
        return response.status, kind, json.loads(raw)
    except ValueError:
        return response.status, kind, None


def _tool_text(answer: Any) -> str | None:
    """The text of a successful tool result (``isError`` false, one text content), else None."""
    result = answer.get("result") if isinstance(answer, dict) else None
    if not isinstance(result, dict) or result.get("isError") is not False:
        return None
    content = result.get("content")
    first = content[0] if isinstance(content, list) and len(content) == 1 else None
    return first.get("text") if isinstance(first, dict) and first.get("type") == "text" else None


def _says(text: str, expected: Any) -> bool:
    """Whether a tool's ``text`` is ``expected``: a string as is, anything else as JSON."""
    if isinstance(expected, str):
        return text == expected
    try:
        return json.loads(text) == expected
    except ValueError:
        return False


def check_same_answer(port: int, run: Target, mcp: Target) -> None:
    """Fail unless the tool call answers 200 JSON, not ``isError``, with what ``/NAME/run`` gives as
    ``result``: else the timings would compare different work."""
    run_status, _, run_answer = _post(port, run)
    if run_status != 200 or not isinstance(run_answer, dict) or "result" not in run_answer:
        raise RuntimeError(f"POST {run.path} answered {run_status}: {str(run_answer)[:300]}")
    status, kind, answer = _post(port, mcp)
    text = _tool_text(answer)
    same = text is not None and _says(text, run_answer["result"])
    if status != 200 or not kind.startswith("application/json") or not same:
        raise RuntimeError(
            f"tools/call {mcp.body['params']['name']} on /mcp answered {status} ({kind or 'no content type'}):"
            f" {str(answer)[:300]}; {run.path} answered {json.dumps(run_answer)[:200]}"
        )


@dataclass
class Calls(Throughput):
    """One wrk measurement of a Target: Throughput's figures and how many answers succeeded."""

    ok: int  # answers that were 200 with the body of a success
    ok_rps: float
    p90_ms: float
    connections: int


def _wrk(port: int, target: Target, *, connections: int, duration: int, scratch: Path) -> str:
    """``wrk -t1`` on ``target``; its output, with the ``ok answers`` line of the script."""
    script = scratch / "mcp_calls.lua"
    if not script.exists():
        script.write_text(WRK_SCRIPT)
    command = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, duration)}s", "--latency"]
    command += [f"--timeout={REQUEST_TIMEOUT:g}s", "-s", str(script), f"http://{HOST}:{port}{target.path}"]
    env = {
        **os.environ,
        "BENCH_BODY": json.dumps(target.body),
        "BENCH_HEADERS": "".join(f"{name}: {value}\n" for name, value in target.headers.items()),
        "BENCH_WANTED": target.wanted,
    }
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=duration + REQUEST_TIMEOUT + 30)
    if run.returncode != 0:
        raise LoadError(f"wrk exited with {run.returncode}: {(run.stderr or run.stdout).strip()}")
    return run.stdout


def measure_calls(opts: Options, server: ServerProcess, target: Target, connections: int) -> Calls:
    """A closed loop of ``connections`` keep-alive connections on ``target`` after a warm-up, and the server's CPU."""
    load = dict(connections=connections, scratch=opts.scratch)
    if opts.warmup > 0:
        _wrk(server.port, target, duration=opts.warmup, **load)
    meter = server.cpu_meter()
    output = _wrk(server.port, target, duration=opts.duration, **load)
    cpu = meter.stop()
    result = parse_wrk(output)
    ok = re.search(r"^ok answers: (\d+)$", output, re.M)
    if ok is None:
        raise LoadError(f"the wrk script printed no count of ok answers:\n{output}")
    counts = {key: value for key, value in asdict(result).items() if key != "seconds"}
    return Calls(
        **counts,
        cpu_ms_per_request=round(1000 * cpu.server / max(1, result.requests), 4),
        other_load=round(cpu.others_share, 3),
        server_cores=round(cpu.cores(cpu.server), 3),
        ok=int(ok.group(1)),
        ok_rps=round(int(ok.group(1)) / result.seconds, 2) if result.seconds else 0.0,
        p90_ms=wrk_latency_ms(output, "90"),
        connections=connections,
    )


def rotate(opts: Options, measurements: dict[str, Callable[[], Calls]]) -> dict[str, list[Calls]]:
    """Each measurement ``opts.repeats`` times, rotating the order each round so drift spreads evenly."""
    results: dict[str, list[Calls]] = {label: [] for label in measurements}
    labels = list(measurements)
    for round_ in range(opts.repeats):
        shift = round_ % len(labels)
        for label in labels[shift:] + labels[:shift]:
            result = measurements[label]()
            results[label].append(result)
            log(
                f"  {label:<28} -c{result.connections:<3} {result.ok_rps:9.1f} ok/s  p50 {result.p50_ms:6.2f} ms"
                f"  p90 {result.p90_ms:6.2f} ms  failed {failed(result)}  other load {result.other_load:.0%}"
            )
    return results


def failed(result: Calls) -> int:
    """Answers that were not a success, and requests with no answer."""
    return result.requests - result.ok + result.socket_errors
