"""``hayhooks bench`` end to end: pick the pipeline and the body, then per configuration start a
server on a copy of the pipelines directory, warm it up, measure it, read its memory, stop it."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hayhooks.bench.load import DEFAULT_RECONNECT, LoadResult, resolve_generator, run_load
from hayhooks.bench.report import Row
from hayhooks.bench.server import call, signals_end_the_run
from hayhooks.bench.serving import BenchServer
from hayhooks.pipelines.names import WRAPPER_FILE, YAML_SUFFIXES, is_ignored, is_valid_name

DEFAULT_PIPELINE = "cpu_heavy"


class BenchError(RuntimeError):
    """Why the bench cannot go on; the CLI prints it and exits 1."""


@dataclass
class BenchConfig:
    workers: list[int]
    preload_modes: list[bool]
    pipeline: str | None = None
    pipelines_dir: Path | None = None
    body: str | None = None
    duration: float = 10.0
    warmup: float = 2.0
    connections: int = 32
    generator: str = "auto"
    reconnect: float = DEFAULT_RECONNECT
    repeats: int = 1
    start_timeout: float = 120.0


@dataclass
class BenchOutcome:
    pipeline: str
    body: str
    generator: str
    source: Path
    rows: list[Row] = field(default_factory=list)
    load_before: tuple[float, float, float] = (0.0, 0.0, 0.0)
    load_after: tuple[float, float, float] = (0.0, 0.0, 0.0)


# --- what to measure ---------------------------------------------------------------------------------


def default_worker_counts(cores: int | None = None) -> list[int]:
    """1, 2, 4, ... up to twice the cores: past the core count a CPU-bound pipeline stops growing."""
    cores = cores or os.cpu_count() or 1
    counts, count = [], 1
    while count <= 2 * cores:
        counts.append(count)
        count *= 2
    return counts


def examples_dir() -> Path | None:
    """The bundled examples, when hayhooks is installed from its repository (``examples/pipelines``)."""
    import hayhooks

    candidate = Path(hayhooks.__file__).resolve().parent.parent / "examples" / "pipelines"
    return candidate if candidate.is_dir() else None


def list_pipelines(directory: Path) -> list[str]:
    """The pipeline names a server would serve from ``directory``: wrapper folders and YAML files,
    by the server's own naming rules."""
    names = []
    for entry in sorted(directory.iterdir()):
        if is_ignored(entry.name):
            continue
        if entry.is_dir() and (entry / WRAPPER_FILE).is_file():
            name = entry.name
        elif entry.is_file() and entry.suffix in YAML_SUFFIXES:
            name = entry.stem
        else:
            continue
        if is_valid_name(name):
            names.append(name)
    return names


def choose_pipeline(directory: Path, wanted: str | None) -> str:
    names = list_pipelines(directory)
    if not names:
        raise BenchError(f"no pipelines in {directory}")
    if wanted is None:
        return DEFAULT_PIPELINE if DEFAULT_PIPELINE in names else names[0]
    if wanted not in names:
        raise BenchError(f"no pipeline {wanted!r} in {directory}; it has: {', '.join(names)}")
    return wanted


def sample_body(openapi: Any, name: str) -> dict[str, Any]:
    """A body with a placeholder for every required field of ``/name/run``'s request schema."""
    schemas = openapi.get("components", {}).get("schemas", {}) if isinstance(openapi, dict) else {}
    operation = openapi.get("paths", {}).get(f"/{name}/run", {}).get("post", {}) if isinstance(openapi, dict) else {}
    schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema", {})
    schema = _resolve(schema, schemas)
    properties = schema.get("properties", {})
    return {key: _placeholder(_resolve(properties.get(key, {}), schemas)) for key in schema.get("required", [])}


def _resolve(schema: dict, schemas: dict) -> dict:
    ref = schema.get("$ref", "")
    return schemas.get(ref.rsplit("/", 1)[-1], {}) if ref else schema


def _placeholder(schema: dict) -> Any:
    for option in schema.get("anyOf", []):
        if option.get("type") != "null":
            return _placeholder(option)
    if "default" in schema:
        return schema["default"]
    if schema.get("enum"):
        return schema["enum"][0]
    return {"string": "ping", "integer": 1, "number": 1.0, "boolean": False, "array": [], "object": {}}.get(
        schema.get("type", ""), "ping"
    )


def parse_body(text: str) -> str:
    """``--body``, checked and written compactly."""
    try:
        return json.dumps(json.loads(text), separators=(",", ":"))
    except ValueError as error:
        raise BenchError(f"--body is not valid JSON: {error}") from error


# --- the run -----------------------------------------------------------------------------------------------


