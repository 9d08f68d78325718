"""The HTTP contract in one process: strict inputs, YAML input_schema, 415, documented body errors, 405's Allow."""

from pathlib import Path

import pytest

from hayhooks.pipelines.loader import PipelineLoadError, build_yaml_pipeline
from tests.helpers import pipelines as samples
from tests.helpers.mcp_requests import MCP_HEADERS

TYPED = """
import datetime
import enum
from typing import Annotated

from pydantic import Field

from hayhooks import BasePipelineWrapper


class Colour(enum.Enum):
    RED = "red"


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(
        self,
        count: Annotated[int, Field(ge=0, le=10)] = 1,
        ratio: float = 0.5,
        loud: bool = False,
        when: datetime.date | None = None,
        colour: Colour = Colour.RED,
        pair: tuple[int, int] = (0, 0),
    ) -> dict:
        return {
            "count": count, "ratio": ratio, "loud": loud, "when": str(when), "colour": colour.value, "pair": pair
        }
"""

TOOL_CALL = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": "typed", "arguments": {}}}


@pytest.fixture
def typed(make_client, pipelines_dir: Path):
    samples.write_wrapper(pipelines_dir, "typed", TYPED)
    return make_client


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"count": False}, "count"),
        ({"count": "3"}, "count"),
        ({"count": 2.5}, "count"),
        ({"ratio": True}, "ratio"),
        ({"ratio": "0.5"}, "ratio"),
        ({"loud": 1}, "loud"),
        ({"loud": "yes"}, "loud"),
    ],
)
def test_a_value_of_another_type_than_the_schema_says_answers_422(typed, body, field):
    answer = typed().post("/typed/run", json=body)
    assert answer.status_code == 422, answer.text
    assert [problem["loc"] for problem in answer.json()["detail"]] == [["body", field]]


def test_what_json_spells_as_text_or_as_a_whole_number_still_converts(typed):
    body = {"count": 7.0, "ratio": 2, "when": "2026-12-03", "colour": "red", "pair": [1, 2]}
    answer = typed().post("/typed/run", json=body)
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] == {
        "count": 7,
        "ratio": 2.0,
        "loud": False,
        "when": "2026-12-03",
        "colour": "red",
        "pair": [1, 2],
    }
    assert typed().post("/typed/run", json={"count": 11.0}).status_code == 422  # the bound still holds


def test_strict_inputs_off_coerces_as_the_published_hayhooks_does(typed):
    answer = typed(strict_inputs=False).post("/typed/run", json={"count": "3", "loud": "yes", "ratio": True})
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"] | {"when": None} == {
        "count": 3,
        "ratio": 1.0,
        "loud": True,
        "when": None,
        "colour": "red",
        "pair": [0, 0],
    }


def test_form_fields_are_strict_too_but_a_boolean_may_be_capitalised(make_client, pipelines_dir: Path):
    samples.write_wrapper(pipelines_dir, "uploads", samples.UPLOADS)
    client = make_client()
    files = [("files", ("a.txt", b"alpha", "text/plain"))]
    assert client.post("/uploads/run", data={"count": "true"}, files=files).status_code == 422
    assert client.post("/uploads/run", data={"count": "2", "excited": "False"}, files=files).status_code == 200


def test_mcp_tool_arguments_are_strict(typed):
    client = typed(mcp_json_response=True)
    call = {**TOOL_CALL, "params": {"name": "typed", "arguments": {"count": "3"}}}
    answer = client.post("/mcp", json=call, headers=MCP_HEADERS).json()["result"]
    assert answer["isError"] and "count" in answer["content"][0]["text"]
    call["params"]["arguments"] = {"count": 3}
    assert not client.post("/mcp", json=call, headers=MCP_HEADERS).json()["result"]["isError"]


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/typed/run", b'{"count": 1}'),
        ("/v1/chat/completions", b'{"model": "typed", "messages": []}'),
        ("/deploy-yaml", b'{"name": "x", "source_code": "a: 1"}'),
        ("/v1/files", b"purpose=assistants"),
    ],
)
@pytest.mark.parametrize("content_type", ["text/plain", "application/xml", None])
def test_a_body_of_a_media_type_the_operation_does_not_take_answers_415(typed, path, body, content_type):
    if path == "/v1/files" and content_type is None:
        return
    headers = {"content-type": content_type} if content_type else {}
    answer = typed().post(path, content=body, headers=headers)
    assert answer.status_code == 415, answer.text
    assert "is not taken here" in answer.text


