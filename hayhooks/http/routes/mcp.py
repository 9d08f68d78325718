"""MCP on every worker: each served pipeline is a tool, at ``/mcp`` (Streamable HTTP) and ``/sse``.

``/mcp`` is stateless: every request is whole on its own, so any worker answers any request of a
client's session. The legacy HTTP+SSE transport keeps a stream open on one worker (``GET /sse``)
and takes the client's messages at ``POST /messages/``, on whichever worker the balancer picks: a
worker that does not hold the session relays the message to its siblings (see
:mod:`hayhooks.cluster.relay`), so the answer still arrives on the stream.

The tools are read from the serving table at each ``tools/list``, so they follow the pipelines
directory like ``/NAME/run``; SSE clients get ``notifications/tools/list_changed`` when they change.
A tool call runs the revision served when it arrived, with the run routes' timeout and limit.
"""

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import mcp.types as types
from fastapi.encoders import jsonable_encoder
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.sse import SseServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.shared.message import SessionMessage
from pydantic import BaseModel, Field, ValidationError
from starlette.datastructures import Headers
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Receive, Scope, Send

from hayhooks.cluster.board import ClusterView
from hayhooks.cluster.metrics import ServerMetrics
from hayhooks.cluster.relay import Relay, Relayed
from hayhooks.http.routes.deploy import DeployFilesRequest
from hayhooks.http.routes.openai import describe_problems
from hayhooks.http.routes.run import RunOptions, failure_detail
from hayhooks.http.security import TokenCheck
from hayhooks.http.streaming import is_stream, join_text
from hayhooks.pipelines.deployer import Deployer, DeployRejected
from hayhooks.pipelines.loader import LoadedPipeline, PipelineRunError
from hayhooks.pipelines.models import validate_inputs
from hayhooks.pipelines.registry import ServingTable

logger = logging.getLogger("hayhooks.mcp")

SERVER_NAME = "hayhooks"
MESSAGES_PATH = "/messages/"
_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
_DEPLOY_WAIT_SECONDS = 10.0


class _PipelineName(BaseModel):
    pipeline_name: str = Field(description="Name of the pipeline")


class _DeployPipeline(DeployFilesRequest):
    """deploy_pipeline's arguments: those of ``/deploy_files``; it always waits for every worker."""


