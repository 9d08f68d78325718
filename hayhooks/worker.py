"""One worker's parts, wired: directory → reconciler → registry, its watcher, board entry and metrics.

``create_app()`` builds a :class:`Worker` (possibly in a preloading gunicorn master, so nothing
starts here) and the app's lifespan starts and stops it inside the worker process. The HTTP layer
gets narrow views of it: the serving table, readiness, the cluster view, the deployer.
"""

import asyncio
import functools
import logging
import os
import signal
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hayhooks.cluster.board import WorkerBoard
from hayhooks.cluster.checker import LoadChecker
from hayhooks.cluster.files import FileStore, configure_file_store, files_dir
from hayhooks.cluster.load_turns import LoadTurns
from hayhooks.cluster.metrics import MetricsStore, metrics_dir
from hayhooks.cluster.runtime import runtime_dir
from hayhooks.pipelines.deployer import Deployer, DeployLimits
from hayhooks.pipelines.loader import import_haystack_core, load_entry
from hayhooks.pipelines.reconciler import Reconciler, no_turns
from hayhooks.pipelines.registry import PipelineRegistry
from hayhooks.pipelines.retries import Backoff
from hayhooks.pipelines.source import PipelineSource
from hayhooks.pipelines.streaming import configure_streaming
from hayhooks.pipelines.watcher import DirectoryWatcher, rescan_periodically
from hayhooks.settings import Settings
from hayhooks.system import freeze_start_up_objects, limit_malloc_arenas

logger = logging.getLogger("hayhooks.worker")

_ABANDONED_LOOK_SECONDS = 1.0


