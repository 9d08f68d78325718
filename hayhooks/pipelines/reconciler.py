"""Make a worker's registry match the pipelines directory: load new and changed entries, drop removed ones.

Every load runs in a thread of its own, off the event loop and off the request threadpool, bounded
by a timeout: a load that overruns it is stopped, or, when it cannot be, kept in :attr:`abandoned`
for the worker to report (and to retire over, if it burns a core). A revision is swapped in only
once it loaded; a failed load leaves the last good one serving. Full passes never overlap and each
starts from a fresh scan; each name is settled by one pass at a time, so a deploy that settles its
own entry waits for no other entry's load. A load may wait for a turn among the server's workers
(``turn``), held until the old revision is released: the load timeout counts from the turn on. A
load that failed for a reason that may pass is tried again, per name, after a backoff, as long as
the directory still holds that revision.
"""

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from hayhooks.errors import describe
from hayhooks.pipelines import load_threads
from hayhooks.pipelines.load_threads import AbandonedLoads
from hayhooks.pipelines.loader import LoadedPipeline, PipelineLoadError, load_entry, overran_timeout
from hayhooks.pipelines.registry import PipelineRegistry
from hayhooks.pipelines.retries import Backoff, RetryTimers
from hayhooks.pipelines.source import Entry, PipelineSource
from hayhooks.system import release_memory

logger = logging.getLogger("hayhooks.reload")

_ABSENCE_CONFIRM_SECONDS = 0.05


class LoadTimeout(PipelineLoadError):
    pass


# A turn to load pipeline ``name`` among the workers of a server: entered before the load, left once
# the old revision is released; calls its second argument once if the load must wait for it.
Turn = Callable[[str, Callable[[], None]], contextlib.AbstractAsyncContextManager[None]]


def no_turns(_name: str, _on_wait: Callable[[], None]) -> contextlib.AbstractAsyncContextManager[None]:
    """Every worker loads whenever it likes."""
    return contextlib.nullcontext()


