"""Reading chat requests (Chat Completions messages, Responses API items) and coercing JSON pipeline inputs."""

from dataclasses import dataclass
from types import SimpleNamespace

import pytest
from haystack import Document, Pipeline, component
from haystack.dataclasses import ChatMessage, ExtractedAnswer, GeneratedAnswer, ToolCall
from pydantic import BaseModel

from hayhooks import (
    chat_messages_from_openai_response,
    coerce_pipeline_inputs,
    get_input_files,
    get_last_user_input_text,
    get_last_user_message,
    is_user_message,
)


def test_last_user_message_from_dicts_and_message_objects():
    messages = [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "ok"},
        SimpleNamespace(role="user", content="second"),
        {"role": "assistant", "content": "sure"},
    ]

    assert get_last_user_message(messages) == "second"
    assert get_last_user_message(messages[:3]) == "first"
    assert get_last_user_message(messages[:1]) is None
    assert get_last_user_message([SimpleNamespace(role="user", content=None)]) == ""
    assert is_user_message({"role": "user"}) and not is_user_message({"role": "tool"})


RESPONSES_INPUT = [
    {"role": "developer", "content": [{"type": "input_text", "text": "rules"}, {"type": "input_text", "text": ""}]},
    {
        "role": "user",
        "type": "message",
        "content": [
            {"type": "input_text", "text": "what is in it?"},
            {"type": "input_file", "file_id": "file-1", "filename": "a.pdf"},
            {"type": "input_file", "file_id": ""},
        ],
    },
    {"type": "function_call", "name": "add", "arguments": '{"a": 1}', "call_id": "c1"},
    {"type": "function_call_output", "call_id": "c1", "output": {"sum": 3}},
    {"type": "function_call_output", "call_id": "unknown", "output": "lost"},
    {"role": "assistant", "content": "It is a PDF."},
    {"type": "reasoning", "summary": []},
    "junk",
]


def test_last_user_input_text_and_input_files():
    assert get_last_user_input_text(RESPONSES_INPUT) == "what is in it?"
    assert get_last_user_input_text([*RESPONSES_INPUT, {"role": "user", "content": "shorthand"}]) == "shorthand"
    assert get_last_user_input_text([*RESPONSES_INPUT, {"role": "user", "type": "other", "content": "x"}]) == (
        "what is in it?"
    )
    assert get_last_user_input_text(RESPONSES_INPUT[:1]) is None
    assert get_input_files(RESPONSES_INPUT) == [{"type": "input_file", "file_id": "file-1", "filename": "a.pdf"}]


def test_responses_input_as_haystack_messages():
    messages = chat_messages_from_openai_response(RESPONSES_INPUT)

    call = ToolCall(tool_name="add", arguments={"a": 1}, id="c1")
    assert messages == [
        ChatMessage.from_system("rules"),
        ChatMessage.from_user("what is in it?"),
        ChatMessage.from_assistant(tool_calls=[call]),
        ChatMessage.from_tool(tool_result='{"sum": 3}', origin=call),
        ChatMessage.from_tool(tool_result="lost", origin=ToolCall(tool_name="function", arguments={}, id="unknown")),
        ChatMessage.from_assistant("It is a PDF."),
    ]


def test_a_function_call_without_id_or_valid_arguments_gets_defaults():
    (message,) = chat_messages_from_openai_response([{"type": "function_call", "arguments": "[1, 2]"}])

    assert message.tool_call.tool_name == "function"
    assert message.tool_call.arguments == {}
    assert message.tool_call.id.startswith("call_")


@dataclass
class Point:
    x: int


class Label(BaseModel):
    name: str


@component
class Takes:
    @component.output_types(out=str)
    def run(
        self,
        messages: list[ChatMessage],
        document: Document | None = None,
        point: Point | None = None,
        labels: list[Label] | None = None,
        answer: GeneratedAnswer | ExtractedAnswer | None = None,
        options: dict | None = None,
    ):
        return {"out": ""}


@pytest.fixture
def pipeline() -> Pipeline:
    pipeline = Pipeline()
    pipeline.add_component("takes", Takes())
    return pipeline


def test_coerce_nested_inputs(pipeline):
    data = {
        "takes": {
            "messages": [ChatMessage.from_user("hi").to_dict(), "left alone"],
            "document": Document(id="d1", content="text").to_dict(),
            "point": {"x": 1},
            "labels": [{"name": "a"}],
            "options": {"k": 1},
        }
    }

    coerced = coerce_pipeline_inputs(pipeline, data)["takes"]

    assert coerced["messages"] == [ChatMessage.from_user("hi"), "left alone"]
    assert coerced["document"] == Document(id="d1", content="text")
    assert coerced["point"] == Point(x=1)
    assert coerced["labels"] == [Label(name="a")]
    assert coerced["options"] == {"k": 1}
    assert data["takes"]["point"] == {"x": 1}  # the input is not modified


def test_coerce_flat_inputs(pipeline):
    coerced = coerce_pipeline_inputs(pipeline, {"messages": [ChatMessage.from_user("hi").to_dict()], "other": 3})

    assert coerced == {"messages": [ChatMessage.from_user("hi")], "other": 3}


def test_coerce_refuses_a_dict_for_an_ambiguous_type(pipeline):
    with pytest.raises(ValueError, match="ExtractedAnswer, GeneratedAnswer"):
        coerce_pipeline_inputs(pipeline, {"takes": {"answer": {"data": "x"}}})
