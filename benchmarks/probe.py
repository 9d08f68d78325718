"""The probe pipeline, which says which code and which worker answered, and how the scenarios ask it:
one fresh connection per call, many in flight, until every worker answered as wanted."""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import Options
from hayhooks.bench.server import HOST, ServerProcess, call

PROBE = "probe"  # the pipeline that the propagation, redeploy and deploy scenarios change

# --- an asyncio HTTP/1.1 client: one fresh connection per request, many at once -----------------------


@dataclass
class Reply:
    """One HTTP answer; ``status == 0`` and ``error`` set when there was none."""

    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    error: str = ""

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError:
            return None


async def http(port: int, method: str, path: str, payload: Any = None, timeout: float = 10.0) -> Reply:
    """Send one request on a new connection (``Connection: close``) and read the whole answer.

    A fresh connection per request lets the kernel hand each one to any worker, as a new client would.
    """
    data = b"" if payload is None else json.dumps(payload).encode()
    head = (
        f"{method} {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
    ).encode()
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, port), timeout)
    except (OSError, TimeoutError) as error:
        return Reply(0, error=f"connect: {type(error).__name__} {error}".strip())
    try:
        writer.write(head + data)
        raw = await asyncio.wait_for(reader.read(), timeout)
    except (OSError, TimeoutError) as error:
        return Reply(0, error=f"read: {type(error).__name__} {error}".strip())
    finally:
        writer.close()
    return _parse_reply(raw)


def _parse_reply(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[1].isdigit():
        return Reply(0, error=f"no HTTP answer: {raw[:60]!r}")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(int(parts[1]), headers, body)


# --- the probe pipeline: says which code and which worker answered ----------------------------------

_PROBE_TEMPLATE = '''"""probe: answers with the marker of this revision of its code and the pid of the worker."""

import os

from haystack import Pipeline, component

from hayhooks import BasePipelineWrapper

MARKER = "@MARKER@"


@component
class Probe:
    @component.output_types(marker=str, pid=int)
    def run(self, text: str) -> dict:
        return {"marker": MARKER, "pid": os.getpid()}


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = Pipeline()
        self.pipeline.add_component("probe", Probe())

    def run_api(self, text: str = "") -> dict:
        """
        Say which revision of the code and which worker process answered.

        Args:
            text: Ignored.
        """
        return self.pipeline.run({"probe": {"text": text}})["probe"]
'''


def probe_wrapper(marker: str) -> str:
    """The probe's ``pipeline_wrapper.py``, answering ``marker``."""
    return _PROBE_TEMPLATE.replace("@MARKER@", marker)


def replace_file(path: Path, text: str) -> float:
    """Write ``text`` to a hidden temporary file beside ``path``, rename it over ``path``; return when."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    renamed = time.monotonic()
    os.replace(temporary, path)
    return renamed


@dataclass
class Answer:
    """What one call of a probe pipeline said."""

    status: int
    marker: str | None = None
    pid: int | None = None
    revision: str | None = None
    error: str = ""


async def ask(port: int, name: str) -> Answer:
    """Call ``/name/run`` of a probe pipeline on a fresh connection."""
    reply = await http(port, "POST", f"/{name}/run", {"text": "x"})
    body = reply.json() if reply.status == 200 else None
    result = body.get("result") if isinstance(body, dict) else None
    if not isinstance(result, dict):
        return Answer(reply.status, error=reply.error or reply.body[:120].decode(errors="replace"))
    return Answer(reply.status, result.get("marker"), result.get("pid"), reply.headers.get("x-hayhooks-revision"))


@dataclass
class Spread:
    """How a change reached the workers, seen from their answers."""

    seconds: float | None  # until the last expected worker first answered as wanted; None: not all did
    reached: dict[int, float]  # pid -> seconds until its first wanted answer
    revisions: list[str]  # x-hayhooks-revision headers of the wanted answers
    statuses: dict[int, int]  # HTTP status -> count over every poll
    regressions: int  # unwanted answers to calls sent after the same worker had answered as wanted


async def until_every_worker(
    opts: Options, port: int, name: str, pids: list[int], wanted: Callable[[Answer], bool], started: float
) -> Spread:
    """Poll ``/name/run`` with ``opts.poll_concurrency`` fresh connections in flight until every pid
    in ``pids`` answered as ``wanted``, or ``opts.settle_timeout`` seconds after ``started``."""
    expected, reached, revisions, statuses = set(pids), {}, set(), Counter()
    regressions = 0
    deadline = started + opts.settle_timeout

    async def poll() -> None:
        nonlocal regressions
        while time.monotonic() < deadline and not expected <= reached.keys():
            sent = time.monotonic() - started
            answer = await ask(port, name)
            statuses[answer.status] += 1
            if answer.pid is None:
                continue
            if wanted(answer):
                reached.setdefault(answer.pid, time.monotonic() - started)
                revisions.add(answer.revision or "")
            elif sent > reached.get(answer.pid, float("inf")):  # not an in-flight call finishing on its revision
                regressions += 1

    await asyncio.gather(*(poll() for _ in range(opts.poll_concurrency)))
    done = expected <= reached.keys()
    return Spread(
        seconds=round(max(reached[pid] for pid in expected), 4) if done else None,
        reached={pid: round(seconds, 4) for pid, seconds in reached.items()},
        revisions=sorted(revisions),
        statuses=dict(statuses),
        regressions=regressions,
    )


def revisions_of(server: ServerProcess, name: str) -> set[str]:
    """The revisions of ``name`` that our workers report in the cluster view."""
    status, answer = call(server.port, "GET", "/status", timeout=5)
    workers = answer.get("cluster", {}).get("workers", []) if status == 200 and isinstance(answer, dict) else []
    return {worker.get("pipelines", {}).get(name, {}).get("revision") for worker in workers}


def says(marker: str) -> Callable[[Answer], bool]:
    """Whether an answer came from the probe's code with ``marker``."""
    return lambda answer: answer.marker == marker
