"""Offline stand-ins for LLMs: chat generators that stream scripted chunks, and pipelines of them.

Each generator records in ``produced`` every chunk it has made, before handing it to the streaming
callback: that side effect tells whether a run went on after its consumer left.
"""

import asyncio
import time

from haystack import Pipeline, component
from haystack.components.agents import Agent
from haystack.components.builders import ChatPromptBuilder
from haystack.dataclasses import ChatMessage, ReasoningContent, StreamingChunk, ToolCall, ToolCallDelta
from haystack.tools import Tool

ADD_CALL = ToolCall(tool_name="add", arguments={"a": 1, "b": 2}, id="call_1")


class _Scripted:
    """The script: ``words`` chunks ``delay`` apart; optionally a failure, a reasoning chunk or a tool call first."""

    def __init__(
        self,
        words: list[str] | None = None,
        delay: float = 0.005,
        fail_after: int | None = None,
        reasoning: str | None = None,
        call_tool: bool = False,
        streaming_callback=None,
    ) -> None:
        self.words = words if words is not None else ["a", "b", "c"]
        self.delay = delay
        self.fail_after = fail_after
        self.reasoning = reasoning
        self.call_tool = call_tool
        self.streaming_callback = streaming_callback
        self.produced: list[str] = []
        self.cancelled = False

    def _script(self, messages: list[ChatMessage]) -> tuple[list[StreamingChunk], ChatMessage]:
        if self.call_tool and not messages[-1].tool_call_results:  # the Agent has not run the tool yet
            delta = ToolCallDelta(index=0, tool_name="add", arguments='{"a": 1, "b": 2}', id="call_1")
            return [StreamingChunk(content="", index=0, tool_calls=[delta], start=True)], ChatMessage.from_assistant(
                tool_calls=[ADD_CALL]
            )
        chunks = [StreamingChunk(content=word) for word in self.words]
        if self.reasoning:
            chunks.insert(0, StreamingChunk(content="", index=0, reasoning=ReasoningContent(self.reasoning)))
        return chunks, ChatMessage.from_assistant("".join(self.words))

    def _produce(self, chunk: StreamingChunk) -> None:
        if self.fail_after is not None and len(self.produced) == self.fail_after:
            raise RuntimeError("the model broke down")
        self.produced.append(chunk.content)

    @component.output_types(replies=list[ChatMessage])
    def run(self, messages: list[ChatMessage], streaming_callback=None, tools=None):
        callback = streaming_callback or self.streaming_callback
        chunks, reply = self._script(messages)
        for chunk in chunks:
            time.sleep(self.delay)
            self._produce(chunk)
            if callback:
                callback(chunk)
        return {"replies": [reply]}


@component
class FakeChatGenerator(_Scripted):
    """Streams from ``run`` and, awaiting an async callback, from ``run_async``."""

    @component.output_types(replies=list[ChatMessage])
    async def run_async(self, messages: list[ChatMessage], streaming_callback=None, tools=None):
        callback = streaming_callback or self.streaming_callback
        chunks, reply = self._script(messages)
        try:
            for chunk in chunks:
                await asyncio.sleep(self.delay)
                self._produce(chunk)
                if callback:
                    await callback(chunk)
        except asyncio.CancelledError:
            self.cancelled = True
            raise
        return {"replies": [reply]}


@component
class SyncChatGenerator(_Scripted):
    """Streams from ``run`` only: an async pipeline runs it in a thread."""


def chat_pipeline(**generators) -> Pipeline:
    """A ChatPromptBuilder (input ``query``) feeding the generators in a chain, in the order given."""
    pipeline = Pipeline()
    builder = ChatPromptBuilder(template=[ChatMessage.from_user("{{ query }}")], required_variables=["query"])
    pipeline.add_component("prompt_builder", builder)
    previous = "prompt_builder.prompt"
    for name, generator in generators.items():
        pipeline.add_component(name, generator)
        pipeline.connect(previous, f"{name}.messages")
        previous = f"{name}.replies"
    return pipeline


def add(a: int, b: int) -> int:
    return a + b


def tool_agent(generator: _Scripted) -> Agent:
    """An Agent with an ``add`` tool, for a generator that calls it (``call_tool=True``) before answering."""
    tool = Tool(
        name="add",
        description="Adds two numbers.",
        parameters={"type": "object", "properties": {"a": {"type": "integer"}, "b": {"type": "integer"}}},
        function=add,
    )
    return Agent(chat_generator=generator, tools=[tool])
