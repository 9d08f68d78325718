"""``POST /{name}/run`` for every served pipeline, rebuilt whenever the registry changes.

Each route is bound to one loaded revision: a request runs to the end on the revision whose route
matched it, even if a newer one is swapped in meanwhile.
"""

import asyncio
import functools
import logging
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import Body, Depends, FastAPI, HTTPException, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field, create_model
from starlette._utils import get_route_path
from starlette.routing import BaseRoute, Match
from starlette.types import Message, Receive, Scope, Send

from hayhooks.cluster.metrics import RunMetrics, ServerMetrics
from hayhooks.errors import redact_paths
from hayhooks.http import contract
from hayhooks.http.forms import FORM_MEDIA_TYPES, close_form, form_arguments, form_body, is_form, read_form
from hayhooks.http.security import Guard
from hayhooks.http.streaming import PipelineStream, PlainText, ServerSentEvents, is_stream
from hayhooks.pipelines.loader import LoadedPipeline, PipelineRunError
from hayhooks.pipelines.registry import ServingTable
from hayhooks.pipelines.sse import SSEStream

logger = logging.getLogger("hayhooks.run")

PIPELINE_FAILED = "Pipeline execution failed:"  # a 500 the pipeline's own code caused
SERVER_BUG = "Internal server error: hayhooks failed, not the pipeline (see the server log)"
REVISION_HEADER = "x-hayhooks-revision"  # which revision answered: convergence can be checked, not hoped for
WORKER_HEADER = "x-hayhooks-worker"  # the pid of the worker that answered


