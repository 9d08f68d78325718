"""``create_app()``: the one factory every way of serving calls (gunicorn, uvicorn, fastapi, tests).

It builds the parts of one worker: directory → reconciler → registry → routes. Nothing starts
here: threads, watchers and tasks start in the lifespan, inside the worker process, so an app
built in a preloading gunicorn master is still safe to fork.
"""

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

from fastapi import Depends, FastAPI
from fastapi.middleware.cors import CORSMiddleware

from hayhooks.logs import configure_logging
from hayhooks.pipelines.reconciler import Reconciler
from hayhooks.pipelines.registry import PipelineRegistry
from hayhooks.pipelines.source import PipelineSource
from hayhooks.pipelines.watcher import DirectoryWatcher, rescan_periodically
from hayhooks.server import metrics, security
from hayhooks.server.cluster import WorkerBoard, runtime_dir
from hayhooks.server.deployer import Deployer
from hayhooks.server.middleware import RequestContextMiddleware
from hayhooks.server.routes import deploy, status
from hayhooks.server.routes import metrics as metrics_routes
from hayhooks.server.routes import pipelines as pipeline_routes
from hayhooks.server.runtime import Runtime
from hayhooks.settings import Settings, get_settings

TITLE = "Hayhooks"
DESCRIPTION = "Haystack pipelines served as REST APIs, coherently across every worker process."


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app of one worker from the settings (``HAYHOOKS_*`` env vars by default)."""
    settings = settings or get_settings()
    configure_logging(settings)
    _extend_python_path(settings.additional_python_path)

    source = PipelineSource(Path(settings.pipelines_dir).absolute())
    registry = PipelineRegistry()
    reconciler = Reconciler(source, registry, load_timeout=settings.load_timeout, load_threads=settings.load_threads)
    board = WorkerBoard(runtime_dir(settings), port=settings.port)
    runtime = Runtime(
        settings=settings,
        source=source,
        registry=registry,
        reconciler=reconciler,
        board=board,
        deployer=Deployer(source, reconciler, board),
    )

    app = FastAPI(
        title=TITLE,
        description=DESCRIPTION,
        root_path=settings.root_path,
        lifespan=_lifespan,
        max_body_size=settings.max_body_bytes,
    )
    app.state.hayhooks = runtime
    if settings.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allow_origins,
            allow_methods=settings.cors_allow_methods,
            allow_headers=settings.cors_allow_headers,
            allow_credentials=settings.cors_allow_credentials,
        )
    app.add_middleware(RequestContextMiddleware, access_log=settings.access_log)  # added last: outermost
    app.include_router(status.router)
    if settings.deploy_api:
        guard = security.admin_guard(settings)
        app.include_router(deploy.router, dependencies=[Depends(guard)] if guard else None)
    app.include_router(metrics_routes.router)
    metrics.observe_registry(registry)

    pipeline_routes.install(
        app,
        registry,
        pipeline_routes.RunOptions(
            show_tracebacks=settings.show_tracebacks,
            timeout=settings.run_timeout,
            max_concurrent=settings.max_concurrent_runs,
            guard=security.run_guard(settings),
        ),
    )
    registry.on_change(lambda: _publish(runtime))
    return app


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start this worker's watcher and reconciler; load the directory before serving."""
    runtime: Runtime = app.state.hayhooks
    settings = runtime.settings
    loop = asyncio.get_running_loop()
    await asyncio.to_thread(runtime.source.ensure_exists)
    metrics.worker_started()
    _publish(runtime)

    watcher = DirectoryWatcher(
        runtime.source.root,
        lambda: loop.call_soon_threadsafe(runtime.reconciler.request),
        quiet_ms=settings.watch_debounce_ms,
        force_polling=settings.watch_poll,
        poll_interval_ms=settings.watch_poll_interval_ms,
    )
    if settings.watch:
        watcher.start()  # before the first pass, so no change between the two is missed
    await runtime.reconciler.reconcile()
    _publish(runtime)

    tasks = [asyncio.create_task(runtime.reconciler.run_forever(), name="hayhooks-reconcile")]
    if settings.watch and settings.rescan_interval > 0:
        tasks.append(
            asyncio.create_task(
                rescan_periodically(runtime.reconciler.request, settings.rescan_interval), name="hayhooks-rescan"
            )
        )
    try:
        yield
    finally:
        watcher.stop()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        runtime.board.withdraw()


def _publish(runtime: Runtime) -> None:
    """Tell the other workers what this one serves now."""
    runtime.board.publish(
        {status.name: {"revision": status.revision, "state": status.state} for status in runtime.registry.statuses()},
        ready=runtime.reconciler.first_pass_done.is_set(),
    )


def _extend_python_path(paths: str) -> None:
    for path in filter(None, paths.split(os.pathsep)):
        if path not in sys.path:
            sys.path.append(path)