def run_bench(config: BenchConfig, progress: Callable[[str], None]) -> BenchOutcome:
    """Measure every (workers, preload) configuration; BenchError when it cannot."""
    source = config.pipelines_dir or examples_dir()
    if source is None:
        raise BenchError(
            "the bundled examples are not here (they come with the hayhooks repository): pass --pipelines-dir"
        )
    if not source.is_dir():
        raise BenchError(f"{source} is not a directory")
    name = choose_pipeline(source, config.pipeline)
    body = parse_body(config.body) if config.body is not None else None
    try:
        generator = resolve_generator(config.generator)
    except RuntimeError as error:
        raise BenchError(str(error)) from error
    outcome = BenchOutcome(pipeline=name, body=body or "", generator=generator, source=source)
    outcome.load_before = os.getloadavg()
    scratch = Path(tempfile.mkdtemp(prefix="hayhooks-bench-"))
    try:
        with signals_end_the_run():
            pipelines = scratch / "pipelines"  # a copy: the bench never touches the caller's directory
            shutil.copytree(source, pipelines, ignore=shutil.ignore_patterns("__pycache__", "*.pyc", ".*"))
            for workers in config.workers:
                for preload in config.preload_modes:
                    row, body = _measure(config, name, body, generator, workers, preload, pipelines, scratch, progress)
                    outcome.body = body
                    outcome.rows.append(row)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    outcome.load_after = os.getloadavg()
    if not any(row.load.ok for row in outcome.rows):
        raise BenchError(f"every request to /{name}/run failed (see the errors column)")
    return outcome


def _measure(
    config: BenchConfig,
    name: str,
    body: str | None,
    generator: str,
    workers: int,
    preload: bool,
    pipelines: Path,
    scratch: Path,
    progress: Callable[[str], None],
) -> tuple[Row, str]:
    path = f"/{name}/run"
    server = BenchServer(pipelines, workers, preload, scratch)
    progress(f"{server.label}: starting")
    started = time.monotonic()
    with server:
        try:
            server.wait_serving(name, config.start_timeout)
        except RuntimeError as error:
            raise BenchError(str(error)) from error
        progress(f"{server.label}: serving {name} after {time.monotonic() - started:.1f} s")
        if body is None:
            _, openapi = call(server.port, "GET", "/openapi.json")
            body = json.dumps(sample_body(openapi, name), separators=(",", ":"))
            progress(f"body {body} (from the request schema; --body to choose one)")
        _probe(server, path, body)
        server.wait_idle()
        load = dict(connections=config.connections, scratch=scratch, reconnect=config.reconnect)
        try:
            if config.warmup > 0:
                run_load(generator, server.port, path, body, duration=config.warmup, **load)
            rows = []
            for repeat in range(config.repeats):
                row = _measure_once(server, generator, path, body, config.duration, load)
                rows.append(row)
                prefix = f"{server.label}: " + (f"run {repeat + 1}/{config.repeats}: " if config.repeats > 1 else "")
                progress(prefix + _summary(row.load))
        except RuntimeError as error:
            raise BenchError(str(error)) from error
        if server.process is not None and server.process.poll() is not None:
            raise BenchError(f"the server ({server.label}) died during the measurement; log:\n{server.log_tail()}")
        row = sorted(rows, key=lambda row: row.rps)[len(rows) // 2]  # the median run
        row.memory = server.memory()
    return row, body


def _measure_once(server: BenchServer, generator: str, path: str, body: str, duration: float, load: dict) -> Row:
    """One measurement: the load generator's numbers and the CPU time of everyone during it."""
    meter = server.cpu_meter()
    result = run_load(generator, server.port, path, body, duration=duration, **load)
    cpu = meter.stop()
    return Row(
        workers=server.workers,
        preload=server.preload,
        load=result,
        memory=None,
        server_cores=cpu.cores(cpu.server),
        generator_cores=cpu.cores(cpu.generator),
        other_cores=cpu.cores(cpu.others),
        worker_cores=[cpu.cores(seconds) for seconds in cpu.workers],
    )


def _summary(result: LoadResult) -> str:
    return f"{result.rps:.1f} req/s, p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms, {result.errors} errors"


def _probe(server: BenchServer, path: str, body: str) -> None:
    """One call before any load: a wrong body or a pipeline that always fails ends the bench at once."""
    status, answer = 0, None
    for _ in range(3):
        status, answer = call(server.port, "POST", path, body.encode(), timeout=30)
        if 200 <= status < 300:
            return
    hint = " (pass the pipeline's fields with --body '{...}')" if status == 422 else ""
    raise BenchError(f"POST {path} with {body} answered {status or 'nothing'}: {_explain(answer)[:400]}{hint}")


def _explain(answer: Any) -> str:
    """The ``detail`` of an error answer; ``field: message`` for each validation error."""
    detail = answer.get("detail", answer) if isinstance(answer, dict) else answer
    if isinstance(detail, list) and all(isinstance(item, dict) and "msg" in item for item in detail):
        return "; ".join(
            f"{'.'.join(str(part) for part in item.get('loc', [])[1:]) or '(body)'}: {item['msg']}" for item in detail
        )
    return detail if isinstance(detail, str) else json.dumps(detail)
