"""``/NAME/run`` in-process: streamed results, request headers, passed-through responses, YAML result shapes."""

import pytest

from tests.helpers import pipelines as samples
from tests.helpers.streaming_pipelines import STREAMS

HEADERS_TYPO = """
from starlette.datastructures import Headers

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        pass

    def run_api(self, text: str, headers: Headers) -> str:
        return text
"""

HEADERS_AS_INPUT = """
from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        pass

    def run_api(self, headers: dict[str, str]) -> dict:
        return headers
"""

FILE_ANSWER = """
from fastapi.responses import PlainTextResponse

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        pass

    def run_api(self, name: str) -> PlainTextResponse:
        return PlainTextResponse(f"file for {name}", headers={"content-disposition": "attachment; filename=a.txt"})
"""

ONLY_STREAMS = """
from collections.abc import Generator

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        pass

    def run_api(self, count: int = 2) -> Generator:
        if count == 0:  # the annotation says otherwise: a value all the same
            return "nothing"
        return (f"line {index}\\n" for index in range(count))
"""


@pytest.fixture
def streams(make_client, pipelines_dir):
    samples.write_wrapper(pipelines_dir, "streams", STREAMS)
    return make_client()


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_a_returned_generator_streams_as_plain_text(streams, mode):
    with streams.stream("POST", "/streams/run", json={"count": 3, "mode": mode}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert response.headers["x-hayhooks-revision"]
        assert response.read() == b"chunk 0\nchunk 1\nchunk 2\n"


def test_an_sse_stream_sends_one_data_event_per_item(streams):
    response = streams.post("/streams/run", json={"count": 2, "mode": "sse"})
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.text == "data: chunk 0\n\ndata: chunk 1\n\n"


def test_the_same_pipeline_answers_whole_results_as_json(streams):
    assert streams.post("/streams/run", json={"count": 2, "mode": "whole"}).json() == {"result": "chunk 0\nchunk 1\n"}


@pytest.mark.parametrize("mode", ["sync", "async"])
def test_an_error_mid_stream_ends_the_stream_with_the_error(streams, mode, caplog):
    response = streams.post("/streams/run", json={"count": 3, "mode": mode, "fail_after": 1})
    assert response.status_code == 200  # the status went out with the first chunk
    assert response.text == "chunk 0\n\nPipeline execution failed: boom mid-stream\n"
    assert "the stream failed" in caplog.text


def test_an_error_mid_sse_stream_is_an_error_event(streams):
    response = streams.post("/streams/run", json={"count": 3, "mode": "sse", "fail_after": 1})
    assert (
        response.text
        == 'data: chunk 0\n\nevent: error\ndata: {"error": "Pipeline execution failed: boom mid-stream"}\n\n'
    )


def test_a_streaming_return_annotation_builds_the_schema_and_documents_the_stream(streams):
    operation = streams.get("/openapi.json").json()["paths"]["/streams/run"]["post"]
    content = operation["responses"]["200"]["content"]
    assert {"application/json", "text/plain", "text/event-stream"} <= set(content)
    assert content["application/json"]["schema"]["$ref"].endswith("streamsRunResponse")


def test_a_run_declared_to_only_stream_documents_no_json_answer(make_client, pipelines_dir):
    """A generated client reads a 200 by its first documented media type: JSON would fail on the text."""
    samples.write_wrapper(pipelines_dir, "lines", ONLY_STREAMS)
    client = make_client()
    content = client.get("/openapi.json").json()["paths"]["/lines/run"]["post"]["responses"]["200"]["content"]
    assert list(content) == ["text/plain", "text/event-stream"]
    assert client.post("/lines/run", json={"count": 2}).text == "line 0\nline 1\n"
    assert client.post("/lines/run", json={"count": 0}).json() == {"result": "nothing"}


def test_headers_reach_a_run_method_that_declares_them_and_are_no_input(make_client, pipelines_dir):
    from tests.helpers.streaming_pipelines import CHAT

    samples.write_wrapper(pipelines_dir, "chat", CHAT)
    client = make_client()
    response = client.post("/chat/run", json={"text": "hi"}, headers={"X-Caller": "ada"})
    assert response.json() == {"result": "hi from ada"}
    schema = client.get("/openapi.json").json()["components"]["schemas"]["chatRunRequest"]
    assert set(schema["properties"]) == {"text"}
    # a client cannot set them through the body either
    assert client.post("/chat/run", json={"text": "hi", "headers": {"x-caller": "eve"}}).json() == {
        "result": "hi from None"
    }


def test_headers_declared_without_a_default_fail_the_load_with_the_form_to_use(make_client, pipelines_dir):
    samples.write_wrapper(pipelines_dir, "typo", HEADERS_TYPO)
    status = make_client().get("/status/typo").json()["details"]
    assert status["state"] == "failed"
    assert "headers: Headers | None = None" in status["error"]


def test_an_input_that_is_merely_called_headers_stays_an_input(make_client, pipelines_dir):
    samples.write_wrapper(pipelines_dir, "inputs", HEADERS_AS_INPUT)
    response = make_client().post("/inputs/run", json={"headers": {"a": "b"}})
    assert response.json() == {"result": {"a": "b"}}


def test_a_returned_response_is_passed_through_with_its_headers(make_client, pipelines_dir):
    samples.write_wrapper(pipelines_dir, "file", FILE_ANSWER)
    response = make_client().post("/file/run", json={"name": "ada"})
    assert response.text == "file for ada"
    assert response.headers["content-disposition"] == "attachment; filename=a.txt"
    assert response.headers["x-hayhooks-revision"]


def test_yaml_results_are_haystacks_by_component_unless_outputs_are_asked_for(make_client, pipelines_dir):
    samples.write_yaml(pipelines_dir, "prompt", samples.PROMPT_YAML)
    body = {"query": "why?", "topic": "sky"}
    raw = make_client().post("/prompt/run", json=body)
    assert raw.json() == {"result": {"builder": {"prompt": "Question about sky: why?"}}}
    named = make_client(yaml_result="outputs").post("/prompt/run", json=body)
    assert named.json() == {"result": {"prompt": "Question about sky: why?"}}
