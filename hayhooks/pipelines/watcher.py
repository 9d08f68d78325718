"""watchfiles events in the pipelines directory → "rescan and reconcile".

The watcher runs in a thread of its own (not the request threadpool, which a busy worker may
saturate) and only says that something changed; the reconciler decides what. A periodic rescan
catches what events miss: network filesystems, and a root that is itself a symlink swapped by
git-sync or a ConfigMap.
"""

import asyncio
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path

import watchfiles

from hayhooks.pipelines.names import PRIVATE_PREFIXES

logger = logging.getLogger("hayhooks.watch")

_REALPATH_CHECK_MS = 1000


class _PipelinesFilter(watchfiles.DefaultFilter):
    """watchfiles' defaults, minus everything in our own staging and trash folders and the lock file.

    The rename that publishes or removes an entry still counts: it names the entry itself.
    """

    def __init__(self, root: str) -> None:
        super().__init__()
        self.root = root

    def __call__(self, change: watchfiles.Change, path: str) -> bool:
        top = os.path.relpath(path, self.root).split(os.sep, 1)[0]
        return super().__call__(change, path) and not top.startswith(PRIVATE_PREFIXES)


class DirectoryWatcher:
    """Calls ``on_change`` (from its own thread) after every burst of changes under ``root``."""

    def __init__(
        self,
        root: Path,
        on_change: Callable[[], None],
        *,
        quiet_ms: int,
        force_polling: bool,
        poll_interval_ms: int,
    ) -> None:
        self.root = root
        self.on_change = on_change
        self.quiet_ms = quiet_ms
        self.polling = force_polling
        self.poll_interval_ms = poll_interval_ms
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hayhooks-watch", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            watched = os.path.realpath(self.root)
            if not os.path.isdir(watched):  # removed or not yet mounted: the periodic rescan covers it
                self._stop.wait(_REALPATH_CHECK_MS / 1000)
                continue
            try:
                self._watch(watched)
            except (OSError, RuntimeError) as error:  # inotify limits reached or unavailable
                if self.polling:
                    logger.error("watching %s failed: %s; retrying", watched, error)
                    self._stop.wait(1.0)
                else:
                    logger.warning("inotify unavailable for %s (%s); falling back to polling", watched, error)
                    self.polling = True
            else:
                if not self._stop.is_set():
                    logger.info("%s now points to %s; watching the new target", self.root, os.path.realpath(self.root))
                    self.on_change()

    def _watch(self, watched: str) -> None:
        """Watch ``watched`` until stopped or until ``root`` resolves elsewhere (a symlink swap)."""
        for changes in watchfiles.watch(
            watched,
            watch_filter=_PipelinesFilter(watched),
            debounce=max(10 * self.quiet_ms, 500),
            step=self.quiet_ms,
            stop_event=self._stop,
            rust_timeout=_REALPATH_CHECK_MS,
            yield_on_timeout=True,
            force_polling=self.polling,
            poll_delay_ms=self.poll_interval_ms,
            raise_interrupt=False,
        ):
            if changes:
                self.on_change()
            if os.path.realpath(self.root) != watched:
                return


async def rescan_periodically(request_rescan: Callable[[], None], interval: float) -> None:
    """A safety net for missed events: ask for a full rescan every ``interval`` seconds."""
    while True:
        await asyncio.sleep(interval)
        request_rescan()
