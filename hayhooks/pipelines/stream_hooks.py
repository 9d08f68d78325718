"""The user callbacks of a stream: what to yield around each chunk, and after the run."""

import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hayhooks.events import PipelineEvent

if TYPE_CHECKING:
    from haystack.dataclasses import StreamingChunk

logger = logging.getLogger("hayhooks.streaming")

ToolCallbackReturn = PipelineEvent | str | list[PipelineEvent | str] | None
OnToolCallStart = Callable[[str, dict[str, Any], str | None], ToolCallbackReturn] | None
OnToolCallEnd = Callable[[str, dict[str, Any], str, bool], ToolCallbackReturn] | None
OnReasoning = Callable[[str, dict[str, Any] | None], ToolCallbackReturn] | None
OnPipelineEnd = Callable[[Any], str | None] | None


@dataclass(frozen=True)
class StreamHooks:
    """A failing callback is logged and skipped: a UI nicety must not break the answer's stream."""

    on_tool_call_start: OnToolCallStart = None
    on_tool_call_end: OnToolCallEnd = None
    on_reasoning: OnReasoning = None
    on_pipeline_end: OnPipelineEnd = None

    def around(self, chunk: "StreamingChunk") -> list[Any]:
        """What to yield for ``chunk``: the events of tool calls starting, tool results and reasoning, then it."""
        items: list[Any] = []
        if self.on_tool_call_start:
            for call in chunk.tool_calls or []:
                if call.tool_name:  # later deltas of a call carry only argument fragments
                    args = _parse_arguments(call.arguments)
                    items += _call(self.on_tool_call_start, call.tool_name, args, call.id)
        if self.on_tool_call_end and (outcome := chunk.tool_call_result):
            origin, result = outcome.origin, outcome.result
            result = result if isinstance(result, str) else str(result)
            items += _call(self.on_tool_call_end, origin.tool_name, origin.arguments, result, bool(outcome.error))
        if self.on_reasoning and (reasoning := chunk.reasoning) is not None:
            text = reasoning.reasoning_text if isinstance(reasoning.reasoning_text, str) else str(reasoning)
            items += _call(self.on_reasoning, text, reasoning.extra)
        items.append(chunk)
        return items

    def end(self, result: Any) -> "StreamingChunk | None":
        """The text ``on_pipeline_end`` makes of the run's result, as a last chunk."""
        from haystack.dataclasses import StreamingChunk

        if self.on_pipeline_end and (text := _call(self.on_pipeline_end, result)):
            return StreamingChunk(content=text[0])
        return None


def _call(callback: Callable[..., Any], *args: Any) -> list[Any]:
    """The callback's result as a list of things to yield (empty for None or on failure)."""
    try:
        result = callback(*args)
    except Exception:
        logger.exception("Streaming callback %s failed", getattr(callback, "__name__", callback))
        return []
    return [item for item in (result if isinstance(result, list) else [result]) if item]


def _parse_arguments(arguments: str | None) -> Any:
    """A tool call's JSON arguments; {} while they are missing or still an incomplete fragment."""
    with contextlib.suppress(json.JSONDecodeError, TypeError):
        return json.loads(arguments) if arguments else {}
    return {}
