"""Load generators: a closed loop of keep-alive connections POSTing one JSON body to one URL.

``wrk`` (one thread, a Lua script for the body) when it is installed, else the built-in
generator: one separate process (``python -m hayhooks.bench.load``) running asyncio streams over
HTTP/1.1 keep-alive. Either runs as a child process, so ``hayhooks.bench.cpu`` can tell its CPU time
from the server's.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

GENERATORS = ("auto", "wrk", "builtin")
REQUEST_TIMEOUT = 10.0  # seconds one request may take before it counts as an error

DEFAULT_RECONNECT = 1.0  # seconds a connection is kept, on average, before it is opened anew

WRK_SCRIPT = """\
-- written by `hayhooks bench`: POST the JSON body in HAYHOOKS_BENCH_BODY to the URL, and re-open
-- each of the HAYHOOKS_BENCH_CONNECTIONS connections about every HAYHOOKS_BENCH_RECONNECT seconds
-- (a request with "Connection: close" now and then; 0: never), as many clients over time would.
wrk.method = "POST"
wrk.body = os.getenv("HAYHOOKS_BENCH_BODY") or "{}"
wrk.headers["Content-Type"] = "application/json"
local keep = wrk.format()
wrk.headers["Connection"] = "close"
local close = wrk.format()
local connections = tonumber(os.getenv("HAYHOOKS_BENCH_CONNECTIONS") or "1")
local period = tonumber(os.getenv("HAYHOOKS_BENCH_RECONNECT") or "0")
local second, counted, every, sent = os.time(), 0, 0, 0

request = function()
  if period <= 0 then return keep end
  local now = os.time()
  if now ~= second then
    -- last second's rate sets how many requests go between two closes: connections / period per second
    every = math.max(1, math.floor(counted * period / connections))
    second, counted = now, 0
  end
  counted = counted + 1
  sent = sent + 1
  if every > 0 and sent % every == 0 then return close end
  return keep