def test_json_with_a_suffix_and_a_charset_is_json(typed):
    client = typed()
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        answer = client.post("/typed/run", content=b'{"count": 2}', headers={"content-type": content_type})
        assert answer.status_code == 200, (content_type, answer.text)
    assert client.post("/typed/run").status_code == 200  # no body at all: every field has its default


def test_every_operation_with_a_body_documents_400_413_and_415(typed):
    schema = typed().get("/openapi.json").json()
    with_body = [
        (path, method, operation)
        for path, item in schema["paths"].items()
        for method, operation in item.items()
        if "requestBody" in operation
    ]
    assert len(with_body) > 10
    for path, method, operation in with_body:
        assert {"400", "413", "415", "422"} <= set(operation["responses"]), (method, path)


def test_405_names_every_method_of_the_path(make_client):
    answer = make_client().put("/v1/files")
    assert answer.status_code == 405
    assert {"GET", "POST"} <= {method.strip() for method in answer.headers["allow"].split(",")}
    answer = make_client().put("/v1/files/file-0123")
    assert {"GET", "DELETE"} <= {method.strip() for method in answer.headers["allow"].split(",")}


# --- YAML input_schema --------------------------------------------------------------------------

BOUNDED_YAML = (
    samples.PROMPT_YAML
    + """
input_schema:
  query: {type: string, min_length: 1, max_length: 20, description: The question}
  topic: {type: string, pattern: "^[a-z]+$"}
"""
)


def test_input_schema_types_bounds_and_describes_yaml_request_fields():
    loaded = build_yaml_pipeline("prompt", "r1", BOUNDED_YAML)
    schema = loaded.request_model.model_json_schema()["properties"]
    assert schema["query"] == {
        "type": "string",
        "minLength": 1,
        "maxLength": 20,
        "description": "The question",
        "title": "Query",
    }
    assert schema["topic"]["pattern"] == "^[a-z]+$"


def test_a_yaml_input_out_of_its_bounds_answers_422_naming_it(make_client, pipelines_dir: Path):
    samples.write_yaml(pipelines_dir, "prompt", BOUNDED_YAML)
    client = make_client()
    assert client.post("/prompt/run", json={"query": "why?", "topic": "sky"}).status_code == 200
    for body, field in [({"query": "", "topic": "sky"}, "query"), ({"query": "why", "topic": "Sky!"}, "topic")]:
        answer = client.post("/prompt/run", json=body)
        assert answer.status_code == 422 and answer.json()["detail"][0]["loc"] == ["body", field], answer.text


@pytest.mark.parametrize(
    ("section", "problem"),
    [
        ("input_schema: [query]", "must map request fields"),
        ("input_schema: {nope: {min_length: 1}}", "not a request field"),
        ("input_schema: {query: 1}", "must be a mapping"),
        ("input_schema: {query: {minimum: 1}}", "unknown keys ['minimum']"),
        ("input_schema: {query: {type: list}}", "type' must be one of"),
        ("input_schema: {query: {min_length: one}}", "must be an integer"),
        ("input_schema: {query: {ge: true}}", "must be a number"),
        ("input_schema: {query: {min_length: 1}}", "give it a type"),  # the builder's variable takes anything
        ("input_schema: {query: {type: integer, max_length: 3}}", "bounds string values"),
        ("input_schema: {query: {type: string, pattern: '('}}", "cannot be applied"),
    ],
)
def test_a_malformed_input_schema_fails_the_load_saying_what_is_wrong(section: str, problem: str):
    with pytest.raises(PipelineLoadError, match="prompt") as raised:
        build_yaml_pipeline("prompt", "r1", samples.PROMPT_YAML + section + "\n")
    assert problem in str(raised.value) and not raised.value.retryable


def test_input_schema_type_must_agree_with_a_typed_socket():
    retriever = """
components:
  retriever:
    type: haystack.components.retrievers.in_memory.bm25_retriever.InMemoryBM25Retriever
    init_parameters:
      document_store:
        type: haystack.document_stores.in_memory.document_store.InMemoryDocumentStore
        init_parameters: {}
connections: []
inputs:
  query: retriever.query
  top_k: retriever.top_k
outputs:
  documents: retriever.documents
"""
    loaded = build_yaml_pipeline("search", "r1", retriever + "input_schema: {top_k: {ge: 1, le: 5}}\n")
    assert loaded.request_model.model_json_schema()["properties"]["top_k"]["anyOf"][0]["maximum"] == 5
    with pytest.raises(PipelineLoadError, match="its socket takes"):
        build_yaml_pipeline("search", "r1", retriever + "input_schema: {query: {type: integer}}\n")