class RunSlots:
    """The runs this worker has going, against HAYHOOKS_MAX_CONCURRENT_RUNS; every protocol takes from it."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.running = 0

    def full(self) -> bool:
        return self.limit is not None and self.running >= self.limit

    def busy_message(self) -> str:
        return f"This worker already runs {self.limit} pipelines (HAYHOOKS_MAX_CONCURRENT_RUNS); retry"


@dataclass(frozen=True)
class RunOptions:
    """How run routes behave: from the settings, the same for every pipeline."""

    show_tracebacks: bool = False
    timeout: float | None = None  # seconds before a run answers 504
    max_concurrent: int | None = None  # runs at once in this worker before 503
    guard: Guard | None = None  # the API token check, when one is set
    max_upload_bytes: int | None = None  # largest form body (with files) a run accepts, 413 above
    strict_inputs: bool = True  # values validated as the schema types them (no "10" or false for an int)
    slots: RunSlots = field(init=False)  # shared by /NAME/run and MCP tool calls

    def __post_init__(self) -> None:
        object.__setattr__(self, "slots", RunSlots(self.max_concurrent))


def failure_detail(error: BaseException, *, show_tracebacks: bool) -> str:
    """What a client is told of an error the pipeline raised (a traceback only when asked for)."""
    # The published form is the message alone; exit() and the like say what they are (str is "" or a code).
    said = str(error) if isinstance(error, Exception) else f"{type(error).__name__}: {error}".rstrip(": ")
    if show_tracebacks:
        return f"{PIPELINE_FAILED} {said}\n{''.join(traceback.format_exception(error))}"
    return f"{PIPELINE_FAILED} {redact_paths(said)}"


def envelope_model(loaded: LoadedPipeline) -> type[BaseModel]:
    """``{"result": ...}``: the body every run answers, around what the pipeline returned."""
    result = (loaded.result_type, Field(..., description=loaded.result_description))
    return create_model(f"{loaded.name}RunResponse", result=result)


def _answering(loaded: LoadedPipeline, options: RunOptions) -> Callable[[dict[str, Any], Request, Response], Any]:
    """What a run route does once it has the arguments: run this revision and shape its answer."""
    headers = {REVISION_HEADER: loaded.revision, WORKER_HEADER: str(os.getpid())}
    label = f"pipeline {loaded.name} (revision {loaded.revision})"
    describe_failure = functools.partial(failure_detail, show_tracebacks=options.show_tracebacks)

    async def answer(arguments: dict[str, Any], request: Request, response: Response) -> Any:
        response.headers.update(headers)
        running = loaded.run(arguments, request.headers)
        try:
            result = await (asyncio.wait_for(running, options.timeout) if options.timeout else running)
        except PipelineRunError as failure:
            if isinstance(failure.error, HTTPException):  # the pipeline chose its own answer
                raise failure.error from None
            logger.error("%s failed", label, exc_info=failure.error)
            raise HTTPException(status_code=500, detail=describe_failure(failure.error)) from failure.error
        except TimeoutError as error:
            logger.warning("pipeline %s timed out after %ss", loaded.name, options.timeout)
            raise HTTPException(
                504, f"Pipeline '{loaded.name}' did not finish within {options.timeout:g}s (HAYHOOKS_RUN_TIMEOUT)"
            ) from error
        except Exception as error:
            logger.exception("BUG in hayhooks running pipeline %s (revision %s)", loaded.name, loaded.revision)
            raise HTTPException(status_code=500, detail=SERVER_BUG) from error
        if is_stream(result):
            sse = isinstance(result, SSEStream)
            source, framing = (result.stream, ServerSentEvents()) if sse else (result, PlainText())
            return PipelineStream(source, framing, headers=headers, describe_error=describe_failure, label=label)
        if isinstance(result, Response):  # a file or a response of the pipeline's own: passed through
            for name, value in headers.items():
                result.headers.setdefault(name, value)
            return result
        if loaded.streams == "always":  # declared to only stream, yet returned a value: JSON all the same
            return JSONResponse(jsonable_encoder({"result": result}), headers=headers)
        return {"result": result}

    return answer


def run_route(loaded: LoadedPipeline, options: RunOptions) -> APIRoute:
    """The route that serves one revision of one pipeline with a JSON body (and documents its form body)."""
    request_model = loaded.request_model
    required = any(field.is_required() for field in request_model.model_fields.values())
    default = ... if required else None
    fields = tuple(request_model.model_fields)
    files = {upload.name: upload.default for upload in loaded.uploads}
    files_required = [upload.name for upload in loaded.uploads if upload.required]
    answer = _answering(loaded, options)
    answers_json = loaded.streams != "always"  # else the 200 documents only the stream, as the client reads it
    streamed = {} if loaded.streams == "never" else _STREAMED

    strict = options.strict_inputs
    media_types = (contract.JSON, *FORM_MEDIA_TYPES) if files else (contract.JSON,)

    async def run_pipeline(request: Request, response: Response, body: request_model = Body(default)) -> Any:  # type: ignore[valid-type]
        if files_required:
            raise RequestValidationError([_missing_file(name) for name in files_required])
        if body is None:
            body = request_model()
        elif strict:  # FastAPI validated leniently, as the published Hayhooks does: now as the schema says
            body = contract.validated_body(request_model, await request.body(), strict=True)
        return await answer({**files, **{name: getattr(body, name) for name in fields}}, request, response)

    return APIRoute(
        f"/{loaded.name}/run",
        run_pipeline,
        methods=["POST"],
        name=f"{loaded.name}_run",
        response_model=envelope_model(loaded) if answers_json else None,
        response_class=JSONResponse if answers_json else PlainTextResponse,
        summary=f"Run pipeline '{loaded.name}'",
        description=loaded.description or None,
        tags=["pipelines"],
        operation_id=f"{loaded.name}_run",
        dependencies=[*([Depends(options.guard)] if options.guard else []), Depends(contract.takes(*media_types))],
        responses={**_RUN_ERRORS, **streamed, **(UPLOAD_ERRORS if files else {})},
        openapi_extra=form_body(loaded.request_model, loaded.uploads) if files else None,
    )


def _missing_file(name: str) -> dict[str, Any]:
    return {"type": "missing", "loc": ("body", name), "msg": "Field required: upload the file as multipart/form-data"}


def upload_route(loaded: LoadedPipeline, options: RunOptions) -> APIRoute:
    """The route of the same revision for a form body (multipart with files): documented by :func:`run_route`."""
    answer = _answering(loaded, options)

    async def run_with_files(request: Request, response: Response) -> Any:
        form = await read_form(request, options.max_upload_bytes)
        arguments = form_arguments(form, loaded.request_model, loaded.uploads, strict=options.strict_inputs)
        return await answer(arguments, request, response)

    return APIRoute(
        f"/{loaded.name}/run",
        run_with_files,
        methods=["POST"],
        name=f"{loaded.name}_run_with_files",
        include_in_schema=False,
        dependencies=[Depends(options.guard)] if options.guard else None,
        max_body_size=options.max_upload_bytes,
    )


_STREAMED: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The result, or a stream of it (text/plain; text/event-stream for an SSEStream)",
        "content": {"text/plain": {"schema": {"type": "string"}}, "text/event-stream": contract.SSE_EVENT},
    }
}
UPLOAD_ERRORS: dict[int | str, dict[str, Any]] = {
    413: {"description": "The upload is larger than HAYHOOKS_MAX_UPLOAD_BYTES"},
}
_RUN_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "HAYHOOKS_API_TOKEN is set and the request has no valid bearer token"},
    404: {"description": "The pipeline is not deployed"},
    500: {"description": "The pipeline raised an error"},
    503: {"description": "This worker runs HAYHOOKS_MAX_CONCURRENT_RUNS already"},
    504: {"description": "The run took longer than HAYHOOKS_RUN_TIMEOUT"},
}


@dataclass(frozen=True)
class _Served:
    """One served revision's route, and the metrics its requests count into."""

    revision: str
    route: APIRoute
    metrics: RunMetrics
    upload_route: APIRoute | None = None  # the same revision for form bodies, when it takes files

    def route_for(self, scope: Scope) -> APIRoute:
        return self.upload_route if self.upload_route is not None and is_form(scope) else self.route


