"""The churn soak: clients run the stable pipelines of a 4-worker server while a driver churns the rest.

Our server only (the published Hayhooks has no watcher, and a deploy reaches one of its workers).
gunicorn with 4 workers serves a temporary pipelines directory holding three stable pipelines
(``echo`` and ``greeter``, wrappers from the examples, and ``prompt``, a YAML PromptBuilder) and two
churned ones (``churned``, deployed through the API, and ``edited``, edited in the directory), each
of those with a 2 MiB module-level object so a revision that is never freed shows in the memory.

8 clients call the stable pipelines in a closed loop (a fresh connection per call) for the whole
run: a calm phase, the churn phase, and a calm phase again. Meanwhile the churn driver cycles
through API deploys, broken deploys (422, nothing changes), fixes, undeploys and re-adds of
``churned``; direct rewrites of ``edited`` (hidden name + rename, in place, broken, fixed); a YAML
file added and removed in the directory; and one redeploy of a stable pipeline per cycle with the
same behaviour (a new revision, or byte-identical files). Every step is checked: its answer, every
worker settling on what it must serve (the cluster view of ``/status``), and runs answering it.

The report: failed runs of the stable pipelines (must be 0), their p50/p99 calm vs during the
churn, the server's total PSS (master and every descendant) at the start and the end of the churn,
and the churn steps by kind with their unexpected outcomes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import resource
import statistics
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.common import EXAMPLES, Options, log, markdown_table
from benchmarks.contenders import Contender, ours, running
from benchmarks.probe import Reply, ask, http, probe_wrapper, replace_file
from hayhooks.bench.cpu import machine_busy_seconds
from hayhooks.bench.load import percentile
from hayhooks.bench.server import MIB, call, cmdline, read_memory

CHURN_SECONDS = 600  # the whole soak: calm before + churn + calm after
WORKERS = 4
CLIENTS = 8
WARMUP = 5.0  # seconds of client load before anything is recorded
CALM_SHARE = 0.1  # of the soak, half before the churn and half after it
MIN_CALM = 10.0
STEP_PAUSE = 0.5  # seconds between two churn steps
SETTLE_TIMEOUT = 30.0  # seconds every worker gets to serve what a step asks
VERIFY_CALLS = 8  # runs of a churned pipeline after each step, on fresh connections
RUN_TIMEOUT = 30.0  # a stable run taking longer counts as failed
BALLAST_MIB = 2
MEMORY_GUARD_MIB = 8192  # total PSS past which the churn stops early: the machine is shared
FLAT_PSS = 0.10  # PSS growth over the churn counted as flat (TARGETS.md: within 10 %)
P99_TARGET = 2.0  # p99 during the churn within 2x of calm

CHURNED = "churned"  # deployed, broken, fixed, undeployed and re-added through the API
EDITED = "edited"  # rewritten in the directory
EXTRA = "extra"  # a YAML file added to and removed from the directory
YAML_EXAMPLE = EXAMPLES / "chat_prompt.yml"
STABLE_BODIES: dict[str, dict[str, Any]] = {
    "echo": {"text": "ping"},
    "greeter": {"name": "ada  lovelace"},
    "prompt": {"query": "Does it stay up?", "topic": "churn"},
}
STABLE = tuple(STABLE_BODIES)
# the steps after which every worker loaded a new revision of a churned wrapper (and dropped the one it served)
BALLAST_RELOADS = ("api redeploy", "api fix", "api re-add", "file rename", "file in place", "file fix")


@dataclass(frozen=True)
class ChurnOptions(Options):
    """Options with the soak's length (``--churn-seconds``)."""

    churn_seconds: float = CHURN_SECONDS


# --- the pipelines --------------------------------------------------------------------------------

BALLAST = f"""

# a large module-level object: a revision that is never freed shows in PSS
BALLAST = bytearray(range(256)) * ({BALLAST_MIB} * 4096)
"""


def churned_source(marker: str) -> str:
    """A probe wrapper (answers its marker and the worker's pid) holding a BALLAST_MIB object."""
    return probe_wrapper(marker) + BALLAST


def _setup_raises() -> str:
    source = churned_source("broken")
    broken = source.replace(
        "    def setup(self) -> None:\n",
        "    def setup(self) -> None:\n        raise RuntimeError('churn: setup fails')\n",
    )
    assert broken != source, "the probe template changed: adapt _setup_raises"
    return broken


BROKEN_SOURCES = (
    ("syntax error", churned_source("broken") + "\ndef run_api(:\n"),
    ("import error", "import hayhooks_churn_no_such_module\n" + churned_source("broken")),
    ("setup raises", _setup_raises()),
    (
        "no run method",
        "from hayhooks import BasePipelineWrapper\n\n\nclass PipelineWrapper(BasePipelineWrapper):\n"
        "    def setup(self) -> None:\n        self.ballast = bytearray(1024)\n",
    ),
)


def populate(root: Path) -> None:
    """Add the YAML stable pipeline and the two churned wrappers to a directory holding echo and greeter."""
    replace_file(root / "prompt.yml", YAML_EXAMPLE.read_text())
    replace_file(root / CHURNED / "pipeline_wrapper.py", churned_source(f"{CHURNED}-0"))
    replace_file(root / EDITED / "pipeline_wrapper.py", churned_source(f"{EDITED}-0"))


# --- what the clients saw --------------------------------------------------------------------------


