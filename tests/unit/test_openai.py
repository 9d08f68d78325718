"""The OpenAI-compatible endpoints in-process, through the official ``openai`` client."""

import openai
import pytest

from tests.helpers import pipelines as samples
from tests.helpers.streaming_pipelines import ASYNC_CHAT, CHAT


@pytest.fixture
def chat_client(make_client, pipelines_dir):
    samples.write_wrapper(pipelines_dir, "chat", CHAT)
    samples.write_wrapper(pipelines_dir, "async_chat", ASYNC_CHAT)
    samples.write_wrapper(pipelines_dir, "greet", samples.GREET, samples.GREET_FILES)
    return make_client()


def sdk(client, **options) -> openai.OpenAI:
    return openai.OpenAI(
        base_url="http://testserver/v1", api_key="unused", http_client=client, max_retries=0, **options
    )


def test_models_are_the_pipelines_that_chat_or_respond(chat_client):
    assert [model.id for model in sdk(chat_client).models.list().data] == ["async_chat", "chat"]
    assert chat_client.get("/models").json() == chat_client.get("/v1/models").json()


def test_a_chat_completion_without_v1_answers_the_same(chat_client):
    body = {"model": "chat", "messages": [{"role": "user", "content": "hi"}]}
    answer = chat_client.post("/chat/completions", json=body).json()
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "chat answers hi"}


def test_the_async_variant_wins_gets_the_headers_and_its_generator_is_joined(chat_client):
    completion = sdk(chat_client, default_headers={"X-Caller": "ada"}).chat.completions.create(
        model="async_chat", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "async ada"


def test_an_async_generator_streams_when_asked(chat_client):
    messages = [{"role": "user", "content": "hi"}]
    chunks = list(sdk(chat_client).chat.completions.create(model="async_chat", messages=messages, stream=True))
    assert "".join(chunk.choices[0].delta.content or "" for chunk in chunks) == "async nobody"
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_a_whole_answer_is_streamed_as_one_chunk_when_a_stream_is_asked_for(make_client, pipelines_dir):
    samples.write_wrapper(pipelines_dir, "chat", CHAT.replace('if not body.get("stream"):', "if True:"))
    messages = [{"role": "user", "content": "hi"}]
    chunks = list(sdk(make_client()).chat.completions.create(model="chat", messages=messages, stream=True))
    assert [chunk.choices[0].delta.content for chunk in chunks] == ["chat answers hi", ""]


def test_unknown_model_and_missing_method_are_openai_errors(chat_client):
    client = sdk(chat_client)
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert unknown.value.body["type"] == "not_found_error"
    with pytest.raises(openai.InternalServerError) as missing:
        client.responses.create(model="greet", input="hi")
    assert missing.value.status_code == 501
    assert missing.value.response.headers["x-should-retry"] == "false"


def test_a_raising_pipeline_is_a_500_in_openai_shape(chat_client):
    with pytest.raises(openai.InternalServerError) as failed:
        sdk(chat_client).chat.completions.create(model="chat", messages=[{"role": "user", "content": "fail"}])
    assert failed.value.body == {
        "message": "Pipeline execution failed: the pipeline failed on purpose",
        "type": "server_error",
        "code": 500,
    }


def test_an_invalid_body_is_a_422_in_openai_shape(chat_client):
    answer = chat_client.post("/v1/chat/completions", json={"messages": "not a list"})
    assert answer.status_code == 422
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert "body.model" in answer.json()["error"]["message"]


def test_the_api_token_guards_the_openai_endpoints(make_client, pipelines_dir):
    samples.write_wrapper(pipelines_dir, "chat", CHAT)
    client = make_client(api_token="sesame")
    with pytest.raises(openai.AuthenticationError):
        sdk(client).models.list()
    authorised = openai.OpenAI(base_url="http://testserver/v1", api_key="sesame", http_client=client)
    assert [model.id for model in authorised.models.list().data] == ["chat"]


def test_every_field_of_the_request_reaches_the_pipeline_in_body(make_client, pipelines_dir):
    echo_body = CHAT.replace('return f"{model} answers {question}"', "return str(sorted(body))")
    samples.write_wrapper(pipelines_dir, "chat", echo_body)
    completion = sdk(make_client()).chat.completions.create(
        model="chat", messages=[{"role": "user", "content": "hi"}], temperature=0.5
    )
    assert completion.choices[0].message.content == "['messages', 'model', 'stream', 'temperature']"


def test_the_openapi_schema_documents_the_openai_routes(chat_client):
    paths = chat_client.get("/openapi.json").json()["paths"]
    assert {"/v1/models", "/v1/chat/completions", "/v1/responses", "/chat/completions"} <= set(paths)
    assert "501" in paths["/v1/chat/completions"]["post"]["responses"]


def test_a_client_can_stream_raw_sse_and_sees_done(chat_client):
    body = {"model": "chat", "messages": [{"role": "user", "content": "x"}], "stream": True}
    with chat_client.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["content-type"] == "text/event-stream"
        text = response.read().decode()
    events = [line for line in text.split("\n\n") if line]
    assert (
        events[0] == 'data: {"event":{"type":"status","data":{"description":"thinking","done":false,"hidden":false}}}'
    )
    assert events[-1] == "data: [DONE]"
