"""``create_app()``: the one factory every way of serving calls (gunicorn, uvicorn, fastapi, tests).

It builds one :class:`~hayhooks.worker.Worker` and the routes over narrow views of it. Nothing
starts here: threads, watchers and tasks start in the lifespan, inside the worker process, so an
app built in a preloading gunicorn master is still safe to fork.
"""

import contextlib
from collections.abc import AsyncIterator, Callable

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from hayhooks.http import contract, security
from hayhooks.http.middleware import RequestContextMiddleware
from hayhooks.http.routes import deploy, files, metrics, openai, run, status
from hayhooks.logs import configure_logging
from hayhooks.settings import Settings
from hayhooks.worker import Worker

TITLE = "Hayhooks"
DESCRIPTION = "Haystack pipelines served as REST APIs, coherently across every worker process."


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the ASGI app of one worker from ``settings`` (read from ``HAYHOOKS_*`` when not given)."""
    settings = settings or Settings()
    configure_logging(settings)
    worker = Worker(settings)
    services: list[Callable[[], contextlib.AbstractAsyncContextManager]] = []  # run inside the lifespan

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        await worker.start()
        try:
            async with contextlib.AsyncExitStack() as stack:
                for service in services:
                    await stack.enter_async_context(service())
                yield
        finally:
            await worker.stop()

    app = FastAPI(
        title=TITLE,
        description=DESCRIPTION,
        root_path=settings.root_path,
        lifespan=lifespan,
        max_body_size=settings.max_body_bytes,
    )
    if settings.cors_allow_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_allow_origins,
            allow_methods=settings.cors_allow_methods,
            allow_headers=settings.cors_allow_headers,
            allow_credentials=settings.cors_allow_credentials,
        )
    app.add_middleware(RequestContextMiddleware, access_log=settings.access_log)  # added last: outermost
    contract.install(app)
    app.state.worker = worker  # for the way of running: gunicorn's config marks it replaceable
    app.include_router(status.router(worker.registry, worker.readiness, worker.board))
    if settings.deploy_api:
        app.include_router(
            deploy.router(worker.deployer, worker.board, worker.metrics, guard=security.admin_guard(settings))
        )
    app.include_router(metrics.router(worker.metrics_store, worker.board))
    run_options = run.RunOptions(
        show_tracebacks=settings.show_tracebacks,
        timeout=settings.run_timeout,
        max_concurrent=settings.max_concurrent_runs,
        guard=security.run_guard(settings),
        max_upload_bytes=settings.max_upload_bytes,
        strict_inputs=settings.strict_inputs,
    )
    app.include_router(openai.router(worker.registry, run_options))
    app.include_router(files.router(worker.registry, worker.files, run_options))
    run.install(app, worker.registry, worker.metrics, run_options)
    if settings.mcp:
        services.append(_install_mcp(app, worker, settings, run_options))
    return app


def _install_mcp(
    app: FastAPI, worker: Worker, settings: Settings, run_options: "run.RunOptions"
) -> Callable[[], contextlib.AbstractAsyncContextManager]:
    """Serve MCP at /mcp and /sse; imported only when on (the SDK costs start-up time)."""
    from hayhooks.http.routes.mcp import McpService

    service = McpService(
        worker.registry,
        worker.board,
        worker.metrics,
        run_options,
        deployer=worker.deployer if settings.deploy_api else None,
        runtime_dir=worker.board.runtime_dir,
        json_response=settings.mcp_json_response,
        transport_check=security.run_check(settings),
        admin_check=security.admin_check(settings),
    )
    app.router.routes.extend(service.routes())
    return service.running
