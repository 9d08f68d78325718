"""Streaming and the OpenAI-compatible endpoints on real gunicorn with 3 workers, driven by raw HTTP
and by the official ``openai`` client."""

import http.client
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.helpers import pipelines as samples
from tests.helpers.openai_client import fresh_client, from_every_worker
from tests.helpers.streaming_pipelines import (
    CHAT,
    DOCS_CHAT,
    FAKE_LLM,
    PUBLISHED_README_AGENT,
    STREAMS,
    TRACED_HAYSTACK,
)
from tests.helpers.support import Server, free_port, start_gunicorn, wait_until

WORKERS = 3


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    folder = tmp_path_factory.mktemp("chat")
    pipelines = folder / "pipelines"
    samples.write_wrapper(pipelines, "streams", STREAMS)
    samples.write_wrapper(pipelines, "chat", CHAT)
    samples.write_wrapper(pipelines, "docs_chat", DOCS_CHAT)
    samples.write_wrapper(pipelines, "greet", samples.GREET, samples.GREET_FILES)
    samples.write_wrapper(pipelines, "my_agent", PUBLISHED_README_AGENT)
    samples.write_wrapper(pipelines, "traced", TRACED_HAYSTACK)
    samples.write_wrapper(pipelines, "gpt-4o-mini", FAKE_LLM)
    port = free_port()
    # The README agent's OpenAIChatGenerator calls "gpt-4o-mini" on this very server.
    openai_env = {"OPENAI_API_KEY": "unused", "OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1"}
    running = start_gunicorn(pipelines, folder, workers=WORKERS, port=port, **openai_env).wait_ready()
    yield running
    running.stop()


def test_models_lists_the_pipelines_that_chat(server):
    models = fresh_client(server).models.list()
    assert sorted(model.id for model in models.data) == ["chat", "docs_chat", "gpt-4o-mini", "my_agent"]


def test_the_published_readme_agent_loads_and_answers_unchanged(server):
    assert httpx.post(f"{server.url}/my_agent/run", json={"question": "hello"}, timeout=30).json() == {
        "result": "You said: hello"
    }
    stream = fresh_client(server).chat.completions.create(
        model="my_agent", messages=[{"role": "user", "content": "weather please"}], stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert text.strip() == "You said: weather please"


def test_chat_completions_answer_from_every_worker(server):
    def chat(client):
        return client.chat.completions.with_raw_response.create(
            model="chat", messages=[{"role": "user", "content": "hi"}]
        )

    answers = from_every_worker(server, chat)
    assert {completion.choices[0].message.content for completion in answers.values()} == {"chat answers hi"}


def test_a_streamed_chat_carries_events_reasoning_tool_calls_and_content(server):
    stream = fresh_client(server).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "there"}], stream=True
    )
    chunks = list(stream)
    assert chunks[0].model_extra["event"] == {
        "type": "status",
        "data": {"description": "thinking", "done": False, "hidden": False},
    }
    deltas = [chunk.choices[0].delta for chunk in chunks[1:]]
    assert deltas[0].model_extra["reasoning_content"] == "let me see"
    assert "".join(delta.content or "" for delta in deltas) == "Hello there"
    (call,) = [call for delta in deltas for call in delta.tool_calls or []]
    assert (call.id, call.function.name, call.function.arguments) == ("c1", "search", '{"q": 1}')
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_streamed_chat_ends_with_done_as_openai_does(server):
    body = {"model": "chat", "messages": [{"role": "user", "content": "x"}], "stream": True}
    text = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=10).text
    assert text.endswith("data: [DONE]\n\n")


def test_a_real_haystack_pipeline_streams_its_chunks_through_the_chat_endpoint(server):
    stream = fresh_client(server).chat.completions.create(
        model="docs_chat", messages=[{"role": "user", "content": "one two three"}], stream=True
    )
    contents = [chunk.choices[0].delta.content for chunk in stream if chunk.choices and chunk.choices[0].delta.content]
    assert "".join(contents) == "Echo: one two three "
    assert len(contents) == 4  # one chunk per word, as the component streamed them


def test_responses_whole_and_streamed(server):
    client = fresh_client(server)
    assert client.responses.create(model="chat", input="hi").output_text == "Hello"
    events = list(client.responses.create(model="chat", input="hi", stream=True))
    assert [event.type for event in events if event.type.endswith("delta")] == ["response.output_text.delta"] * 2
    assert events[-1].type == "response.completed"
    assert events[-1].response.output_text == "Hello"


def test_unknown_models_and_missing_methods_raise_the_sdks_exceptions(server):
    client = fresh_client(server)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.InternalServerError) as missing:
        client.chat.completions.create(model="greet", messages=[{"role": "user", "content": "hi"}])
    assert missing.value.status_code == 501
    assert "run_chat_completion" in missing.value.body["message"]
    with pytest.raises(openai.InternalServerError) as failed:
        client.chat.completions.create(model="chat", messages=[{"role": "user", "content": "fail"}])
    assert failed.value.status_code == 500
    assert failed.value.body["message"] == "Pipeline execution failed: the pipeline failed on purpose"


def read_first_chunk(
    server: Server, body: dict, path: str = "/streams/run"
) -> tuple[http.client.HTTPConnection, bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    connection.request("POST", path, json.dumps(body), {"content-type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200
    return connection, response.read1()


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_the_first_chunk_arrives_before_the_last_is_produced(server, tmp_path, mode):
    trace = tmp_path / "trace"
    connection, first = read_first_chunk(server, {"count": 5, "delay": 0.5, "mode": mode, "trace": str(trace)})
    assert first.startswith(b"chunk 0\n")
    assert lines(trace) < 5
    connection.close()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_client_that_disconnects_stops_the_pipeline(server, tmp_path, mode):
    trace = tmp_path / "trace"
    connection, _ = read_first_chunk(server, {"count": 400, "delay": 0.02, "mode": mode, "trace": str(trace)})
    connection.close()
    wait_until(lambda: _stable(trace), 5, message="the pipeline to stop")
    assert lines(trace) < 100  # running to the end would take 8 s and write 400


def test_a_haystack_pipeline_streaming_from_a_thread_stops_when_the_client_disconnects(server, tmp_path):
    """streaming_generator runs the pipeline in a thread: after the hang-up it stops at its next chunk."""
    trace = tmp_path / "trace"
    body = {"count": 400, "delay": 0.02, "trace": str(trace)}
    connection, first = read_first_chunk(server, body, "/traced/run")
    assert first.startswith(b"chunk 0\n")
    connection.close()
    wait_until(lambda: _stable(trace), 5, message="the pipeline to stop")
    assert lines(trace) < 100


def _stable(trace: Path) -> bool:
    """No item written within a window in which a running pipeline (one item per 0.02 s) writes 15."""
    before = lines(trace)
    time.sleep(0.3)
    return lines(trace) == before


def test_a_chat_pipeline_deployed_through_the_api_reaches_every_worker(server):
    files = {"pipeline_wrapper.py": CHAT}
    deployed = httpx.post(
        f"{server.url}/deploy_files", json={"name": "chat_deployed", "files": files, "wait": True}, timeout=30
    ).json()
    assert deployed["converged"], deployed

    def chat(client):
        return client.chat.completions.with_raw_response.create(
            model="chat_deployed", messages=[{"role": "user", "content": "hi"}]
        )

    answers = from_every_worker(server, chat)
    assert {completion.choices[0].message.content for completion in answers.values()} == {"chat_deployed answers hi"}
    httpx.post(f"{server.url}/undeploy/chat_deployed", params={"wait": True}, timeout=30)
