"""Turns to load a pipeline: at most ``cap`` workers of one server load the same pipeline at once.

Each worker holds the old and the new revision while it swaps, so N workers reloading a pipeline
that holds a large model need N extra copies at the same moment. A turn is an ``flock`` on one of
``cap`` slot files in the runtime folder (shared by every worker of a server, under gunicorn or
``uvicorn --workers``), held for the whole load, swap and release of the old revision. The kernel
drops the locks of a process that dies, so a worker killed mid-load frees its turn at once. A
worker that finds every slot taken polls with non-blocking tries: its event loop keeps serving the
old revision meanwhile.
"""

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path

POLL_SECONDS = 0.025


class LoadTurns:
    """The slots of one runtime folder: ``cap`` turns per pipeline name."""

    def __init__(self, runtime_dir: Path, cap: int) -> None:
        if cap < 1:
            raise ValueError("a cap of load turns is at least 1")
        self.folder = runtime_dir / "load-turns"
        self.cap = cap

    @contextlib.asynccontextmanager
    async def turn(self, name: str, on_wait: Callable[[], None]) -> AsyncIterator[None]:
        """Hold one of ``name``'s turns for the body; ``on_wait()`` is called once if every turn is taken."""
        slots = await asyncio.to_thread(self._open_slots, name)
        try:
            if not _take_any(slots):
                on_wait()
                while not _take_any(slots):
                    await asyncio.sleep(POLL_SECONDS)
            yield
        finally:
            for slot in slots:  # closing a descriptor drops the lock it holds
                os.close(slot)

    def _open_slots(self, name: str) -> list[int]:
        self.folder.mkdir(parents=True, exist_ok=True)
        flags = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC
        return [os.open(self.folder / f"{name}.{k}.lock", flags, 0o600) for k in range(self.cap)]


def _take_any(slots: list[int]) -> bool:
    """Lock the first free slot without blocking; whether one was free."""
    for slot in slots:
        try:
            fcntl.flock(slot, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            continue
        return True
    return False