class McpService:
    """The MCP server of one worker over its serving table, and the ASGI endpoints of its transports."""

    def __init__(
        self,
        registry: ServingTable,
        cluster: ClusterView,
        metrics: ServerMetrics,
        run_options: RunOptions,
        *,
        deployer: Deployer | None,
        runtime_dir: Path,
        json_response: bool,
        transport_check: TokenCheck | None,
        admin_check: TokenCheck | None,
    ) -> None:
        self.registry = registry
        self.cluster = cluster
        self.metrics = metrics
        self.run_options = run_options
        self.deployer = deployer  # None: HAYHOOKS_DEPLOY_API=false, no deploy tools
        self.transport_check = transport_check
        self.admin_check = admin_check
        self.server = self._build_server()
        self.json_response = json_response
        self.sessions: StreamableHTTPSessionManager | None = None  # one per lifespan: it runs only once
        self.sse = SseServerTransport(MESSAGES_PATH)
        self.relay = Relay(runtime_dir, self._deliver_here)
        self._sse_streams: set[Any] = set()  # write streams of this worker's SSE sessions
        self._tool_cache: dict[str, tuple[str, types.Tool]] = {}  # name -> (revision, tool)
        self._tools_seen: tuple[tuple[str, str], ...] = ()
        self._notifying: set[asyncio.Task] = set()
        self.registry.on_change(self._on_registry_change)

    # --- lifecycle ---

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Run the transports inside the worker's lifespan (never in a preloading master)."""
        self._tools_seen = self._tool_signature()
        self.sessions = StreamableHTTPSessionManager(self.server, json_response=self.json_response, stateless=True)
        await self.relay.start()
        try:
            async with self.sessions.run():
                yield
        finally:
            self.sessions = None
            await self.relay.stop()

    def routes(self) -> list[BaseRoute]:
        guarded = self._guarded
        return [
            Route("/mcp", _Asgi(guarded(self._serve_mcp)), methods=["GET", "POST", "DELETE"]),
            Route("/mcp/", _Asgi(guarded(self._serve_mcp)), methods=["GET", "POST", "DELETE"]),
            Route("/sse", _Asgi(guarded(self._serve_sse)), methods=["GET"]),
            Route(MESSAGES_PATH, _Asgi(guarded(self._post_message)), methods=["POST"]),
        ]

    # --- tools ---

    def tools(self) -> list[types.Tool]:
        core = self._core_tools()
        taken = {tool.name for tool in core}
        cache: dict[str, tuple[str, types.Tool]] = {}  # rebuilt each time: removed pipelines leave it
        for name, loaded in sorted(self.registry.serving().items()):
            if not _is_tool(loaded):
                continue
            if name in taken:
                logger.warning("pipeline %s is not an MCP tool: a core tool has its name", name)
                continue
            cached = self._tool_cache.get(name)
            if cached is None or cached[0] != loaded.revision:
                schema = loaded.request_model.model_json_schema()  # type: ignore[union-attr]
                cached = (loaded.revision, types.Tool(name=name, description=loaded.description, inputSchema=schema))
            cache[name] = cached
        self._tool_cache = cache
        return core + [tool for _, tool in cache.values()]

    def _core_tools(self) -> list[types.Tool]:
        name_schema = _PipelineName.model_json_schema()
        tools = [
            types.Tool(
                name="get_all_pipeline_statuses",
                description="Get the status of all pipelines and list available pipeline names.",
                inputSchema={"type": "object", "properties": {}},
            ),
            types.Tool(
                name="get_pipeline_status", description="Get status of a specific pipeline.", inputSchema=name_schema
            ),
        ]
        if self.deployer is not None:
            tools += [
                types.Tool(
                    name="deploy_pipeline",
                    description="Deploy a pipeline from files (pipeline_wrapper.py and other files); it is "
                    "served by every worker when this answers.",
                    inputSchema=_DeployPipeline.model_json_schema(),
                ),
                types.Tool(
                    name="undeploy_pipeline",
                    description="Undeploy a pipeline: remove its files, and so its tool and API from every worker.",
                    inputSchema=name_schema,
                ),
            ]
        return tools

    def _build_server(self) -> Server:
        server: Server = Server(SERVER_NAME)

        @server.list_tools()
        async def list_tools() -> list[types.Tool]:
            return self.tools()

        @server.call_tool(validate_input=False)  # validated by the revision's own request model
        async def call_tool(name: str, arguments: dict[str, Any] | None) -> types.CallToolResult:
            request = server.request_context.request
            headers = request.headers if request is not None else Headers()
            return await self.call(name, arguments or {}, headers)

        return server

    async def call(self, name: str, arguments: dict[str, Any], headers: Headers) -> types.CallToolResult:
        """Run tool ``name``; every failure is a tool error (``isError``), never a dropped session."""
        started = time.perf_counter()
        outcome = "error"
        try:
            core = _CORE_CALLS.get(name)
            if core is not None:
                outcome, text = await core(self, arguments, headers)
            else:
                outcome, text = await self._run_pipeline(name, arguments, headers)
        except Exception:
            logger.exception("BUG in hayhooks calling MCP tool %s", name)
            text = "Internal error in hayhooks; see the server log"
        self.metrics.count_tool_call(name, outcome, time.perf_counter() - started)
        return types.CallToolResult(content=[types.TextContent(type="text", text=text)], isError=outcome != "ok")

    async def _run_pipeline(self, name: str, arguments: dict[str, Any], headers: Headers) -> tuple[str, str]:
        loaded = self.registry.get(name)
        if loaded is None or not _is_tool(loaded):
            return "refused", f"Unknown tool '{name}': no pipeline of that name is served as a tool"
        assert loaded.request_model is not None and loaded.run is not None
        try:
            body = validate_inputs(loaded.request_model, arguments, strict=self.run_options.strict_inputs)
        except ValidationError as error:
            return "invalid", f"Invalid arguments for '{name}': {describe_problems(error.errors())}"
        fields = {upload.name: upload.default for upload in loaded.uploads}
        fields.update({field: getattr(body, field) for field in loaded.request_model.model_fields})
        slots, timeout = self.run_options.slots, self.run_options.timeout
        if slots.full():
            return "busy", slots.busy_message()
        slots.running += 1
        try:
            outcome = _result_text(loaded, loaded.run(fields, headers))
            result = await (asyncio.wait_for(outcome, timeout) if timeout else outcome)
        except PipelineRunError as failure:
            logger.error(
                "pipeline %s (revision %s) failed as an MCP tool", name, loaded.revision, exc_info=failure.error
            )
            detail = failure_detail(failure.error, show_tracebacks=self.run_options.show_tracebacks)
            return "error", detail
        except TimeoutError:
            return "timeout", f"'{name}' did not finish within {timeout:g}s (HAYHOOKS_RUN_TIMEOUT)"
        finally:
            slots.running -= 1
        return result

    # --- core tools ---

    async def _all_statuses(self, _arguments: dict[str, Any], _headers: Headers) -> tuple[str, str]:
        statuses = self.registry.statuses()
        lines = ["Available pipelines:", *(status.name for status in statuses if status.revision)]
        failed = [f"{status.name}: {status.error}" for status in statuses if status.error]
        if failed:
            lines += ["", "Failed to load:", *failed]
        return "ok", "\n".join(lines)

    async def _one_status(self, arguments: dict[str, Any], _headers: Headers) -> tuple[str, str]:
        try:
            name = _PipelineName.model_validate(arguments).pipeline_name
        except ValidationError:
            return "invalid", "get_pipeline_status needs the argument pipeline_name"
        status = self.registry.status(name)
        text = f"Pipeline '{name}' is deployed: {bool(status and status.revision)}"
        if status is not None:
            text += f"\nstate: {status.state}, revision: {status.revision}"
            if status.error:
                text += f"\nerror: {status.error}"
        return "ok", text

    async def _deploy(self, arguments: dict[str, Any], headers: Headers) -> tuple[str, str]:
        if refusal := self._deploy_refusal(headers):
            return "refused", refusal
        assert self.deployer is not None
        try:
            body = _DeployPipeline.model_validate(arguments)
        except ValidationError as error:
            return "invalid", f"Invalid arguments for deploy_pipeline: {describe_problems(error.errors())}"
        if not body.save_files:
            return "invalid", "save_files=false is not supported: every worker serves what the directory holds"
        try:
            revision = await self.deployer.deploy_files(body.name, body.files, overwrite=body.overwrite)
        except DeployRejected as error:
            self.metrics.count_deploy("deploy", "rejected")
            return "invalid", str(error)
        self.metrics.count_deploy("deploy", "success")
        workers, lagging = await self.cluster.wait_for(body.name, revision, body.wait_timeout or _DEPLOY_WAIT_SECONDS)
        served = f"served by all {len(workers)} workers" if not lagging else f"workers {lagging} still loading"
        return "ok", f"Pipeline '{body.name}' deployed successfully (revision {revision}; {served})"

    async def _undeploy(self, arguments: dict[str, Any], headers: Headers) -> tuple[str, str]:
        if refusal := self._deploy_refusal(headers):
            return "refused", refusal
        assert self.deployer is not None
        try:
            name = _PipelineName.model_validate(arguments).pipeline_name
        except ValidationError:
            return "invalid", "undeploy_pipeline needs the argument pipeline_name"
        try:
            await self.deployer.undeploy(name)
        except DeployRejected as error:
            self.metrics.count_deploy("undeploy", "rejected")
            return "invalid", str(error)
        self.metrics.count_deploy("undeploy", "success")
        await self.cluster.wait_for(name, None, _DEPLOY_WAIT_SECONDS)
        return "ok", f"Pipeline '{name}' undeployed"

    def _deploy_refusal(self, headers: Headers) -> str | None:
        if self.deployer is None:
            return "The deploy API is off on this server (HAYHOOKS_DEPLOY_API=false)"
        if self.admin_check is not None and not self.admin_check(headers.get("authorization")):
            return "Deploying needs the admin token (HAYHOOKS_ADMIN_TOKEN) as the bearer token of the MCP client"
        return None

    # --- list changes ---

    def _tool_signature(self) -> tuple[tuple[str, str], ...]:
        return tuple(
            (tool.name, json.dumps(tool.inputSchema, sort_keys=True) + tool.description) for tool in self.tools()
        )

    def _on_registry_change(self) -> None:
        signature = self._tool_signature()
        if signature == self._tools_seen:
            return
        self._tools_seen = signature
        changed = types.JSONRPCMessage(
            types.JSONRPCNotification(jsonrpc="2.0", method="notifications/tools/list_changed")
        )
        for stream in list(self._sse_streams):
            task = asyncio.get_running_loop().create_task(_send_quietly(stream, SessionMessage(changed)))
            self._notifying.add(task)
            task.add_done_callback(self._notifying.discard)

    # --- transports ---

    def _guarded(self, app: Callable) -> Callable:
        check = self.transport_check
        if check is None:
            return app

        async def with_token(scope: Scope, receive: Receive, send: Send) -> None:
            if not check(Headers(scope=scope).get("authorization")):
                refusal = JSONResponse(
                    {"detail": "Missing or invalid bearer token"}, 401, headers={"WWW-Authenticate": "Bearer"}
                )
                await refusal(scope, receive, send)
                return
            await app(scope, receive, send)

        return with_token

    async def _serve_mcp(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.sessions is None:  # only outside the lifespan
            await Response("MCP is not running", 503)(scope, receive, send)
            return
        await self.sessions.handle_request(scope, receive, send)

    async def _serve_sse(self, scope: Scope, receive: Receive, send: Send) -> None:
        async with self.sse.connect_sse(scope, receive, send) as (read, write):
            self._sse_streams.add(write)
            try:
                options = self.server.create_initialization_options(NotificationOptions(tools_changed=True))
                await self.server.run(read, write, options)
            finally:
                self._sse_streams.discard(write)

    async def _post_message(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A message of an SSE session: delivered here if this worker holds the session, else relayed."""
        body = await _read_body(receive, _MAX_MESSAGE_BYTES)
        if body is None:
            await Response("Message larger than 4 MiB", 413)(scope, receive, send)
            return
        head = {
            "path": scope["path"],
            "root_path": scope.get("root_path", ""),
            "query": scope.get("query_string", b"").decode("latin-1"),
            "headers": [[key.decode("latin-1"), value.decode("latin-1")] for key, value in scope["headers"]],
        }
        answer = await self._deliver_here(Relayed(head, body))
        if answer.head["status"] == 404:
            workers = await asyncio.to_thread(lambda: [worker["pid"] for worker in self.cluster.view()["workers"]])
            relayed = await self.relay.ask(workers, Relayed(head, body), declined=lambda a: a.head["status"] == 404)
            if relayed is not None:
                answer = relayed
            else:
                answer = Relayed(
                    {"status": 404, "headers": [["content-type", "text/plain; charset=utf-8"]]},
                    b"Could not find session: no worker holds it (it ended, or its worker restarted); "
                    b"open a new one at /sse",
                )
        headers = [(key.encode("latin-1"), value.encode("latin-1")) for key, value in answer.head["headers"]]
        await send({"type": "http.response.start", "status": answer.head["status"], "headers": headers})
        await send({"type": "http.response.body", "body": answer.body})

    async def _deliver_here(self, request: Relayed) -> Relayed:
        """Hand a message to this worker's SSE transport; its answer (404: the session is not here)."""
        scope: Scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "POST",
            "scheme": "http",
            "path": request.head["path"],
            "raw_path": request.head["path"].encode(),
            "root_path": request.head["root_path"],
            "query_string": request.head["query"].encode("latin-1"),
            "headers": [(key.encode("latin-1"), value.encode("latin-1")) for key, value in request.head["headers"]],
            "client": None,
            "server": None,
        }
        sent = False

        async def receive() -> Message:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": request.body, "more_body": False}

        answer = Relayed({"status": 500, "headers": []}, b"")

        async def send(message: Message) -> None:
            if message["type"] == "http.response.start":
                answer.head["status"] = message["status"]
                answer.head["headers"] = [
                    [key.decode("latin-1"), value.decode("latin-1")] for key, value in message.get("headers", [])
                ]
            elif message["type"] == "http.response.body":
                answer.body += message.get("body", b"")

        await self.sse.handle_post_message(scope, receive, send)
        return answer


_CORE_CALLS: dict[str, Callable[..., Any]] = {
    "get_all_pipeline_statuses": McpService._all_statuses,
    "get_pipeline_status": McpService._one_status,
    "deploy_pipeline": McpService._deploy,
    "undeploy_pipeline": McpService._undeploy,
}


def _is_tool(loaded: LoadedPipeline) -> bool:
    return loaded.request_model is not None and loaded.run is not None and not loaded.skip_mcp


async def _result_text(loaded: LoadedPipeline, running: Any) -> tuple[str, str]:
    """The outcome and text a run gives an agent: text as is, a stream joined, anything else as JSON."""
    result = await running
    if is_stream(result):
        return "ok", await join_text(result)
    if isinstance(result, Response):
        if result.media_type and result.media_type.startswith(("text/", "application/json")) and result.body:
            return "ok", bytes(result.body).decode("utf-8", "replace")
        return "error", f"'{loaded.name}' answers with a file ({result.media_type}), which an MCP tool cannot carry"
    if isinstance(result, str):
        return "ok", result
    return "ok", json.dumps(jsonable_encoder(result))


async def _send_quietly(stream: Any, message: SessionMessage) -> None:
    with contextlib.suppress(Exception):  # the session ended meanwhile
        await stream.send(message)


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The whole request body, or ``None`` once it passes ``limit`` bytes."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


class _Asgi:
    """A raw ASGI endpoint for a Starlette route (a plain function would be taken for a request handler)."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)