class Reconciler:
    """Follows one :class:`PipelineSource` into one :class:`PipelineRegistry`."""

    def __init__(
        self,
        source: PipelineSource,
        registry: PipelineRegistry,
        *,
        load_timeout: float,
        load_threads: int,
        load: Callable[[Entry], LoadedPipeline] = load_entry,
        known_stuck: Callable[[Entry], str | None] = lambda _entry: None,
        retry: Backoff | None = None,
        turn: Turn = no_turns,
    ):
        self.source = source
        self.registry = registry
        self._load = load
        self._known_stuck = known_stuck  # why a revision is not to be loaded again: it got stuck before
        self._turn = turn
        self.abandoned = AbandonedLoads()
        self.load_timeout = load_timeout
        self._load_slots = asyncio.Semaphore(load_threads)
        self._scan_lock = asyncio.Lock()  # full passes never overlap; each starts from a fresh scan
        self._name_locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._requested = asyncio.Event()
        self._ready = False
        self._backoff = retry  # None: a failed load waits for a file change
        self._retries = RetryTimers()
        self._retrying: dict[str, str] = {}  # name -> the revision a retry is loading right now
        # The directory as this worker last scanned it: name -> revision (None: an entry the scan rejected).
        self._scanned: dict[str, str | None] = {}

    def request(self) -> None:
        """Ask for a reconcile soon; many requests before it starts coalesce into one."""
        self._requested.set()

    async def run_forever(self) -> None:
        """Reconcile whenever asked, until cancelled."""
        while True:
            await self._requested.wait()
            self._requested.clear()
            try:
                await self.reconcile()
            except Exception:  # a scan that failed must not end the worker's reloads
                logger.exception("reconcile failed")

    @property
    def ready(self) -> bool:
        """Whether the first pass over the directory has run: every entry was attempted once."""
        return self._ready

    async def reconcile(self) -> None:
        """Scan the directory once and bring the registry in line with it."""
        async with self._scan_lock:
            entries, errors = await asyncio.to_thread(self.source.scan)
            self._scanned = {**dict.fromkeys(errors), **{name: entry.revision for name, entry in entries.items()}}
            known = set(self.registry.serving()) | {status.name for status in self.registry.statuses()}
            names = sorted(known | entries.keys() | errors.keys())
            await asyncio.gather(*(self._settle(name, entries.get(name), errors.get(name)) for name in names))
            self._ready = True

    async def reconcile_one(self, name: str) -> None:
        """Bring entry ``name`` alone in line with the directory: what a deploy waits for."""
        entry, error = await asyncio.to_thread(self.source.scan_one, name)
        if entry is None and error is None:
            self._scanned.pop(name, None)
        else:
            self._scanned[name] = entry.revision if entry else None
        await self._settle(name, entry, error)

    async def stop(self) -> None:
        """Cancel every pending and running retry: the worker is stopping."""
        await self._retries.cancel_all()

    def unsettled(self) -> list[dict]:
        """The entries of the directory (as last scanned) this worker neither serves at their revision
        nor gave up on (failed): what keeps it from being ready, with the revision it serves meanwhile."""
        pending = []
        for name, revision in sorted(self._scanned.items()):
            status = self.registry.status(name)
            busy = status is not None and status.state in ("waiting", "loading")
            if status is None or busy or (revision is not None and status.target != revision):
                serving = status.revision if status else None
                pending.append({"name": name, "revision": revision, "serving": serving})
        return pending

    async def _settle(self, name: str, entry: Entry | None, error: str | None) -> None:
        """Load, fail or drop ``name`` as the directory has it; one settle per name at a time."""
        if entry is not None and self._retrying.get(name) == entry.revision:
            return  # a retry is loading this very revision: nothing to add, and no pass waits for it
        async with self._name_locks[name]:
            if entry is not None:
                if self.registry.target(name) != entry.revision:
                    self._retries.cancel(name)  # a new revision: its own first try, now
                    if not await self._failed_stuck(entry):
                        await self._load_in_turn(entry)
            elif error is not None:
                self._retries.cancel(name)
                status = self.registry.status(name)
                if status is None or status.error != error:
                    self.registry.fail(name, None, error)
            elif await self._confirmed_absent(name):
                self._retries.cancel(name)
                if self._unserve(name):
                    release_memory()

    async def _retry(self, name: str, revision: str, step: int) -> None:
        """Try ``revision`` of ``name`` again, if it is still the failed target and the directory's revision."""
        async with self._name_locks[name]:
            status = self.registry.status(name)
            if status is None or status.state != "failed" or status.target != revision:
                return  # settled otherwise meanwhile
            if self.abandoned.holds(name, revision):  # its timed-out load still runs: a retry would start a second
                self.registry.retry_at(name, self._schedule_retry(name, revision, step + 1))
                return
            entry, _ = await asyncio.to_thread(self.source.scan_one, name)
            if entry is None or entry.revision != revision:
                self.request()  # the files changed and the watcher has not said so yet: the normal path takes it
                return
            if await self._failed_stuck(entry):  # another worker got stuck on it meanwhile
                return
            self._retrying[name] = revision
            try:
                await self._load_in_turn(entry, attempt=status.attempts + 1)
            finally:
                del self._retrying[name]

    def _schedule_retry(self, name: str, revision: str, step: int, at_least: float = 0.0) -> float:
        """Retry after the backoff of ``step`` failed tries, and no sooner than ``at_least`` seconds;
        return when (epoch seconds)."""
        assert self._backoff is not None
        delay = max(self._backoff.delay(step), at_least)
        return self._retries.schedule(name, delay, lambda: self._retry(name, revision, step))

    async def load(self, entry: Entry) -> LoadedPipeline:
        """Load ``entry`` in a thread of its own; raise :class:`PipelineLoadError` on failure or timeout."""
        async with self._load_slots:
            future, thread = load_threads.in_thread(self._load, entry, on_late_result=LoadedPipeline.unload)
            try:
                return await asyncio.wait_for(future, self.load_timeout)
            except TimeoutError as error:
                overran = overran_timeout(entry.name, self.load_timeout)
                if await load_threads.stop(thread):
                    raise LoadTimeout(f"{overran}; stopped", retryable=True) from error
                self.abandoned.add(entry.name, entry.revision, thread)  # retried only once this thread ended
                raise LoadTimeout(
                    f"{overran} and could not be stopped (blocked outside Python code)", retryable=True
                ) from error

    async def _failed_stuck(self, entry: Entry) -> bool:
        """Fail ``entry`` without loading it if a load of that revision got stuck before (never retried:
        it would stick again); whether it did."""
        if stuck := await asyncio.to_thread(self._known_stuck, entry):
            self.registry.fail(entry.name, entry.revision, stuck, entry.kind)
            return True
        return False

    async def _load_in_turn(self, entry: Entry, attempt: int = 1) -> None:
        """Load and swap ``entry`` (try number ``attempt`` of its revision) in a turn among the workers,
        which ends only once the old revision's memory is released: that bounds how many copies of the
        pipeline a server holds at once."""

        def waiting() -> None:
            if attempt == 1:  # a retry leaves the failure in status until it is settled
                self.registry.mark_loading(entry.name, entry.revision, entry.kind, state="waiting")

        async with self._turn(entry.name, waiting):
            if await self._load_and_swap(entry, attempt):
                release_memory()  # what the swap or the failure left, now that no frame of ours holds it

    async def _load_and_swap(self, entry: Entry, attempt: int) -> bool:
        """Load ``entry`` and serve it if it loaded; return whether that left garbage behind: a replaced
        revision, or the modules and traceback of a load that failed."""
        previous = self.registry.get(entry.name)
        if attempt == 1:
            self.registry.mark_loading(entry.name, entry.revision, entry.kind)
        started = time.perf_counter()
        try:
            loaded = await self.load(entry)
        except Exception as error:
            message = str(error) if isinstance(error, PipelineLoadError) else describe(error)
            # an error outside the loader's own checks (a file read as it was replaced) may pass too
            retryable = self._backoff is not None and (not isinstance(error, PipelineLoadError) or error.retryable)
            # a load that ran into the timeout waits at least as long again: a setup() that spins
            # forever then keeps a load thread busy at most half the time, not all of it
            at_least = self.load_timeout if isinstance(error, LoadTimeout) else 0.0
            retry_at = self._schedule_retry(entry.name, entry.revision, attempt, at_least) if retryable else None
            self.registry.fail(
                entry.name, entry.revision, message, entry.kind, attempts=attempt, next_retry_at=retry_at
            )
            logger.warning(
                "pipeline %s: revision %s failed to load (attempt %d), %s: %s; %s",
                entry.name,
                entry.revision,
                attempt,
                f"still serving {previous.revision}" if previous else "not served",
                message,
                f"retrying in {retry_at - time.time():.1f}s" if retry_at else "not retried until its files change",
                extra={**_reload_fields(entry, previous, started), "attempts": attempt, "next_retry_at": retry_at},
            )
            return True
        self.registry.swap(loaded, attempts=attempt)
        if previous is not None:
            previous.unload()
        fields = _reload_fields(entry, previous, started)
        logger.info(
            "pipeline %s: %s -> %s loaded in %.3fs",
            entry.name,
            previous.revision if previous else "new",
            loaded.revision,
            fields["load_seconds"],
            extra=fields,
        )
        return previous is not None

    async def _confirmed_absent(self, name: str) -> bool:
        """An entry can vanish for an instant during a non-atomic replace; look twice before undeploying."""
        await asyncio.sleep(_ABSENCE_CONFIRM_SECONDS)
        return not await asyncio.to_thread(self.source.exists, name)

    def _unserve(self, name: str) -> bool:
        """Stop serving ``name``; return whether a revision was served."""
        removed = self.registry.remove(name)
        if removed is not None:
            removed.unload()
            logger.info("pipeline %s: removed (was %s)", name, removed.revision)
        return removed is not None


def _reload_fields(entry: Entry, previous: LoadedPipeline | None, started: float) -> dict[str, Any]:
    """A reload's facts as log ``extra``, so JSON logs carry them as fields."""
    return {
        "pipeline": entry.name,
        "old_revision": previous.revision if previous else None,
        "new_revision": entry.revision,
        "load_seconds": round(time.perf_counter() - started, 3),
    }