class Worker:
    """What one worker process runs on, from the settings it was started with."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        limit_malloc_arenas(settings.malloc_arena_max)
        _extend_python_path(settings.additional_python_path)
        configure_streaming(settings.streaming_components)
        self.source = PipelineSource(Path(settings.pipelines_dir).absolute())
        self.registry = PipelineRegistry()
        cap = settings.max_workers_loading
        self.reconciler = Reconciler(
            self.source,
            self.registry,
            load_timeout=settings.load_timeout,
            load_threads=settings.load_threads,
            load=functools.partial(load_entry, yaml_result=settings.yaml_result),
            known_stuck=lambda entry: self.board.stuck(entry.name, entry.revision),
            retry=Backoff(settings.load_retry_delay, settings.load_retry_max_delay) if settings.load_retry else None,
            turn=LoadTurns(runtime_dir(settings), cap).turn if cap else no_turns,
        )
        limits = DeployLimits(
            files=settings.deploy_max_files,
            path_depth=settings.deploy_max_path_depth,
            file_bytes=settings.deploy_max_file_bytes,
            total_bytes=settings.deploy_max_total_bytes,
        )
        self.checker = LoadChecker(
            runtime_dir(settings),
            timeout=settings.load_timeout,
            memory_mb=settings.deploy_check_memory_mb,
            yaml_result=settings.yaml_result,
        )
        self.deployer = Deployer(self.source, self.reconciler, self.checker.check, limits)
        self.board = WorkerBoard(runtime_dir(settings), port=settings.port)
        self.files = FileStore(files_dir(settings))
        self.metrics_store = MetricsStore(metrics_dir(settings))
        self.metrics = self.metrics_store.open_for_writing()
        self.metrics.observe_registry(self.registry)
        # Board files are written off the event loop, one at a time, so the last write is the newest.
        self._board_writer = ThreadPoolExecutor(1, thread_name_prefix="hayhooks-board")
        self._watcher: DirectoryWatcher | None = None
        self._tasks: list[asyncio.Task] = []
        self._stopped = False
        # Whether something replaces this process when it exits (gunicorn's master: its config sets it);
        # only then may a worker with a stuck load retire, instead of taking the whole server down.
        self.replaceable = False
        self.retiring = False
        self._abandoned: list[dict] = []

    @property
    def ready(self) -> bool:
        """Every entry of the directory was attempted once (served or failed), and not retiring."""
        return self.reconciler.ready and not self.retiring

    def readiness(self) -> tuple[str, list[dict]]:
        """What ``/ready`` tells a load balancer: ``retiring``; ``loading`` until the first pass over
        the directory ran and while an entry of it is not settled at its current revision (listed);
        else ``ready``."""
        if self.retiring:
            return "retiring", []
        pending = self.reconciler.unsettled()
        return ("ready" if self.reconciler.ready and not pending else "loading"), pending

    async def start(self) -> None:
        """Load the directory, then follow it: called by the lifespan, in the worker process."""
        settings = self.settings
        loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.source.ensure_exists)
        # Haystack keeps the tracebacks of its missing optional imports (LazyImport), and with them
        # every frame of the thread that imported it first: a load's frames would pin its revision.
        await asyncio.to_thread(import_haystack_core)
        freeze_start_up_objects()
        configure_file_store(self.files)  # what open_file() and file_path() read in this process
        await asyncio.to_thread(self.files.sweep)
        self.metrics.worker_started()
        # Subscribed last, after the app's routes: the board never announces a revision that this
        # worker cannot route yet.
        self.registry.on_change(self._publish)
        self._publish()
        if settings.watch:
            self._watcher = DirectoryWatcher(
                self.source.root,
                lambda: loop.call_soon_threadsafe(self.reconciler.request),
                quiet_ms=settings.watch_debounce_ms,
                force_polling=settings.watch_poll,
                poll_interval_ms=settings.watch_poll_interval_ms,
            )
            self._watcher.start()  # before the first pass, so no change between the two is missed
        await self.reconciler.reconcile()
        self._publish()
        self._tasks.append(asyncio.create_task(self.reconciler.run_forever(), name="hayhooks-reconcile"))
        self._tasks.append(asyncio.create_task(self._watch_abandoned_loads(), name="hayhooks-abandoned"))
        if settings.deploy_api:  # the server's deploy checker listens before the first deploy arrives
            self._tasks.append(asyncio.create_task(self.checker.warm_up(), name="hayhooks-checker"))
        if settings.watch and settings.rescan_interval > 0:
            rescans = rescan_periodically(self.reconciler.request, settings.rescan_interval)
            self._tasks.append(asyncio.create_task(rescans, name="hayhooks-rescan"))

    async def stop(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.reconciler.stop()
        self._stopped = True
        await asyncio.to_thread(self._board_writer.shutdown)
        await asyncio.to_thread(self.board.withdraw)

    def _publish(self) -> None:
        """Tell the other workers what this one serves now."""
        if self._stopped:
            return
        served = {
            status.name: {
                "revision": status.revision,
                "state": status.state,
                "attempts": status.attempts,
                "next_retry_at": status.next_retry_at,
            }
            for status in self.registry.statuses()
        }
        self._board_writer.submit(
            self.board.publish, served, ready=self.ready, abandoned_loads=self._abandoned, retiring=self.retiring
        )

    async def _watch_abandoned_loads(self) -> None:
        """Report loads that could not be stopped; retire once one of them burns a core."""
        while True:
            await asyncio.sleep(_ABANDONED_LOOK_SECONDS)
            loads = self.reconciler.abandoned.look()
            abandoned = [load.as_dict() for load in loads]
            if abandoned != self._abandoned:
                self._abandoned = abandoned
                self.metrics.abandoned_loads.set(len(loads))
                self._publish()
            burning = next((load for load in loads if load.burning), None)
            if burning is not None and not self.retiring:
                await self._retire(burning.name, burning.revision)

    async def _retire(self, name: str, revision: str) -> None:
        """Stop taking requests and exit once those in flight end, so the master starts a fresh worker;
        the revision that got stuck is marked, so that neither it nor its siblings load it again."""
        await asyncio.to_thread(self.board.mark_stuck, name, revision)
        self.metrics.retirements.inc()
        if not self.replaceable:
            logger.error(
                "pipeline %s: a load of revision %s burns a core and cannot be stopped; restart this server "
                "(it runs without a supervisor that would replace this worker)",
                name,
                revision,
            )
            return
        self.retiring = True
        self._publish()
        logger.error(
            "pipeline %s: a load of revision %s burns a core and cannot be stopped; this worker retires "
            "once its requests end, and its master starts a fresh one",
            name,
            revision,
        )
        os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's graceful shutdown: stop accepting, finish, exit


def _extend_python_path(paths: str) -> None:
    for path in filter(None, paths.split(os.pathsep)):
        if path not in sys.path:
            sys.path.append(path)
