"""What the comparison's parts share: where things are, how the run is configured, progress output."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
EXAMPLES = REPO / "examples" / "pipelines"


@dataclass(frozen=True)
class Options:
    """How a run is configured (see ``parse_args`` for what each field means)."""

    scenarios: tuple[str, ...]
    venv: Path
    reference_venv: Path
    duration: int
    warmup: int
    connections: int
    repeats: int
    changes: int
    redeploys: int
    redeploy_pause: float
    clients: int
    deploys: int
    settle_timeout: float
    poll_concurrency: int
    results: Path
    scratch: Path


def log(message: str) -> None:
    """Progress, on stderr; the report goes to stdout."""
    print(message, file=sys.stderr, flush=True)


def markdown_table(header: str, rows: list[list[str]]) -> str:
    """A Markdown table; ``header`` names the columns separated by `` | ``."""
    headers = header.split(" | ")
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"