@dataclass
class Runs:
    """Every stable run: latency by phase, failures, and what answered."""

    latencies: dict[str, list[float]] = field(default_factory=dict)  # phase -> ms
    by_pipeline: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # phase -> name -> ms
    timeline: list[tuple[float, float, bool]] = field(default_factory=list)  # (s since start, ms, ok)
    failures: list[dict[str, Any]] = field(default_factory=list)
    revisions: dict[str, Counter[str]] = field(default_factory=dict)  # pipeline -> revision -> runs
    workers: Counter[str] = field(default_factory=Counter)  # x-hayhooks-worker -> runs

    def failed(self, phase: str | None = None) -> int:
        return sum(1 for failure in self.failures if phase is None or failure["phase"] == phase)


@dataclass
class Clock:
    """The current phase, and the CPU and wall time at the start of each phase."""

    server: Contender
    started: float = field(default_factory=time.monotonic)
    phase: str = "warm-up"
    marks: list[dict[str, Any]] = field(default_factory=list)

    def now(self) -> float:
        return time.monotonic() - self.started

    def enter(self, phase: str) -> None:
        own = resource.getrusage(resource.RUSAGE_SELF)
        self.marks.append(
            {
                "phase": phase,
                "at": self.now(),
                "server_cpu": self.server.cpu_seconds(),
                "own_cpu": own.ru_utime + own.ru_stime,
                "machine_cpu": machine_busy_seconds(),
                "load_average": os.getloadavg(),
            }
        )
        self.phase = phase
        log(f"churn: {phase} at {self.now():.0f} s")

    def phases(self) -> list[dict[str, Any]]:
        """Each recorded phase: its seconds and who kept the cores busy meanwhile."""
        spans = []
        for start, end in zip(self.marks, self.marks[1:], strict=False):
            wall = end["at"] - start["at"]
            server, own = end["server_cpu"] - start["server_cpu"], end["own_cpu"] - start["own_cpu"]
            others = max(0.0, end["machine_cpu"] - start["machine_cpu"] - server - own)
            spans.append(
                {
                    "phase": start["phase"],
                    "seconds": round(wall, 1),
                    "server_cores": round(server / wall, 2) if wall else 0.0,
                    "clients_and_driver_cores": round(own / wall, 2) if wall else 0.0,
                    "other_cores": round(others / wall, 2) if wall else 0.0,
                    "load_average_at_start": [round(x, 2) for x in start["load_average"]],
                }
            )
        return spans


async def client(index: int, port: int, clock: Clock, runs: Runs, expected: dict[str, Any], stop: asyncio.Event):
    """One client: run the stable pipelines in turn, one call at a time, on a fresh connection each."""
    count = 0
    while not stop.is_set():
        name = STABLE[(index + count) % len(STABLE)]
        count += 1
        phase = clock.phase
        started = time.perf_counter()
        reply = await http(port, "POST", f"/{name}/run", STABLE_BODIES[name], timeout=RUN_TIMEOUT)
        ms = (time.perf_counter() - started) * 1000
        answer = reply.json() if reply.status == 200 else None
        ok = isinstance(answer, dict) and answer.get("result") == expected[name]
        if phase == "warm-up":
            continue
        runs.latencies.setdefault(phase, []).append(ms)
        runs.by_pipeline.setdefault(phase, {}).setdefault(name, []).append(ms)
        runs.timeline.append((clock.now(), ms, ok))
        runs.revisions.setdefault(name, Counter())[reply.headers.get("x-hayhooks-revision", "?")] += 1
        runs.workers[reply.headers.get("x-hayhooks-worker", "?")] += 1
        if not ok:
            text = reply.error or reply.body[:200].decode(errors="replace")
            runs.failures.append(
                {"at": round(clock.now(), 3), "phase": phase, "pipeline": name, "status": reply.status, "error": text}
            )


# --- the churn driver ------------------------------------------------------------------------------


@dataclass
class Step:
    """One churn step and how it went."""

    kind: str
    cycle: int
    at: float  # seconds since the soak started
    seconds: float  # from the request (or the file write) until every worker settled and runs confirmed it
    status: int | None  # the HTTP answer, for API steps
    problems: list[str]
    note: str = ""

    @property
    def ok(self) -> bool:
        return not self.problems


Entries = list[dict[str, Any] | None]  # one worker's cluster entry for a pipeline, per live worker


def new_and_ready(old: set[str]) -> Callable[[Entries], bool]:
    """Every worker serves one revision, a new one, and is not loading or failing."""

    def want(entries: Entries) -> bool:
        revisions = {entry.get("revision") for entry in entries if entry}
        ready = all(entry and entry.get("state") == "ready" for entry in entries)
        return ready and len(revisions) == 1 and not revisions & old

    return want


def kept(old: set[str]) -> Callable[[Entries], bool]:
    """Every worker failed the new revision and still serves the old one."""
    return lambda entries: all(
        entry and entry.get("state") == "failed" and entry.get("revision") in old for entry in entries
    )


def gone(entries: Entries) -> bool:
    return all(entry is None for entry in entries)


