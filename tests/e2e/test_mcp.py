"""MCP on gunicorn with 3 workers, driven by the official ``mcp`` client: tools follow the directory
on every worker, calls run the served revision, failures are tool errors, SSE sessions work whichever
worker takes their messages, and ``hayhooks mcp run`` serves the same with tokens enforced."""

import asyncio
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from mcp import ClientSession, types
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client

from tests.helpers import pipelines as samples
from tests.helpers.streaming_pipelines import STREAMS
from tests.helpers.support import BIN, REPO, Server, free_port, server_env, start_gunicorn, wait_until

CORE_TOOLS = {"get_all_pipeline_statuses", "get_pipeline_status", "deploy_pipeline", "undeploy_pipeline"}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mcp")


@pytest.fixture(scope="module")
def server(folder: Path):
    pipelines = folder / "pipelines"
    samples.write_wrapper(pipelines, "whoami", samples.WHOAMI)
    samples.write_wrapper(pipelines, "raises", samples.RAISES)
    samples.write_wrapper(pipelines, "streams", STREAMS)
    samples.write_wrapper(pipelines, "hidden", samples.HIDDEN_FROM_MCP)
    started = start_gunicorn(pipelines, folder, 3, HAYHOOKS_RUNTIME_DIR=str(folder / "runtime"))
    try:
        yield started.wait_ready()
    finally:
        started.stop()


