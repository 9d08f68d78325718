"""Ready-made callbacks for the streaming generators: tool calls as status events, the result as text."""

from typing import Any

from hayhooks.events import PipelineEvent, create_notification_event, create_status_event
from hayhooks.open_webui import create_details_tag


def default_on_tool_call_start(tool_name: str, arguments: Any, tool_call_id: str | None) -> PipelineEvent | None:  # noqa: ARG001
    """Show that a tool is being called; nothing for argument-only deltas, which carry no name."""
    if not tool_name:
        return None
    return create_status_event(description=f"Calling '{tool_name}' tool...", done=False)


def default_on_tool_call_end(
    tool_name: str, arguments: dict[str, Any], result: str, error: bool
) -> list[PipelineEvent | str]:
    """Close the status line; then the arguments and response in a details block, or an error toast."""
    if error:
        return [
            create_status_event(description=f"Called '{tool_name}' tool", done=True, hidden=True),
            create_notification_event(content=f"Error calling '{tool_name}' tool", notification_type="error"),
        ]
    return [
        create_status_event(description=f"Called '{tool_name}' tool", done=True),
        create_details_tag(
            tool_name=tool_name,
            summary=f"Tool call result for '{tool_name}'",
            content=f"```\nArguments:\n{arguments}\n\nResponse:\n{result}\n```",
        ),
    ]


def default_on_pipeline_end(result: Any) -> str:
    """The whole result as text: strings and numbers as they are, anything else as JSON (Haystack's tracing form)."""
    from haystack.tracing.utils import coerce_tag_value  # only a run that uses this callback pays for Haystack

    return str(coerce_tag_value(result))
