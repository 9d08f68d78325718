"""Events only Open WebUI understands (https://docs.openwebui.com/features/plugin/events).

The shared status and notification events are re-exported, so wrappers can import every helper
they use from here.
"""

from typing import Any

from pydantic import BaseModel

from hayhooks.events import (
    NotificationEventData,
    PipelineEvent,
    StatusEventData,
    create_notification_event,
    create_status_event,
)

__all__ = [
    "MessageEventData",
    "NotificationEventData",
    "OpenWebUIEvent",
    "PipelineEvent",
    "StatusEventData",
    "create_chat_completion_event",
    "create_details_tag",
    "create_message_event",
    "create_notification_event",
    "create_replace_event",
    "create_source_event",
    "create_status_event",
]


class MessageEventData(BaseModel):
    content: str


class OpenWebUIEvent(PipelineEvent):
    """A :class:`PipelineEvent` whose payload may also be message content."""

    data: StatusEventData | MessageEventData | NotificationEventData | dict[str, Any]


def create_chat_completion_event(data: dict[str, Any]) -> OpenWebUIEvent:
    """Hand Open WebUI a completion result (e.g. usage) directly."""
    return OpenWebUIEvent(type="chat:completion", data=data)


def create_message_event(content: str) -> OpenWebUIEvent:
    """Append ``content`` to the message being shown."""
    return OpenWebUIEvent(type="message", data=MessageEventData(content=content))


def create_replace_event(content: str) -> OpenWebUIEvent:
    """Replace the whole message being shown with ``content``."""
    return OpenWebUIEvent(type="replace", data=MessageEventData(content=content))


def create_source_event(source_data: dict[str, Any]) -> OpenWebUIEvent:
    """Attach a citation or a code execution result to the message."""
    return OpenWebUIEvent(type="source", data=source_data)


def create_details_tag(tool_name: str, summary: str, content: str) -> str:
    """A collapsible block, sent as message text (not an event): Open WebUI renders ``<details>`` itself."""
    return f'<details type="{tool_name}" done="true">\n<summary>{summary}</summary>\n\n{content}\n</details>\n\n'
