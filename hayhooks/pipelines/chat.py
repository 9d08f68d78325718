"""Reading what a chat client sent: OpenAI Chat Completions messages and Responses API input items.

Messages may be dicts or message objects with ``role`` and ``content`` attributes (what an
OpenAI-compatible endpoint parses the body into), so both are read by duck typing.
"""

import json
from typing import TYPE_CHECKING, Any
from uuid import uuid4

if TYPE_CHECKING:
    from haystack.dataclasses import ChatMessage


def is_user_message(msg: Any) -> bool:
    return _field(msg, "role") == "user"


def get_last_user_message(messages: list[Any]) -> str | None:
    """The content of the latest user message, or None when there is none."""
    for msg in reversed(messages):
        if is_user_message(msg):
            return msg.get("content", "") if isinstance(msg, dict) else (msg.content or "")
    return None


def get_last_user_input_text(input_items: list[dict[str, Any]]) -> str | None:
    """The latest user text in Responses API input: ``"content": "..."`` or its last ``input_text`` part."""
    for item in reversed(input_items):
        if not _is_user_item(item) or item.get("type") not in ("message", None):
            continue
        content = item.get("content")
        if isinstance(content, str):
            return content
        texts = [part for part in _parts(content) if part.get("type") == "input_text"]
        if texts:
            text = texts[-1].get("text")
            return text if isinstance(text, str) else None
    return None


def get_input_files(input_items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ``input_file`` parts (each with a ``file_id``) of the user items in Responses API input."""
    return [
        part
        for item in input_items
        if _is_user_item(item)
        for part in _parts(item.get("content"))
        if part.get("type") == "input_file" and part.get("file_id")
    ]


def chat_messages_from_openai_response(input_items: list[dict[str, Any]]) -> list["ChatMessage"]:
    """Responses API input as Haystack messages, tool calls and their outputs included.

    Clients running a tool loop send back ``function_call`` and ``function_call_output`` items; each
    output is tied to its call by ``call_id`` so the tool message names the right tool. Messages
    without text and items of other types are skipped.
    """
    from haystack.dataclasses import ChatMessage, ToolCall

    messages: list[ChatMessage] = []
    calls: dict[str, ToolCall] = {}
    for item in input_items:
        if not isinstance(item, dict):
            continue
        if item.get("type") == "function_call":
            call_id = _call_id(item) or f"call_{uuid4().hex[:24]}"
            call = ToolCall(tool_name=item.get("name") or "function", arguments=_arguments(item), id=call_id)
            calls[call_id] = call
            messages.append(ChatMessage.from_assistant(tool_calls=[call]))
        elif item.get("type") == "function_call_output":
            call_id = _call_id(item)
            output = item.get("output", "")
            origin = calls.get(call_id) if call_id else None
            messages.append(
                ChatMessage.from_tool(
                    tool_result=output if isinstance(output, str) else json.dumps(output),
                    origin=origin or ToolCall(tool_name="function", arguments={}, id=call_id),
                )
            )
        elif text := _text(item.get("content")):
            role = item.get("role")
            if role == "user":
                messages.append(ChatMessage.from_user(text))
            elif role in ("system", "developer"):
                messages.append(ChatMessage.from_system(text))
            elif role == "assistant":
                messages.append(ChatMessage.from_assistant(text))
    return messages


def _field(msg: Any, name: str) -> Any:
    return msg.get(name) if isinstance(msg, dict) else getattr(msg, name, None)


def _is_user_item(item: Any) -> bool:
    return isinstance(item, dict) and item.get("role") == "user"


def _parts(content: Any) -> list[dict[str, Any]]:
    """The dict parts of a content list; nothing for string or missing content."""
    return [part for part in content if isinstance(part, dict)] if isinstance(content, list) else []


def _text(content: Any) -> str:
    """Content as plain text: a string as is, the text parts of a list joined by newlines."""
    if isinstance(content, str):
        return content
    return "\n".join(part["text"] for part in _parts(content) if isinstance(part.get("text"), str) and part["text"])


def _call_id(item: dict[str, Any]) -> str | None:
    for key in ("call_id", "id"):
        value = item.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def _arguments(item: dict[str, Any]) -> dict[str, Any]:
    """Tool call arguments, sent as a dict or a JSON string; {} when they are neither."""
    raw = item.get("arguments", "{}")
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError:
            return {}
    return raw if isinstance(raw, dict) else {}
