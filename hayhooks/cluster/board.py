"""The worker board: every worker of one server publishes what it serves into a shared runtime folder.

Each worker writes ``workers/<pid>.json`` (atomically) whenever its registry changes; any worker
can then answer for all of them, and a deploy can wait until every live worker serves a revision.
A file whose process is gone is ignored and swept.
"""

import asyncio
import contextlib
import json
import os
import socket
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from hayhooks.system import is_alive

_POLL_SECONDS = 0.02


class ClusterView(Protocol):
    """What the HTTP layer may read of the board: who answers, who serves what, and waiting for it."""

    @property
    def identity(self) -> dict: ...

    def workers(self) -> list[dict]: ...

    def view(self) -> dict: ...

    async def wait_for(self, name: str, revision: str | None, timeout: float) -> tuple[list[int], list[int]]: ...


class WorkerBoard:
    """This worker's entry on the board, and a reader of everyone's."""

    def __init__(self, runtime_dir: Path, port: int | None = None) -> None:
        self.runtime_dir = runtime_dir
        self.folder = runtime_dir / "workers"
        self.port = port

    @property
    def pid(self) -> int:
        """Read at each use: an app built in a preloading master serves in forked workers."""
        return os.getpid()

    @property
    def identity(self) -> dict:
        return {"pid": self.pid, "host": socket.gethostname(), "port": self.port}

    def publish(
        self, pipelines: dict[str, dict], *, ready: bool, abandoned_loads: Sequence[dict] = (), retiring: bool = False
    ) -> None:
        """Write what this worker serves: ``{name: {"revision": ..., "state": ...}}``, and its loads
        that overran the timeout and could not be stopped."""
        self.folder.mkdir(parents=True, exist_ok=True)
        record = {
            **self.identity,
            "ready": ready,
            "retiring": retiring,
            "updated_at": time.time(),
            "pipelines": pipelines,
            "abandoned_loads": list(abandoned_loads),
        }
        _write_whole(self.folder / f"{self.pid}.json", record)

    def withdraw(self) -> None:
        self.forget(self.pid)

    def forget(self, pid: int) -> None:
        """Remove a worker's entry, e.g. the master's as soon as it reaps a dead worker."""
        (self.folder / f"{pid}.json").unlink(missing_ok=True)

    def mark_stuck(self, name: str, revision: str) -> None:
        """Remember that a load of ``revision`` burned a core and could not be stopped: the workers that
        replace this one must not load it again."""
        folder = self.runtime_dir / "stuck"
        folder.mkdir(parents=True, exist_ok=True)
        record = {"pipeline": name, "revision": revision, "pid": self.pid, "since": time.time()}
        _write_whole(folder / f"{name}@{revision}.json", record)

    def stuck(self, name: str, revision: str) -> str | None:
        """Why ``revision`` of ``name`` is not to be loaded, if a worker got stuck loading it."""
        try:
            record = json.loads((self.runtime_dir / "stuck" / f"{name}@{revision}.json").read_text())
        except (OSError, ValueError):
            return None
        return (
            f"A load of revision {revision} never ended and burned a core in worker {record['pid']}, which "
            "retired; not loaded again until the files change"
        )

    def stuck_loads(self) -> list[dict]:
        """Every revision some worker got stuck loading."""
        records = []
        for path in sorted((self.runtime_dir / "stuck").glob("*.json")):
            with contextlib.suppress(OSError, ValueError):
                records.append(json.loads(path.read_text()))
        return records

    def workers(self) -> list[dict]:
        """Every live worker's record, this one included; files of dead workers are removed."""
        records = []
        try:
            files = sorted(self.folder.glob("*.json"))
        except OSError:
            return records
        for path in files:
            try:
                record = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # being replaced right now, or gone
            if is_alive(int(record.get("pid", 0))):
                records.append(record)
            else:
                path.unlink(missing_ok=True)
        return records

    def view(self) -> dict:
        """The live workers, whether they all serve the same revision of every pipeline with no load
        under way, and ``revisions``: the revision every worker serves, per pipeline they agree on."""
        workers = self.workers()
        served = [_revisions(worker) for worker in workers]
        names = sorted({name for revisions in served for name in revisions})
        disagree = [name for name in names if len({revisions.get(name) for revisions in served}) > 1]
        not_ready = [worker["pid"] for worker in workers if not worker.get("ready")]
        loading = sorted(
            {
                name
                for worker in workers
                for name, entry in worker.get("pipelines", {}).items()
                if entry.get("state") in ("waiting", "loading")
            }
        )
        return {
            "converged": not disagree and not not_ready and not loading,
            "revisions": {name: served[0][name] for name in names if name not in disagree and name not in loading},
            "disagree": disagree,
            "loading": loading,
            "starting": not_ready,
            "workers": workers,
            "stuck_loads": self.stuck_loads(),
        }

    async def wait_for(self, name: str, revision: str | None, timeout: float) -> tuple[list[int], list[int]]:
        """Wait until every live worker serves ``revision`` of ``name`` (``None``: serves no ``name``).

        Returns the live workers' pids and those still lagging when the timeout ran out.
        """
        deadline = time.monotonic() + timeout
        while True:
            workers = await asyncio.to_thread(self.workers)
            lagging = [
                worker["pid"]
                for worker in workers
                if not worker.get("ready") or _revisions(worker).get(name) != revision
            ]
            if not lagging or time.monotonic() >= deadline:
                return [worker["pid"] for worker in workers], lagging
            await asyncio.sleep(_POLL_SECONDS)


def _write_whole(path: Path, record: dict) -> None:
    """Write ``record`` as JSON so that readers see the old file or the new one, never half of it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(record))
    os.replace(temporary, path)


def _revisions(worker: dict) -> dict[str, str | None]:
    return {name: entry.get("revision") for name, entry in worker.get("pipelines", {}).items()}
