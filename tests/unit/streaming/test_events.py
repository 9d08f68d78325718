"""The UI events' wire format and the default callbacks, as the published Hayhooks sends them."""

import subprocess
import sys

from haystack.dataclasses import ChatMessage

from hayhooks import default_on_pipeline_end, default_on_tool_call_end, default_on_tool_call_start
from hayhooks.events import PipelineEvent
from hayhooks.open_webui import (
    OpenWebUIEvent,
    create_chat_completion_event,
    create_details_tag,
    create_message_event,
    create_notification_event,
    create_replace_event,
    create_source_event,
    create_status_event,
)


def test_shared_events_wire_format():
    assert create_status_event("Searching").to_event_dict() == {
        "type": "status",
        "data": {"description": "Searching", "done": False, "hidden": False},
    }
    assert create_notification_event("Oops", "error").to_dict() == {
        "type": "notification",
        "data": {"type": "error", "content": "Oops"},
    }


def test_open_webui_events_wire_format():
    assert create_message_event("more").to_dict() == {"type": "message", "data": {"content": "more"}}
    assert create_replace_event("all").to_dict() == {"type": "replace", "data": {"content": "all"}}
    assert create_source_event({"url": "u"}).to_dict() == {"type": "source", "data": {"url": "u"}}
    assert create_chat_completion_event({"usage": 1}).to_event_dict() == {
        "type": "chat:completion",
        "data": {"usage": 1},
    }
    assert isinstance(create_message_event("x"), PipelineEvent)


def test_a_dict_payload_is_read_as_the_model_it_fits():
    assert PipelineEvent(type="x", data={"description": "d"}).to_dict()["data"] == {
        "description": "d",
        "done": False,
        "hidden": False,
    }
    assert OpenWebUIEvent(type="x", data={"content": "c"}).to_dict()["data"] == {"content": "c"}
    assert PipelineEvent(type="x", data={"any": 1}).to_dict()["data"] == {"any": 1}


def test_details_tag():
    assert create_details_tag("calc", "Result", "42") == (
        '<details type="calc" done="true">\n<summary>Result</summary>\n\n42\n</details>\n\n'
    )


def test_default_tool_call_callbacks():
    assert default_on_tool_call_start("calc", {"a": 1}, "id1") == create_status_event("Calling 'calc' tool...")
    assert default_on_tool_call_start("", {}, None) is None

    status, details = default_on_tool_call_end("calc", {"a": 1}, "2", False)
    assert status == create_status_event("Called 'calc' tool", done=True)
    assert details == create_details_tag(
        "calc", "Tool call result for 'calc'", "```\nArguments:\n{'a': 1}\n\nResponse:\n2\n```"
    )
    assert default_on_tool_call_end("calc", {}, "boom", True) == [
        create_status_event("Called 'calc' tool", done=True, hidden=True),
        create_notification_event("Error calling 'calc' tool", "error"),
    ]


def test_default_pipeline_end_gives_text():
    assert default_on_pipeline_end("plain") == "plain"
    assert default_on_pipeline_end(None) == ""
    assert default_on_pipeline_end({"llm": {"replies": [ChatMessage.from_assistant("hi")]}}) == (
        '{"llm": {"replies": [{"role": "assistant", "meta": {}, "name": null, "content": [{"text": "hi"}]}]}}'
    )


def test_importing_the_public_helpers_imports_no_haystack():
    code = (
        "import sys, hayhooks\n"
        "for name in hayhooks.__all__:\n"
        "    if name != 'create_app': getattr(hayhooks, name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'haystack'))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)

    assert result.stdout.strip() == "[]"