class Driver:
    """Cycles through the churn steps until its deadline, always finishing a cycle: each cycle ends
    with the directory as it began (churned and edited serving, no extra)."""

    def __init__(self, server: Contender, clock: Clock, samples: list[dict[str, Any]]) -> None:
        self.samples = samples
        self.stopped_early = ""
        self.port = server.port
        self.root = server.pipelines
        assert self.root is not None
        self.clock = clock
        self.steps: list[Step] = []
        self.cycle = 0
        self.serial = 0  # makes every marker new
        self.marker = {CHURNED: f"{CHURNED}-0", EDITED: f"{EDITED}-0"}
        self.stable_redeploys = 0
        self.stable_suffix: dict[str, str] = {"echo": "", "greeter": ""}
        self.prompt_description: str | None = None
        self.cycle_done: asyncio.Event = asyncio.Event()

    def _next(self, name: str) -> str:
        self.serial += 1
        return f"{name}-{self.serial}"

    async def run(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            if self.samples and self.samples[-1]["pss_mib"] > MEMORY_GUARD_MIB:
                self.stopped_early = (
                    f"stopped after {self.clock.now():.0f} s: total PSS {self.samples[-1]['pss_mib']:.0f} MiB passed"
                    f" the guard of {MEMORY_GUARD_MIB} MiB"
                )
                log(f"churn: {self.stopped_early}")
                break
            self.cycle += 1
            for step in self.cycle_steps():
                await self._record(step)
                await asyncio.sleep(STEP_PAUSE)
            self.cycle_done.set()
            if self.cycle % 5 == 0:
                failed = sum(not step.ok for step in self.steps)
                log(f"churn: cycle {self.cycle} done at {self.clock.now():.0f} s, {failed} unexpected step outcomes")

    def cycle_steps(self) -> list[Callable[[], Awaitable[Step]]]:
        broken = BROKEN_SOURCES[self.cycle % len(BROKEN_SOURCES)]
        return [
            self.api_redeploy,
            lambda: self.api_broken(broken),
            lambda: self.api_deploy("api fix", overwrite=True),
            self.api_undeploy,
            lambda: self.api_deploy("api re-add", overwrite=False),
            lambda: self.file_write("file rename", in_place=False),
            lambda: self.file_write("file in place", in_place=True),
            lambda: self.file_broken(broken),
            lambda: self.file_write("file fix", in_place=True),
            self.yaml_add,
            self.yaml_remove,
            self.stable_redeploy,
        ]

    async def _record(self, step: Callable[[], Awaitable[Step]]) -> None:
        try:
            result = await step()
        except Exception as error:  # a bug of this driver must show in the report, not end the soak
            result = Step("driver error", self.cycle, self.clock.now(), 0.0, None, [f"{type(error).__name__}: {error}"])
        self.steps.append(result)
        if not result.ok:
            log(f"  unexpected: cycle {result.cycle} {result.kind}: {'; '.join(result.problems)[:300]}")

    def _step(self, kind: str, started: float, status: int | None, problems: list[str], note: str = "") -> Step:
        at = started - self.clock.started
        return Step(kind, self.cycle, round(at, 3), round(time.monotonic() - started, 4), status, problems, note)

    # --- what the workers serve ---

    async def cluster(self) -> list[dict[str, Any]]:
        reply = await http(self.port, "GET", "/status", timeout=10)
        answer = reply.json()
        workers = answer.get("cluster", {}).get("workers") if isinstance(answer, dict) else None
        return workers if isinstance(workers, list) else []

    async def revisions(self, name: str) -> set[str]:
        return {
            entry["revision"]
            for worker in await self.cluster()
            if (entry := worker.get("pipelines", {}).get(name)) and entry.get("revision")
        }

    async def settle(self, name: str, want: Callable[[Entries], bool]) -> list[str]:
        """Poll the cluster view until every one of the WORKERS workers is ready and ``want`` holds
        for their entries of ``name``; a problem if it does not within SETTLE_TIMEOUT."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while True:
            workers = await self.cluster()
            entries = [worker.get("pipelines", {}).get(name) for worker in workers]
            if len(workers) == WORKERS and all(worker.get("ready") for worker in workers) and want(entries):
                return []
            if time.monotonic() > deadline:
                seen = [
                    (worker.get("pid"), worker.get("ready"), entry)
                    for worker, entry in zip(workers, entries, strict=True)
                ]
                return [f"workers did not settle within {SETTLE_TIMEOUT:g} s: {seen}"[:600]]
            await asyncio.sleep(0.05)

    async def verify(self, name: str, marker: str | None) -> list[str]:
        """VERIFY_CALLS runs of a churned pipeline at once: each answers ``marker`` (None: 404)."""
        answers = await asyncio.gather(*(ask(self.port, name) for _ in range(VERIFY_CALLS)))
        wanted = (lambda a: a.status == 404) if marker is None else (lambda a: a.status == 200 and a.marker == marker)
        wrong = Counter(f"{a.status} {a.marker or a.error[:100]}" for a in answers if not wanted(a))
        expected = "404" if marker is None else f"200 {marker}"
        return [f"runs of {name} answered {dict(wrong)} (expected {expected})"] if wrong else []

    # --- API steps on CHURNED ---

    async def _deploy_files(self, name: str, files: dict[str, str], overwrite: bool) -> tuple[int, dict, list[str]]:
        body = {"name": name, "files": files, "overwrite": overwrite, "wait": True, "wait_timeout": SETTLE_TIMEOUT}
        reply = await http(self.port, "POST", "/deploy_files", body, timeout=SETTLE_TIMEOUT + 60)
        answer, problems = _waited(reply)
        return reply.status, answer, problems

    async def api_deploy(self, kind: str, *, overwrite: bool) -> Step:
        marker = self._next(CHURNED)
        started = time.monotonic()
        status, _, problems = await self._deploy_files(
            CHURNED, {"pipeline_wrapper.py": churned_source(marker)}, overwrite
        )
        if status == 200:
            self.marker[CHURNED] = marker
        problems += await self.verify(CHURNED, self.marker[CHURNED])
        return self._step(kind, started, status, problems)

    async def api_redeploy(self) -> Step:
        return await self.api_deploy("api redeploy", overwrite=True)

    async def api_broken(self, broken: tuple[str, str]) -> Step:
        what, source = broken
        before = await self.revisions(CHURNED)
        started = time.monotonic()
        body = {"name": CHURNED, "files": {"pipeline_wrapper.py": source}, "overwrite": True, "wait": True}
        reply = await http(self.port, "POST", "/deploy_files", body, timeout=SETTLE_TIMEOUT + 60)
        problems = []
        if reply.status != 422:
            problems.append(f"answered {reply.status} (expected 422): {reply.body[:200].decode(errors='replace')}")
        problems += await self.verify(CHURNED, self.marker[CHURNED])
        after = await self.revisions(CHURNED)
        if after != before:
            problems.append(f"revisions changed from {sorted(before)} to {sorted(after)}")
        return self._step("api broken deploy", started, reply.status, problems, what)

    async def api_undeploy(self) -> Step:
        started = time.monotonic()
        path = f"/undeploy/{CHURNED}?wait=true&wait_timeout={SETTLE_TIMEOUT:g}"
        reply = await http(self.port, "POST", path, timeout=SETTLE_TIMEOUT + 60)
        _, problems = _waited(reply)
        problems += await self.verify(CHURNED, None)
        return self._step("api undeploy", started, reply.status, problems)

    # --- directory steps on EDITED and EXTRA ---

    async def file_write(self, kind: str, *, in_place: bool) -> Step:
        """Rewrite edited's wrapper with a new marker: a hidden file renamed over it, or in place."""
        marker = self._next(EDITED)
        path = self.root / EDITED / "pipeline_wrapper.py"
        old = await self.revisions(EDITED)
        started = time.monotonic()
        if in_place:
            with path.open("w") as file:  # truncate, then write: the watcher may see it half-written
                file.write(churned_source(marker))
        else:
            replace_file(path, churned_source(marker))
        problems = await self.settle(EDITED, new_and_ready(old))
        if not problems:
            self.marker[EDITED] = marker
        problems += await self.verify(EDITED, marker)
        return self._step(kind, started, None, problems)

    async def file_broken(self, broken: tuple[str, str]) -> Step:
        what, source = broken
        path = self.root / EDITED / "pipeline_wrapper.py"
        old = await self.revisions(EDITED)
        started = time.monotonic()
        replace_file(path, source)
        problems = await self.settle(EDITED, kept(old))
        problems += await self.verify(EDITED, self.marker[EDITED])
        return self._step("file broken", started, None, problems, what)

    async def yaml_add(self) -> Step:
        started = time.monotonic()
        replace_file(self.root / f"{EXTRA}.yml", YAML_EXAMPLE.read_text())
        problems = await self.settle(EXTRA, new_and_ready(set()))
        reply = await http(self.port, "POST", f"/{EXTRA}/run", STABLE_BODIES["prompt"])
        if reply.status != 200:
            problems.append(f"/{EXTRA}/run answered {reply.status}")
        return self._step("file add yaml", started, None, problems)

    async def yaml_remove(self) -> Step:
        started = time.monotonic()
        (self.root / f"{EXTRA}.yml").unlink()
        problems = await self.settle(EXTRA, gone)
        reply = await http(self.port, "POST", f"/{EXTRA}/run", STABLE_BODIES["prompt"])
        if reply.status != 404:
            problems.append(f"/{EXTRA}/run answered {reply.status} (expected 404)")
        return self._step("file remove yaml", started, None, problems)

    # --- a stable pipeline, same behaviour ---

    async def stable_redeploy(self) -> Step:
        """Redeploy echo, greeter or prompt in turn: every other time byte-identical (same revision)."""
        name = STABLE[self.stable_redeploys % len(STABLE)]
        identical = (self.stable_redeploys // len(STABLE)) % 2 == 1
        self.stable_redeploys += 1
        before = await self.revisions(name)
        started = time.monotonic()
        if name == "prompt":
            if not identical:
                self.prompt_description = f"Fill a prompt (churn soak redeploy {self.stable_redeploys})."
            body = {
                "name": name,
                "source_code": YAML_EXAMPLE.read_text(),
                "overwrite": True,
                "description": self.prompt_description,
                "wait": True,
                "wait_timeout": SETTLE_TIMEOUT,
            }
            reply = await http(self.port, "POST", "/deploy-yaml", body, timeout=SETTLE_TIMEOUT + 60)
            status, answer = reply.status, reply.json() if isinstance(reply.json(), dict) else {}
            problems = [] if status == 200 else [f"answered {status}: {reply.body[:200].decode(errors='replace')}"]
            if status == 200 and answer.get("converged") is not True:
                problems.append(f"not converged: lagging {answer.get('lagging')}")
        else:
            if not identical:
                self.stable_suffix[name] = f"\n# churn soak redeploy {self.stable_redeploys}: same behaviour\n"
            files = {path.name: path.read_text() for path in sorted((EXAMPLES / name).glob("*.py")) if path.is_file()}
            files["pipeline_wrapper.py"] += self.stable_suffix[name]
            status, answer, problems = await self._deploy_files(name, files, overwrite=True)
        revision = answer.get("revision")
        same = revision in before and len(before) == 1
        if identical and status == 200 and not same:
            problems.append(f"byte-identical files got revision {revision}, was {sorted(before)}")
        note = f"{name}, {'identical' if identical else 'comment changed'}, {'same' if same else 'new'} revision"
        return self._step("stable redeploy", started, status, problems, note)


# --- memory ------------------------------------------------------------------------------------------


def tree_pss(server: Contender) -> dict[str, Any]:
    """PSS of the gunicorn master and every process below it, from /proc/PID/smaps_rollup."""
    workers = set(server.worker_pids())
    processes = []
    for pid in server.tree():
        memory = read_memory(pid)
        if memory is None:
            continue
        role = "master" if pid == server.pid else "worker" if pid in workers else "other"
        processes.append({"pid": pid, "role": role, "pss_mib": round(memory.pss / MIB, 2), "cmd": cmdline(pid)[:80]})
    return {"total_mib": round(sum(p["pss_mib"] for p in processes), 1), "processes": processes}


async def sample(server: Contender, clock: Clock, driver_ref: list[Driver], samples: list[dict], every: float):
    """PSS, load average and churn progress every ``every`` seconds."""
    while True:
        pss = await asyncio.to_thread(tree_pss, server)
        driver = driver_ref[0] if driver_ref else None
        samples.append(
            {
                "at": round(clock.now(), 1),
                "phase": clock.phase,
                "pss_mib": pss["total_mib"],
                "processes": len(pss["processes"]),
                "load_average": round(os.getloadavg()[0], 2),
                "cycles": driver.cycle if driver else 0,
                "steps": len(driver.steps) if driver else 0,
            }
        )
        await asyncio.sleep(every)


# --- the soak -----------------------------------------------------------------------------------------


def wait_all_ready(server: Contender, names: list[str], timeout: float = 120.0) -> None:
    """Until every worker serves every pipeline of the directory."""

    def not_ready() -> str:
        status, answer = call(server.port, "GET", "/status", timeout=5)
        workers = answer.get("cluster", {}).get("workers", []) if isinstance(answer, dict) else []
        states = [worker.get("pipelines", {}) for worker in workers]
        waiting = sorted({n for state in states for n in names if state.get(n, {}).get("state") != "ready"})
        if status != 200 or len(states) != WORKERS:
            return f"GET /status to list {WORKERS} workers (answers {status})"
        return f"{', '.join(waiting)} ready in every worker" if waiting else ""

    server.wait_for(not_ready, timeout)


def expected_answers(server: Contender) -> dict[str, Any]:
    """What each stable pipeline answers now: every later run must answer the same."""
    expected = {}
    for name, body in STABLE_BODIES.items():
        status, answer = call(server.port, "POST", f"/{name}/run", json_bytes(body), timeout=30)
        if status != 200 or not isinstance(answer, dict) or "result" not in answer:
            raise RuntimeError(f"/{name}/run answered {status}: {str(answer)[:300]}")
        expected[name] = answer["result"]
    if expected["echo"] != "ping" or expected["greeter"] != "Hello, Ada Lovelace!":
        raise RuntimeError(f"unexpected answers of the stable pipelines: {expected}")
    return expected


def json_bytes(body: Any) -> bytes:
    return json.dumps(body).encode()


async def soak(server: Contender, expected: dict[str, Any], calm: float, churn: float) -> dict[str, Any]:
    clock, runs, stop = Clock(server), Runs(), asyncio.Event()
    samples: list[dict[str, Any]] = []
    driver_ref: list[Driver] = []
    clients = [asyncio.create_task(client(i, server.port, clock, runs, expected, stop)) for i in range(CLIENTS)]
    sampler = asyncio.create_task(sample(server, clock, driver_ref, samples, max(5.0, (calm + churn) / 40)))
    memory: dict[str, Any] = {}
    try:
        await asyncio.sleep(WARMUP)
        clock.enter("calm before")
        await asyncio.sleep(calm / 2)
        memory["churn start"] = {**await asyncio.to_thread(tree_pss, server), "at": round(clock.now(), 1)}
        pids_before = server.worker_pids()
        clock.enter("churn")
        driver = Driver(server, clock, samples)
        driver_ref.append(driver)
        deadline = time.monotonic() + churn
        cycle_one = asyncio.create_task(driver.cycle_done.wait())
        running_driver = asyncio.create_task(driver.run(deadline))
        await asyncio.wait({cycle_one, running_driver}, return_when=asyncio.FIRST_COMPLETED)
        memory["after the first cycle"] = {**await asyncio.to_thread(tree_pss, server), "at": round(clock.now(), 1)}
        await running_driver
        memory["churn end"] = {**await asyncio.to_thread(tree_pss, server), "at": round(clock.now(), 1)}
        pids_after = server.worker_pids()
        clock.enter("calm after")
        await asyncio.sleep(calm / 2)
        memory["after the calm"] = {**await asyncio.to_thread(tree_pss, server), "at": round(clock.now(), 1)}
        clock.enter("end")
    finally:
        stop.set()
        await asyncio.gather(*clients, return_exceptions=True)
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
    return {
        "clock": clock,
        "runs": runs,
        "driver": driver,
        "memory": memory,
        "samples": samples,
        "workers_before": pids_before,
        "workers_after": pids_after,
    }


def _waited(reply: Reply) -> tuple[dict, list[str]]:
    """The answer of a deploy or undeploy with ``wait``, and what is wrong with it: not 200, or not converged."""
    answer = reply.json() if isinstance(reply.json(), dict) else {}
    if reply.status != 200:
        return answer, [f"answered {reply.status}: {reply.error or reply.body[:300].decode(errors='replace')}"]
    if answer.get("converged") is not True:
        return answer, [f"not converged: lagging {answer.get('lagging')} of {answer.get('workers')}"]
    return answer, []


# --- the report ----------------------------------------------------------------------------------------


def _latency(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    if not ordered:
        return {"runs": 0, "p50_ms": float("nan"), "p99_ms": float("nan"), "max_ms": float("nan")}
    return {
        "runs": len(ordered),
        "p50_ms": round(percentile(ordered, 50), 2),
        "p99_ms": round(percentile(ordered, 99), 2),
        "max_ms": round(ordered[-1], 2),
    }


def _windows(runs: Runs, samples: list[dict[str, Any]], clock: Clock, width: float) -> list[dict[str, Any]]:
    """Runs, failures and latency per window of ``width`` seconds, with the PSS sampled in it."""
    start = clock.marks[0]["at"]
    end = clock.marks[-1]["at"]
    windows = []
    edge = start
    while edge < end - 1e-6:
        upper = min(end, edge + width)
        inside = [(ms, ok) for at, ms, ok in runs.timeline if edge <= at < upper]
        phases = {mark["phase"] for mark in clock.marks if edge <= mark["at"] < upper}
        phase = next((m["phase"] for m in reversed(clock.marks) if m["at"] <= edge + 1e-6), "?")
        pss = [s["pss_mib"] for s in samples if edge <= s["at"] < upper]
        loads = [s["load_average"] for s in samples if edge <= s["at"] < upper]
        windows.append(
            {
                "from": round(edge - start),
                "to": round(upper - start),
                "phase": " → ".join(sorted(phases | {phase}, key=[m["phase"] for m in clock.marks].index)),
                **_latency([ms for ms, _ in inside]),
                "failed": sum(not ok for _, ok in inside),
                "pss_mib": pss[-1] if pss else None,
                "load_average": loads[-1] if loads else None,
            }
        )
        edge = upper
    return windows


LOG_PATTERNS = {
    "BUG in hayhooks": re.compile(r"BUG in hayhooks"),
    "worker timeout / killed / died": re.compile(
        r"WORKER TIMEOUT|was sent SIGKILL|Worker \(pid:\d+\) was|exited with code"
    ),
    "Traceback": re.compile(r"^Traceback", re.M),
    "ERROR lines": re.compile(r"\bERROR\b|\bCRITICAL\b"),
    "failed loads (expected: the broken steps)": re.compile(r"failed to load, still serving|failed to load:"),
}


def scan_log(text: str) -> dict[str, Any]:
    """What the server's log holds that could point at a bug: counts and a few distinct lines."""
    counts = {label: len(pattern.findall(text)) for label, pattern in LOG_PATTERNS.items()}
    distinct: Counter[str] = Counter()
    for line in text.splitlines():
        if re.search(r"\bERROR\b|\bCRITICAL\b|BUG in hayhooks|WORKER TIMEOUT|SIGKILL", line):
            distinct[re.sub(r"\d+", "N", line.split(" - ", 1)[-1])[:160]] += 1
    return {"counts": counts, "lines": [{"line": line, "count": n} for line, n in distinct.most_common(15)]}


def churn_soak(opts: Options) -> tuple[list[str], str, dict[str, Any]]:
    """Run the soak; the summary row, the details (Markdown) and the data of the report."""
    total = float(getattr(opts, "churn_seconds", CHURN_SECONDS))
    calm = max(MIN_CALM, total * CALM_SHARE)
    churn = max(10.0, total - calm)
    log(f"churn: {WORKERS} workers, {CLIENTS} clients, {calm / 2:g} s calm + {churn:g} s churn + {calm / 2:g} s calm")
    server = ours(opts, WORKERS, ("echo", "greeter"), HAYHOOKS_DEPLOY_API="true")
    assert server.pipelines is not None
    populate(server.pipelines)
    load_at_start = os.getloadavg()
    with running(server):
        wait_all_ready(server, [*STABLE, CHURNED, EDITED])
        server.wait_idle(timeout=60.0)
        expected = expected_answers(server)
        outcome = asyncio.run(soak(server, expected, calm, churn))
        server_log = scan_log(server.output())
    load_at_end = os.getloadavg()
    return report(outcome, server_log, (calm, churn), load_at_start, load_at_end)


def report(
    outcome: dict[str, Any],
    server_log: dict[str, Any],
    plan: tuple[float, float],
    load_at_start: tuple[float, float, float],
    load_at_end: tuple[float, float, float],
) -> tuple[list[str], str, dict[str, Any]]:
    calm_seconds, churn_seconds = plan
    clock: Clock = outcome["clock"]
    runs: Runs = outcome["runs"]
    driver: Driver = outcome["driver"]
    memory: dict[str, Any] = outcome["memory"]
    phases = clock.phases()
    calm_ms = runs.latencies.get("calm before", []) + runs.latencies.get("calm after", [])
    latency = {phase: _latency(values) for phase, values in runs.latencies.items()}
    latency["calm (both)"] = _latency(calm_ms)
    p99_calm, p99_churn = latency["calm (both)"]["p99_ms"], latency.get("churn", _latency([]))["p99_ms"]
    p99_ratio = round(p99_churn / p99_calm, 2) if p99_calm else float("nan")
    failed = runs.failed()
    total_runs = sum(len(values) for values in runs.latencies.values())
    pss_start, pss_end = memory["churn start"]["total_mib"], memory["churn end"]["total_mib"]
    growth = (pss_end - pss_start) / pss_start
    steps: list[Step] = driver.steps
    kinds: dict[str, list[Step]] = {}
    for step in steps:
        kinds.setdefault(step.kind, []).append(step)
    unexpected = [step for step in steps if not step.ok]
    api_deploys = sum(
        1 for s in steps if s.kind in ("api redeploy", "api fix", "api re-add", "stable redeploy") and s.status == 200
    )
    directory_changes = sum(1 for s in steps if s.kind.startswith("file"))
    churn_samples = [s for s in outcome["samples"] if s["phase"] == "churn"]
    slope = None
    if len(churn_samples) >= 3:
        fit = statistics.linear_regression([s["at"] for s in churn_samples], [s["pss_mib"] for s in churn_samples])
        slope = round(fit.slope * 60, 2)  # MiB per minute
    restarted = sorted(set(outcome["workers_before"]) ^ set(outcome["workers_after"]))
    reloads = sum(1 for s in steps if s.kind in BALLAST_RELOADS and s.ok)
    per_reload = round((pss_end - pss_start) / WORKERS / reloads, 2) if reloads else None

    phase_rows = []
    for span in phases:
        phase = span["phase"]
        if phase not in runs.latencies:
            continue
        lat = latency[phase]
        phase_rows.append(
            [
                phase,
                f"{span['seconds']:.0f}",
                str(lat["runs"]),
                f"{lat['runs'] / span['seconds']:.0f}" if span["seconds"] else "—",
                str(runs.failed(phase)),
                f"{lat['p50_ms']:.1f}",
                f"{lat['p99_ms']:.1f}",
                f"{lat['max_ms']:.0f}",
                f"{span['server_cores']:.2f} / {span['clients_and_driver_cores']:.2f} / {span['other_cores']:.2f}",
                " ".join(f"{x:.2f}" for x in span["load_average_at_start"]),
            ]
        )
    calm = latency["calm (both)"]
    phase_rows.append(
        ["calm (both)", "", str(calm["runs"]), "", str(runs.failed("calm before") + runs.failed("calm after"))]
        + [f"{calm['p50_ms']:.1f}", f"{calm['p99_ms']:.1f}", f"{calm['max_ms']:.0f}", "", ""]
    )
    per_pipeline_rows = []
    for name in STABLE:
        calm_values = runs.by_pipeline.get("calm before", {}).get(name, []) + runs.by_pipeline.get(
            "calm after", {}
        ).get(name, [])
        churn_values = runs.by_pipeline.get("churn", {}).get(name, [])
        c, d = _latency(calm_values), _latency(churn_values)
        failures = sum(1 for f in runs.failures if f["pipeline"] == name)
        per_pipeline_rows.append(
            [
                f"`{name}`",
                str(c["runs"] + d["runs"]),
                str(failures),
                f"{c['p50_ms']:.1f} / {d['p50_ms']:.1f}",
                f"{c['p99_ms']:.1f} / {d['p99_ms']:.1f}",
                str(len(runs.revisions.get(name, {}))),
            ]
        )
    memory_rows = [
        [
            when,
            f"{m['at']:.0f}",
            f"{m['total_mib']:.1f}",
            f"{(m['total_mib'] - pss_start) / pss_start:+.1%}",
            ", ".join(f"{p['role']} {p['pss_mib']:.0f}" for p in m["processes"]),
        ]
        for when, m in memory.items()
    ]
    step_rows = []
    for kind, items in kinds.items():
        seconds = [s.seconds for s in items]
        statuses = Counter(str(s.status) for s in items if s.status is not None)
        step_rows.append(
            [
                kind,
                str(len(items)),
                ", ".join(f"{status}: {n}" for status, n in sorted(statuses.items())) or "—",
                str(sum(not s.ok for s in items)),
                f"{statistics.median(seconds):.3f}",
                f"{max(seconds):.3f}",
            ]
        )
    window_width = max(10.0, round((calm_seconds + churn_seconds) / 10))
    windows = _windows(runs, outcome["samples"], clock, window_width)
    window_rows = [
        [
            f"{w['from']}–{w['to']}",
            w["phase"],
            str(w["runs"]),
            str(w["failed"]),
            f"{w['p50_ms']:.1f}",
            f"{w['p99_ms']:.1f}",
            "—" if w["pss_mib"] is None else f"{w['pss_mib']:.0f}",
            "—" if w["load_average"] is None else f"{w['load_average']:.2f}",
        ]
        for w in windows
    ]

    failure_groups = Counter(f"{f['pipeline']} {f['status']} {f['error'][:120]}" for f in runs.failures)
    details = markdown_table(
        "phase | seconds | runs | runs/s | failed | p50 ms | p99 ms | max ms"
        " | cores busy: server / clients+driver / others | load average at start",
        phase_rows,
    )
    details += (
        f"\n{CLIENTS} clients run the stable pipelines in a closed loop, a fresh connection per call, for the whole"
        f" soak: {calm_seconds / 2:.0f} s calm, {churn_seconds:.0f} s of churn (the last cycle is finished, so a"
        f" little longer), {calm_seconds / 2:.0f} s calm again; calm (both) pools the two calm phases, against"
        f" which the churn's p99 is set. A run fails when it answers anything but 200 with the answer the pipeline"
        f" gave before the soak (or no answer within {RUN_TIMEOUT:g} s). Cores busy: CPU time over wall time of"
        " the server's processes, of this benchmark's process (clients and churn driver), and of everything else"
        " on the machine.\n\n"
    )
    details += markdown_table(
        "stable pipeline | runs | failed | p50 ms calm / churn | p99 ms calm / churn | revisions seen",
        per_pipeline_rows,
    )
    if failure_groups:
        details += "\nFailed runs:\n\n" + "".join(f"- {n}× {what}\n" for what, n in failure_groups.most_common(20))
    details += "\n" + markdown_table("memory | at s | total PSS MiB | vs churn start | PSS MiB by process", memory_rows)
    details += (
        f"\nTotal PSS: the sum of `Pss` in `/proc/PID/smaps_rollup` of the gunicorn master and all its"
        f" descendants. PSS over the churn phase: {pss_start:.1f} → {pss_end:.1f} MiB ({growth:+.1%})"
        + (
            f"; a least-squares line through its {len(churn_samples)} samples rises {slope:+.2f} MiB per minute"
            if slope is not None
            else ""
        )
        + f". The churned wrappers each hold a {BALLAST_MIB} MiB module-level bytearray: a replaced revision never"
        f" freed adds {BALLAST_MIB} MiB to each of the {WORKERS} workers. {reloads} reloads of a churned wrapper"
        f" (steps {', '.join(BALLAST_RELOADS)}) took each worker"
        + (f" {per_reload:+.2f} MiB per reload" if per_reload is not None else " nothing measurable")
        + f". Workers replaced during the soak: {len(restarted)} ({restarted or 'none'})."
        + (f" **The churn {driver.stopped_early}.**" if driver.stopped_early else "")
        + "\n\n"
    )
    details += markdown_table("churn step | done | answers | unexpected | median s | worst s", step_rows)
    details += (
        f"\n{driver.cycle} churn cycles, {len(steps)} steps: {api_deploys} API deploys that published (redeploy, fix,"
        f" re-add of `{CHURNED}` and redeploys of stable pipelines), {directory_changes} direct changes of the"
        f" directory. Each cycle: `POST /deploy_files` `{CHURNED}` (overwrite, wait) with a new marker; a broken"
        f" version (in turn: {', '.join(b[0] for b in BROKEN_SOURCES)}; must answer 422, the revisions and the"
        f" answers of `{CHURNED}` unchanged); the fix; `POST /undeploy/{CHURNED}?wait=true` (then its runs must"
        f" answer 404); the re-add (overwrite false); `{EDITED}/pipeline_wrapper.py` rewritten through a hidden"
        f" name + rename, then in place (open, truncate, write); a broken one renamed in (every worker must report"
        f" `failed` and keep serving the old revision) and fixed in place; `{EXTRA}.yml` written into the"
        f" directory and removed again; one stable pipeline redeployed (`echo`, `greeter` through"
        f" `/deploy_files`, `prompt` through `/deploy-yaml`; with a changed comment or description, or"
        f" byte-identical files, which must keep their revision). A step's time runs from its request or file"
        f" write until every one of the {WORKERS} workers serves what it must (the cluster view of `/status`) and"
        f" {VERIFY_CALLS} runs on fresh connections answer it; {STEP_PAUSE:g} s between steps.\n"
    )
    if unexpected:
        details += "\nUnexpected step outcomes:\n\n" + "".join(
            f"- cycle {s.cycle} at {s.at:.0f} s, {s.kind}{f' ({s.note})' if s.note else ''}:"
            f" {'; '.join(s.problems)[:400]}\n"
            for s in unexpected[:20]
        )
    details += "\n" + markdown_table(
        "seconds | phase | runs | failed | p50 ms | p99 ms | PSS MiB | load average", window_rows
    )
    log_counts = server_log["counts"]
    details += (
        f"\nServer log: {log_counts['BUG in hayhooks']} `BUG in hayhooks` lines,"
        f" {log_counts['worker timeout / killed / died']} worker timeouts/kills/deaths, {log_counts['Traceback']}"
        f" tracebacks, {log_counts['ERROR lines']} ERROR lines;"
        f" {log_counts['failed loads (expected: the broken steps)']} WARNING lines of failed loads (expected: the"
        f" broken edits, once per worker). Load average {' '.join(f'{x:.2f}' for x in load_at_start)} at the start"
        f" and {' '.join(f'{x:.2f}' for x in load_at_end)} at the end; the machine's 2 cores are shared with other"
        " engineers' test runs, whose share is the others column of the first table.\n"
    )
    ok = failed == 0 and p99_ratio <= P99_TARGET and growth <= FLAT_PSS and not unexpected
    summary = [
        f"churn soak ({(calm_seconds + churn_seconds) / 60:.0f} min, {WORKERS} workers, {CLIENTS} clients: failed"
        " stable runs; p99 churn ÷ calm; PSS churn start → end; unexpected churn steps)",
        f"{failed} of {total_runs}; {p99_ratio:.2f}× ({p99_churn:.1f} vs {p99_calm:.1f} ms);"
        f" {pss_start:.0f} → {pss_end:.0f} MiB ({growth:+.1%}); {len(unexpected)} of {len(steps)}",
        "— (no watcher: a deploy reaches one worker)",
        f"0 failed; ≤ {P99_TARGET:g}×; flat (≤ {FLAT_PSS:.0%}); 0",
        "yes" if ok else "**no**",
    ]
    data = {
        "plan": {"calm_seconds": calm_seconds, "churn_seconds": churn_seconds, "workers": WORKERS, "clients": CLIENTS},
        "failed_runs": failed,
        "runs": total_runs,
        "failures": runs.failures[:200],
        "latency": latency,
        "p99_churn_over_calm": p99_ratio,
        "phases": phases,
        "per_pipeline_revisions": {name: dict(counter) for name, counter in runs.revisions.items()},
        "runs_by_worker": dict(runs.workers),
        "memory": memory,
        "pss_growth": round(growth, 4),
        "pss_slope_mib_per_minute": slope,
        "churned_reloads": reloads,
        "pss_mib_per_worker_per_reload": per_reload,
        "stopped_early": driver.stopped_early,
        "workers_before": outcome["workers_before"],
        "workers_after": outcome["workers_after"],
        "cycles": driver.cycle,
        "api_deploys": api_deploys,
        "directory_changes": directory_changes,
        "steps_by_kind": {
            kind: {
                "done": len(items),
                "unexpected": sum(not s.ok for s in items),
                "median_seconds": statistics.median(s.seconds for s in items),
                "worst_seconds": max(s.seconds for s in items),
            }
            for kind, items in kinds.items()
        },
        "unexpected_steps": [asdict(s) for s in unexpected],
        "steps": [asdict(s) for s in steps],
        "samples": outcome["samples"],
        "windows": windows,
        "server_log": server_log,
        "load_average": {"start": load_at_start, "end": load_at_end},
    }
    return summary, details, data