end
"""


class LoadError(RuntimeError):
    """The load generator could not run."""


@dataclass
class LoadResult:
    """One measurement: completed requests, their rate and latency, and what failed."""

    requests: int  # answered requests, whatever their status
    rps: float
    p50_ms: float
    p99_ms: float
    non_2xx: int = 0
    socket_errors: int = 0  # connect, read, write errors and timeouts
    seconds: float = 0.0  # wall time of the measurement

    @property
    def errors(self) -> int:
        return self.non_2xx + self.socket_errors

    @property
    def ok(self) -> int:
        return max(0, self.requests - self.non_2xx)


def resolve_generator(choice: str) -> str:
    """``wrk`` or ``builtin`` for ``auto|wrk|builtin``; LoadError if wrk is asked for and missing."""
    if choice not in GENERATORS:
        raise LoadError(f"unknown load generator {choice!r}; choose from {', '.join(GENERATORS)}")
    if choice == "auto":
        return "wrk" if shutil.which("wrk") else "builtin"
    if choice == "wrk" and not shutil.which("wrk"):
        raise LoadError("wrk is not on PATH: install it (e.g. apt-get install wrk) or use --load-generator builtin")
    return choice


def run_load(
    generator: str,
    port: int,
    path: str,
    body: str,
    *,
    connections: int,
    duration: float,
    scratch: Path,
    reconnect: float = DEFAULT_RECONNECT,
) -> LoadResult:
    """Drive ``POST http://127.0.0.1:port/path`` with ``body`` for ``duration`` seconds.

    Each connection is re-opened about every ``reconnect`` seconds (0: never). Keep-alive
    connections opened in one burst tend to be accepted by whichever worker wakes first (its event
    loop accepts everything pending), so a fixed set of them measures that draw as much as the
    worker count; re-opening them now and then lets the kernel hand them to the idle workers.
    """
    options = dict(connections=connections, duration=duration, reconnect=reconnect)
    if generator == "wrk":
        return run_wrk(port, path, body, scratch=scratch, **options)
    return run_builtin(port, path, body, **options)


# --- wrk ------------------------------------------------------------------------------------------------

_UNITS_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def write_wrk_script(directory: Path) -> Path:
    """The Lua script that makes wrk POST the body in ``HAYHOOKS_BENCH_BODY``, written into ``directory``.

    ``HAYHOOKS_BENCH_CONNECTIONS`` and ``HAYHOOKS_BENCH_RECONNECT`` (seconds, 0 or unset: never)
    say how often to re-open connections; see ``run_load``.
    """
    script = directory / "post_json.lua"
    if not script.exists():
        script.write_text(WRK_SCRIPT)
    return script


def wrk_latency_ms(output: str, percentile: str) -> float:
    """A percentile of ``wrk --latency``'s distribution, in ms (NaN when absent)."""
    match = re.search(rf"^\s+{percentile}%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.M)
    return round(float(match.group(1)) * _UNITS_MS[match.group(2)], 3) if match else float("nan")


def parse_wrk(output: str) -> LoadResult:
    """The numbers of ``wrk --latency`` output."""
    rps = re.search(r"Requests/sec:\s+([\d.]+)", output)
    requests = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", output)
    if not rps or not requests:
        raise LoadError(f"unexpected wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    return LoadResult(
        requests=int(requests.group(1)),
        rps=float(rps.group(1)),
        p50_ms=wrk_latency_ms(output, "50"),
        p99_ms=wrk_latency_ms(output, "99"),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(map(int, socket_errors.groups())) if socket_errors else 0,
        seconds=float(requests.group(2)) * _UNITS_MS[requests.group(3)] / 1000,
    )


def run_wrk(
    port: int, path: str, body: str, *, connections: int, duration: float, scratch: Path, reconnect: float = 0.0
) -> LoadResult:
    """``wrk -t1``: one thread is plenty for a loopback server and leaves the cores to it."""
    script = write_wrk_script(scratch)
    seconds = max(1, round(duration))
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", f"--timeout={REQUEST_TIMEOUT:g}s"]
    command += ["-s", str(script), f"http://127.0.0.1:{port}{path}"]
    try:
        run = subprocess.run(
            command,
            env={
                **os.environ,
                "HAYHOOKS_BENCH_BODY": body,
                "HAYHOOKS_BENCH_CONNECTIONS": str(connections),
                "HAYHOOKS_BENCH_RECONNECT": str(reconnect),
            },
            capture_output=True,
            text=True,
            timeout=seconds + REQUEST_TIMEOUT + 30,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise LoadError(f"wrk failed: {error}") from error
    if run.returncode != 0:
        raise LoadError(f"wrk exited with {run.returncode}: {(run.stderr or run.stdout).strip()}")
    return parse_wrk(run.stdout)


# --- the built-in generator -----------------------------------------------------------------------------


def run_builtin(
    port: int, path: str, body: str, *, connections: int, duration: float, reconnect: float = 0.0
) -> LoadResult:
    """The built-in generator in a separate process, so its CPU time is its own and measurable."""
    spec = json.dumps(
        {
            "port": port,
            "path": path,
            "body": body,
            "connections": connections,
            "duration": duration,
            "reconnect": reconnect,
        }
    )
    try:
        run = subprocess.run(
            [sys.executable, "-m", "hayhooks.bench.load", spec],
            capture_output=True,
            text=True,
            timeout=duration + REQUEST_TIMEOUT + 60,
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise LoadError(f"the built-in load generator failed: {error}") from error
    if run.returncode != 0:
        raise LoadError(f"the built-in load generator exited with {run.returncode}: {run.stderr.strip()}")
    try:
        return LoadResult(**json.loads(run.stdout))
    except (ValueError, TypeError) as error:
        raise LoadError(f"unexpected output of the built-in load generator: {run.stdout[:300]!r}") from error


class _Stats:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.non_2xx = 0
        self.socket_errors = 0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """Read one HTTP/1.1 response; ``(status, whether the server keeps the connection)``."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length, chunked, keep_alive = 0, False, not lines[0].startswith(b"HTTP/1.0")
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        name = name.strip().lower()
        if name == b"content-length":
            length = int(value)
        elif name == b"transfer-encoding":
            chunked = b"chunked" in value.lower()
        elif name == b"connection":
            keep_alive = b"close" not in value.lower()
    if chunked:
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status, keep_alive


async def _connection(port: int, request: bytes, deadline: float, reconnect: float, stats: _Stats) -> None:
    """One client: send, wait for the answer, send again, until ``deadline``; re-open the connection
    about every ``reconnect`` seconds (0: only when it breaks)."""
    reader = writer = None
    reopen_at = math.inf
    while time.monotonic() < deadline:
        try:
            if writer is None:
                reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), REQUEST_TIMEOUT)
                if reconnect > 0:  # spread at random so the connections are not re-opened together
                    reopen_at = time.monotonic() + reconnect * random.uniform(0.5, 1.5)
            started = time.monotonic()
            writer.write(request)
            status, keep_alive = await asyncio.wait_for(_read_response(reader), REQUEST_TIMEOUT)
            finished = time.monotonic()
        except (OSError, TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
            stats.socket_errors += 1
            if writer is not None:
                writer.close()
            reader = writer = None
            await asyncio.sleep(0.01)  # a refused or reset connection must not spin
            continue
        if finished > deadline:
            break  # answered after the end: not part of the measurement
        stats.latencies.append(finished - started)
        if not 200 <= status < 300:
            stats.non_2xx += 1
        if not keep_alive or finished >= reopen_at:
            writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def closed_loop(port: int, path: str, body: str, connections: int, duration: float, reconnect: float) -> dict:
    """``connections`` clients in a closed loop for ``duration`` seconds; the LoadResult fields."""
    data = body.encode()
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data
    stats = _Stats()
    started = time.monotonic()
    deadline = started + duration
    tasks = [asyncio.create_task(_connection(port, request, deadline, reconnect, stats)) for _ in range(connections)]
    _, pending = await asyncio.wait(tasks, timeout=duration + 0.05)
    for task in pending:  # requests still in flight at the end are not counted
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    elapsed = min(time.monotonic(), deadline) - started
    latencies = sorted(stats.latencies)
    return {
        "requests": len(latencies),
        "rps": round(len(latencies) / elapsed, 2) if elapsed > 0 else 0.0,
        "p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "p99_ms": round(percentile(latencies, 99) * 1000, 3),
        "non_2xx": stats.non_2xx,
        "socket_errors": stats.socket_errors,
        "seconds": round(elapsed, 3),
    }


def percentile(ordered: list[float], pct: float) -> float:
    """Nearest-rank percentile of sorted values; NaN for none."""
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * pct // 100))  # ceil
    return ordered[int(rank) - 1]


def main(argv: list[str] | None = None) -> None:
    """``python -m hayhooks.bench.load SPEC``: run the closed loop SPEC (JSON) describes, print JSON."""
    spec = json.loads((argv or sys.argv[1:])[0])
    runner = asyncio.run
    try:
        import uvloop  # less CPU per request than the default loop; installed with uvicorn[standard]

        runner = uvloop.run
    except ImportError:
        pass
    result = runner(
        closed_loop(
            spec["port"], spec["path"], spec["body"], spec["connections"], spec["duration"], spec.get("reconnect", 0.0)
        )
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
