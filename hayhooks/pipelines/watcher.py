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

from hayhooks.pipelines.names import PRIVATE_PREFIXES, is_ignored

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
        self._snapshot: Snapshot = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hayhooks-watch", daemon=True)

    def start(self) -> None:
        """Start watching; with polling, the first snapshot is taken before this returns, so that a
        change right after it (and after the caller's first scan) is seen by the first poll."""
        if self.polling:
            self._snapshot = _snapshot(os.path.realpath(self.root))
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            watched = os.path.realpath(self.root)
            if not os.path.isdir(watched):  # removed or not yet mounted: the periodic rescan covers it
                self._stop.wait(_REALPATH_CHECK_MS / 1000)
                continue
            if self.polling:
                self._poll(watched)
            else:
                try:
                    self._watch(watched)
                except (OSError, RuntimeError) as error:  # inotify limits reached or unavailable
                    logger.warning("inotify unavailable for %s (%s); falling back to polling", watched, error)
                    self.polling = True
                    self._snapshot = _snapshot(watched)
                    self.on_change()  # what changed while inotify failed
                    continue
            if not self._stop.is_set():
                logger.info("%s now points to %s; watching the new target", self.root, os.path.realpath(self.root))
                self.on_change()

    def _poll(self, watched: str) -> None:
        """Compare a snapshot of every file's stat each interval, until stopped or ``root`` moves.

        Our own poller rather than watchfiles' (notify's), which keeps modification times in whole
        seconds and so never sees an edit made in the same second as the one before it.
        """
        while not self._stop.wait(self.poll_interval_ms / 1000):
            if os.path.realpath(self.root) != watched:
                return
            now = _snapshot(watched)
            if now != self._snapshot:
                self._snapshot = now
                self.on_change()

    def _watch(self, watched: str) -> None:
        """Watch ``watched`` with inotify until stopped or until ``root`` resolves elsewhere (a symlink swap)."""
        caught_up = False
        for changes in watchfiles.watch(
            watched,
            watch_filter=_PipelinesFilter(watched),
            debounce=max(10 * self.quiet_ms, 500),
            step=self.quiet_ms,
            stop_event=self._stop,
            rust_timeout=_REALPATH_CHECK_MS,
            yield_on_timeout=True,
            raise_interrupt=False,
        ):
            # The watch is set up inside this thread, after the caller's first scan may have run:
            # the first answer (a change, or the first timeout) asks for one more scan to catch up.
            if changes or not caught_up:
                caught_up = True
                self.on_change()
            if os.path.realpath(self.root) != watched:
                return


Snapshot = dict[str, tuple[int, int, int]]


def _snapshot(root: str) -> Snapshot:
    """Every served file and folder under ``root`` → (mtime in ns, size, inode)."""
    found: Snapshot = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [name for name in dirnames if not is_ignored(name)]
        for name in (*dirnames, *(name for name in filenames if not is_ignored(name))):
            path = os.path.join(dirpath, name)
            try:
                stat = os.stat(path)
            except OSError:  # gone between the listing and the stat: the next poll settles it
                continue
            found[path] = (stat.st_mtime_ns, stat.st_size, stat.st_ino)
    return found


async def rescan_periodically(request_rescan: Callable[[], None], interval: float) -> None:
    """A safety net for missed events: ask for a full rescan every ``interval`` seconds."""
    while True:
        await asyncio.sleep(interval)
        request_rescan()