async def _on_mcp(url: str, work: Callable, headers: dict | None = None):
    async with (
        httpx.AsyncClient(headers=headers, timeout=30) as client,
        streamable_http_client(f"{url}/mcp", http_client=client) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        return await work(session)


def on_mcp(url: str, work: Callable, headers: dict | None = None):
    """``work(session)`` in a fresh Streamable HTTP session (new connections: any worker may answer)."""
    return asyncio.run(_on_mcp(url, work, headers))


def call(url: str, tool: str, arguments: dict, headers: dict | None = None) -> types.CallToolResult:
    return on_mcp(url, lambda session: session.call_tool(tool, arguments), headers)


def tool_names(url: str, headers: dict | None = None) -> set[str]:
    listed = on_mcp(url, lambda session: session.list_tools(), headers)
    return {tool.name for tool in listed.tools}


def text(result: types.CallToolResult) -> str:
    return "".join(part.text for part in result.content if isinstance(part, types.TextContent))


def pids_answering(url: str, tool: str, expected: set[int], timeout: float = 30) -> set[int]:
    """Call ``tool`` (a WHOAMI) until every pid of ``expected`` ran it."""
    seen: set[int] = set()

    def all_seen() -> bool:
        result = call(url, tool, {"tag": "hi"})
        assert not result.isError, text(result)
        match = re.fullmatch(r"hi from (\d+)", text(result))
        assert match, text(result)
        seen.add(int(match.group(1)))
        return seen == expected

    wait_until(all_seen, timeout, interval=0, message=f"{tool} answered by every worker")
    return seen


def test_every_pipeline_with_a_request_model_is_a_tool_unless_it_skips_mcp(server: Server):
    listed = on_mcp(server.url, lambda session: session.list_tools())
    tools = {tool.name: tool for tool in listed.tools}
    assert set(tools) == CORE_TOOLS | {"whoami", "raises", "streams"}
    assert tools["whoami"].description == "Answer the tag and this worker's pid."
    assert tools["whoami"].inputSchema["properties"]["tag"]["type"] == "string"
    assert tools["whoami"].inputSchema["required"] == ["tag"]


def test_a_tool_call_is_answered_by_every_worker(server: Server):
    assert pids_answering(server.url, "whoami", server.worker_pids()) == server.worker_pids()


def test_a_raising_pipeline_and_bad_arguments_are_tool_errors_not_dropped_sessions(server: Server):
    async def work(session: ClientSession) -> list[types.CallToolResult]:
        return [
            await session.call_tool("raises", {"value": 3}),
            await session.call_tool("whoami", {"tag": ["not", "text"]}),
            await session.call_tool("nope", {}),
            await session.call_tool("whoami", {"tag": "still here"}),  # the session lives on
        ]

    failed, invalid, unknown, after = on_mcp(server.url, work)
    assert failed.isError and "cannot handle 3" in text(failed)
    assert invalid.isError and "tag" in text(invalid)
    assert unknown.isError and "Unknown tool 'nope'" in text(unknown)
    assert not after.isError and text(after).startswith("still here from ")


def test_a_streaming_pipeline_returns_its_joined_text(server: Server):
    for mode in ("sync", "async", "sse"):
        result = call(server.url, "streams", {"count": 3, "mode": mode})
        assert not result.isError and text(result) == "chunk 0\nchunk 1\nchunk 2\n", mode


def test_core_status_tools(server: Server):
    statuses = text(call(server.url, "get_all_pipeline_statuses", {}))
    assert statuses.splitlines()[0] == "Available pipelines:" and "whoami" in statuses.splitlines()
    assert text(call(server.url, "get_pipeline_status", {"pipeline_name": "whoami"})).startswith(
        "Pipeline 'whoami' is deployed: True"
    )
    assert "is deployed: False" in text(call(server.url, "get_pipeline_status", {"pipeline_name": "absent"}))


def test_a_pipeline_deployed_through_the_tool_is_a_tool_on_every_worker(server: Server):
    deployed = call(server.url, "deploy_pipeline", {"name": "late", "files": samples.wrapper_files(samples.WHOAMI)})
    assert not deployed.isError and "served by all 3 workers" in text(deployed), text(deployed)
    assert pids_answering(server.url, "late", server.worker_pids()) == server.worker_pids()
    # Optional arguments are optional (the published tool fails with a KeyError without them);
    # a bad deploy is a tool error.
    refused = call(server.url, "deploy_pipeline", {"name": "late", "files": samples.wrapper_files(samples.WHOAMI)})
    assert refused.isError and "already exists" in text(refused)
    removed = call(server.url, "undeploy_pipeline", {"pipeline_name": "late"})
    assert not removed.isError
    wait_until(lambda: all("late" not in tool_names(server.url) for _ in range(6)), 15)


def test_the_tool_list_follows_the_directory_on_every_worker(server: Server, folder: Path):
    samples.write_wrapper(folder / "pipelines", "copied", samples.WHOAMI)
    wait_until(lambda: all("copied" in tool_names(server.url) for _ in range(6)), 15, message="copied listed")
    assert pids_answering(server.url, "copied", server.worker_pids()) == server.worker_pids()
    deployed = httpx.post(
        f"{server.url}/deploy-yaml",
        json={"name": "prompt", "source_code": samples.PROMPT_YAML, "skip_mcp": True, "wait": True},
        timeout=30,
    )
    assert deployed.status_code == 200, deployed.text
    assert httpx.post(f"{server.url}/prompt/run", json={"query": "q", "topic": "t"}, timeout=10).status_code == 200
    assert all("prompt" not in tool_names(server.url) for _ in range(6))


def test_an_sse_session_works_whichever_worker_takes_its_messages(server: Server):
    """Every POST of the session on a new connection, so most reach a worker without its stream."""

    def no_keep_alive(headers=None, timeout=None, auth=None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            headers=headers, timeout=timeout, auth=auth, limits=httpx.Limits(max_keepalive_connections=0)
        )

    async def session_answers() -> set[str]:
        async with (
            sse_client(f"{server.url}/sse", httpx_client_factory=no_keep_alive) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            results = [await session.call_tool("whoami", {"tag": "hi"}) for _ in range(6)]
        assert not any(result.isError for result in results)
        return {text(result) for result in results}

    for _ in range(3):
        answers = asyncio.run(asyncio.wait_for(session_answers(), 30))
        assert len(answers) == 1  # the worker that holds the stream ran every call


def test_a_message_for_an_unknown_session_is_refused_at_once(server: Server):
    answer = httpx.post(f"{server.url}/messages/?session_id={'0' * 32}", json={"jsonrpc": "2.0"}, timeout=10)
    assert answer.status_code == 404 and "no worker holds it" in answer.text


def test_sse_clients_are_told_when_the_tool_list_changes(server: Server):
    async def scenario() -> None:
        changed = asyncio.Event()

        async def on_message(message) -> None:
            if isinstance(message, types.ServerNotification) and isinstance(
                message.root, types.ToolListChangedNotification
            ):
                changed.set()

        async with (
            sse_client(f"{server.url}/sse") as (read, write),
            ClientSession(read, write, message_handler=on_message) as session,
        ):
            initialized = await session.initialize()
            assert initialized.capabilities.tools.listChanged
            deployed = await asyncio.to_thread(
                httpx.post,
                f"{server.url}/deploy_files",
                json={"name": "announced", "files": samples.wrapper_files(samples.WHOAMI), "wait": True},
                timeout=30,
            )
            assert deployed.status_code == 200, deployed.text
            await asyncio.wait_for(changed.wait(), 10)
            assert "announced" in {tool.name for tool in (await session.list_tools()).tools}

    asyncio.run(scenario())


def test_tool_calls_are_counted_in_metrics(server: Server):
    call(server.url, "whoami", {"tag": "counted"})
    body = httpx.get(f"{server.url}/metrics", timeout=10).text
    assert re.search(r'hayhooks_mcp_tool_calls_total\{outcome="ok",tool="whoami"\} [1-9]', body), body[-2000:]
    assert re.search(r'hayhooks_mcp_tool_calls_total\{outcome="error",tool="raises"\} [1-9]', body)


@pytest.fixture(scope="module")
def standalone(folder: Path):
    """``hayhooks mcp run --workers 2`` with both tokens set."""
    pipelines = folder / "standalone"
    samples.write_wrapper(pipelines, "whoami", samples.WHOAMI)
    port = free_port()
    env = server_env(
        pipelines,
        port,
        HAYHOOKS_API_TOKEN="run-token",
        HAYHOOKS_ADMIN_TOKEN="admin-token",
        HAYHOOKS_RUNTIME_DIR=str(folder / "standalone-runtime"),
    )
    command = [str(BIN / "hayhooks"), "mcp", "run", "--port", str(port), "--host", "127.0.0.1", "--workers", "2", "-j"]
    started = Server(command, env, port, folder / "mcp-run.log")
    try:
        yield started.wait_ready()
    finally:
        started.stop()


def test_hayhooks_mcp_run_serves_the_tools_and_enforces_the_tokens(standalone: Server):
    url = standalone.url
    refused = httpx.post(f"{url}/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"}, timeout=10)
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{url}/sse", timeout=10).status_code == 401
    user = {"Authorization": "Bearer run-token"}
    assert "whoami" in tool_names(url, user)
    assert not call(url, "whoami", {"tag": "hi"}, user).isError
    files = samples.wrapper_files(samples.WHOAMI)
    not_admin = call(url, "deploy_pipeline", {"name": "other", "files": files}, user)
    assert not_admin.isError and "HAYHOOKS_ADMIN_TOKEN" in text(not_admin)
    admin = {"Authorization": "Bearer admin-token"}
    assert not call(url, "deploy_pipeline", {"name": "other", "files": files}, admin).isError
    assert "other" in tool_names(url, user)


def test_the_cli_help_names_the_mcp_options():
    helped = subprocess.run([str(BIN / "hayhooks"), "mcp", "run", "--help"], capture_output=True, text=True, cwd=REPO)
    assert helped.returncode == 0 and all(
        option in helped.stdout for option in ("--json-response", "--workers", "--pipelines-dir", "--port")
    )