class PipelineRoutes(BaseRoute):
    """One fixed route that dispatches ``/{name}/run`` to the route of the revision served now.

    The table is a dict replaced on every registry change, so a lookup is O(1) and a swap is one
    assignment; the revision chosen when a request matched is the one that handles it.
    """

    def __init__(self, registry: ServingTable, metrics: ServerMetrics, options: RunOptions) -> None:
        self.registry = registry
        self.metrics = metrics
        self.options = options
        self._table: dict[str, _Served] = {}  # path -> what serves it

    def routes(self) -> list[APIRoute]:
        return [served.route for served in self._table.values()]

    def refresh(self) -> bool:
        """Build routes for new revisions and drop those of removed ones; return whether any changed."""
        table: dict[str, _Served] = {}
        for name, loaded in sorted(self.registry.serving().items()):
            if loaded.run is None:  # a wrapper that only chats
                continue
            path = f"/{name}/run"
            cached = self._table.get(path)
            if cached and cached.revision == loaded.revision:
                table[path] = cached
            else:
                uploads = upload_route(loaded, self.options) if loaded.uploads else None
                table[path] = _Served(
                    loaded.revision, run_route(loaded, self.options), self.metrics.for_pipeline(name), uploads
                )
        replaced = any(table.get(path) is not served for path, served in self._table.items())
        changed = replaced or table.keys() != self._table.keys()
        self._table = table
        if replaced:
            release_endpoint_caches()
        return changed

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        served = self._table.get(get_route_path(scope))
        if served is None:
            return Match.NONE, {}
        match, child_scope = served.route_for(scope).matches(scope)
        return match, {**child_scope, _SERVED_KEY: served}

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the matched revision's route, counting the request in its pipeline's metrics."""
        served: _Served = scope[_SERVED_KEY]
        slots = self.options.slots
        if slots.full():
            served.metrics.finished(503, 0.0)
            busy = JSONResponse({"detail": slots.busy_message()}, status_code=503, headers={"Retry-After": "1"})
            await busy(scope, receive, send)
            return
        status = 500

        async def send_and_note_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        slots.running += 1
        served.metrics.in_flight.inc()
        started = time.perf_counter()
        try:
            await served.route_for(scope).handle(scope, receive, send_and_note_status)
        finally:
            close_form(scope)
            slots.running -= 1
            served.metrics.in_flight.dec()
            served.metrics.finished(status, time.perf_counter() - started)


_SERVED_KEY = "hayhooks.served"
_FASTAPI_CALLABLE_CACHES = ("_is_gen_callable_cached", "_is_async_gen_callable_cached", "_is_coroutine_callable_cached")


def release_endpoint_caches() -> None:
    """Let replaced revisions go: FastAPI remembers the last 4096 endpoint functions it classified
    (``fastapi.dependencies.models``), and an endpoint of ours holds its revision, its wrapper and
    the wrapper's module. Cleared whenever a revision leaves the table; they refill in one call."""
    from fastapi.dependencies import models

    for name in _FASTAPI_CALLABLE_CACHES:
        cache_clear = getattr(getattr(models, name, None), "cache_clear", None)
        if cache_clear is not None:
            cache_clear()


def install(app: FastAPI, registry: ServingTable, metrics: ServerMetrics, options: RunOptions) -> PipelineRoutes:
    """Put the pipeline routes first in ``app`` and make ``/openapi.json`` follow them."""
    routes = PipelineRoutes(registry, metrics, options)
    app.router.routes.insert(0, routes)
    fixed = [route for route in app.routes if route is not routes]

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = contract.document_body_errors(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=[*fixed, *routes.routes()],
                )
            )
        return app.openapi_schema

    def on_change() -> None:
        if routes.refresh():
            app.openapi_schema = None

    app.openapi = openapi  # type: ignore[method-assign]
    registry.on_change(on_change)
    return routes
