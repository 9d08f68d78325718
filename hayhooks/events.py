"""Events a pipeline sends to a chat UI next to its text, shared by every frontend.

A chat endpoint serialises any yielded object that has a ``to_event_dict`` method as a custom SSE
event rather than as message content, so the field names here are a wire format. No Haystack
import: these are plain pydantic models.
"""

from typing import Any, Literal

from pydantic import BaseModel

NotificationType = Literal["info", "success", "warning", "error"]


class StatusEventData(BaseModel):
    description: str
    done: bool = False
    hidden: bool = False


class NotificationEventData(BaseModel):
    type: NotificationType = "info"
    content: str


class PipelineEvent(BaseModel):
    """A UI event: ``type`` names it, ``data`` is its payload (a known model or a free-form dict)."""

    type: str
    data: StatusEventData | NotificationEventData | dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump()

    def to_event_dict(self) -> dict[str, Any]:
        """What the chat endpoint sends as the SSE event; having this method is what marks an event."""
        return self.model_dump()


def create_status_event(description: str, done: bool = False, hidden: bool = False) -> PipelineEvent:
    """A progress line in the UI, e.g. while a tool runs."""
    return PipelineEvent(type="status", data=StatusEventData(description=description, done=done, hidden=hidden))


def create_notification_event(content: str, notification_type: NotificationType = "info") -> PipelineEvent:
    """A toast notification in the UI."""
    return PipelineEvent(type="notification", data=NotificationEventData(type=notification_type, content=content))
