"""Offline wrappers that stream, chat and read headers: what the streaming and OpenAI tests deploy."""

# /run streams: a sync generator, an async one, SSE, and a failure after the first item. Each item
# is appended to the file named by ``trace`` (when given) as it is produced, so a test sees how far
# the pipeline got: after a disconnect, it must stop soon, not run to the end.
STREAMS = '''
import asyncio
import time
from collections.abc import AsyncGenerator, Generator
from pathlib import Path

from hayhooks import BasePipelineWrapper, SSEStream


def _produce(count: int, delay: float, trace: str | None, fail_after: int | None) -> Generator[str, None, None]:
    for index in range(count):
        if fail_after is not None and index == fail_after:
            raise RuntimeError("boom mid-stream")
        if trace:
            with open(trace, "a") as file:
                file.write(f"{index}\\n")
        yield f"chunk {index}\\n"
        time.sleep(delay)


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(
        self,
        count: int = 3,
        delay: float = 0.0,
        mode: str = "sync",
        trace: str | None = None,
        fail_after: int | None = None,
    ) -> str | Generator | SSEStream:
        """Stream ``count`` numbered lines, one every ``delay`` seconds."""
        if mode == "whole":
            return "".join(_produce(count, delay, trace, fail_after))
        if mode == "sse":
            return SSEStream(_produce(count, delay, trace, fail_after))
        if mode == "async":
            return self._async(count, delay, trace, fail_after)
        return _produce(count, delay, trace, fail_after)

    async def _async(self, count, delay, trace, fail_after) -> AsyncGenerator[str, None]:
        for index, item in enumerate(_produce(count, 0.0, trace, fail_after)):
            yield item
            await asyncio.sleep(delay)
'''

# Chat and responses, sync, with every kind of chunk the wire knows; a header echoed back.
CHAT = '''
from collections.abc import Generator

from haystack.dataclasses import ReasoningContent, StreamingChunk, ToolCallDelta
from starlette.datastructures import Headers

from hayhooks import BasePipelineWrapper
from hayhooks.open_webui import create_status_event


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self, text: str, headers: Headers | None = None) -> str:
        """Echo the text and the X-Caller header."""
        return f"{text} from {headers.get('x-caller') if headers else None}"

    def run_chat_completion(self, model: str, messages: list[dict], body: dict) -> str | Generator:
        question = messages[-1]["content"]
        if question == "fail":
            raise ValueError("the pipeline failed on purpose")
        if not body.get("stream"):
            return f"{model} answers {question}"
        return self._stream(question)

    def _stream(self, question: str) -> Generator:
        yield create_status_event("thinking")
        yield StreamingChunk(content="", reasoning=ReasoningContent(reasoning_text="let me see"), index=0)
        yield StreamingChunk(content="Hello ")
        yield StreamingChunk(
            content="", tool_calls=[ToolCallDelta(index=0, tool_name="search", arguments='{"q": 1}', id="c1")], index=0
        )
        yield StreamingChunk(content=question)

    def run_response(self, model: str, input_items: list[dict], body: dict) -> Generator:
        def words() -> Generator:
            yield "Hel"
            yield "lo"

        return words()
'''

# The async variants win over the sync ones, and a returned generator is joined when not streaming.
ASYNC_CHAT = """
from collections.abc import AsyncGenerator

from starlette.datastructures import Headers

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self, text: str) -> str:
        return text

    def run_chat_completion(self, model: str, messages: list[dict], body: dict) -> str:
        return "sync"

    async def run_chat_completion_async(
        self, model: str, messages: list[dict], body: dict, headers: Headers | None = None
    ) -> AsyncGenerator:
        async def parts() -> AsyncGenerator:
            yield "async "
            yield headers.get("x-caller", "nobody") if headers else "no headers"

        return parts()
"""

# A chat wrapper in the shape of the published Hayhooks' documentation: a real Haystack pipeline
# (ChatPromptBuilder -> a chat generator), streamed with streaming_generator.
DOCS_CHAT = '''
from collections.abc import Generator

from haystack import Pipeline, component
from haystack.components.builders import ChatPromptBuilder
from haystack.dataclasses import ChatMessage, StreamingChunk

from hayhooks import BasePipelineWrapper, get_last_user_message, streaming_generator


@component
class EchoChatGenerator:
    """A chat generator that streams the words of the last message back, offline."""

    def __init__(self, streaming_callback=None):
        self.streaming_callback = streaming_callback

    @component.output_types(replies=list[ChatMessage])
    def run(self, messages: list[ChatMessage], streaming_callback=None):
        callback = streaming_callback or self.streaming_callback
        words = messages[-1].text.split()
        for index, word in enumerate(words):
            if callback:
                callback(StreamingChunk(content=word + " ", index=0, start=index == 0))
        return {"replies": [ChatMessage.from_assistant(" ".join(words))]}


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = Pipeline()
        self.pipeline.add_component("prompt", ChatPromptBuilder(template=[ChatMessage.from_user("Echo: {{query}}")]))
        self.pipeline.add_component("llm", EchoChatGenerator())
        self.pipeline.connect("prompt.prompt", "llm.messages")

    def run_api(self, query: str) -> str:
        """Echo the query through the pipeline."""
        result = self.pipeline.run({"prompt": {"query": query}})
        return result["llm"]["replies"][0].text

    def run_chat_completion(self, model: str, messages: list[dict], body: dict) -> Generator:
        question = get_last_user_message(messages)
        return streaming_generator(pipeline=self.pipeline, pipeline_run_args={"prompt": {"query": question}})
'''

# The published Hayhooks' README example, unchanged: an Agent on OpenAIChatGenerator, streamed with
# async_streaming_generator. The tests point OPENAI_BASE_URL at the server itself, where FAKE_LLM
# plays "gpt-4o-mini", so no key and no network is needed.
PUBLISHED_README_AGENT = """
from typing import AsyncGenerator
from haystack.components.agents import Agent
from haystack.dataclasses import ChatMessage
from haystack.tools import Tool
from haystack.components.generators.chat import OpenAIChatGenerator
from hayhooks import BasePipelineWrapper, async_streaming_generator


# Define a Haystack Tool that provides weather information for a given location.
def weather_function(location):
    return f"The weather in {location} is sunny."

weather_tool = Tool(
    name="weather_tool",
    description="Provides weather information for a given location.",
    parameters={
        "type": "object",
        "properties": {"location": {"type": "string"}},
        "required": ["location"],
    },
    function=weather_function,
)

class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.agent = Agent(
            chat_generator=OpenAIChatGenerator(model="gpt-4o-mini"),
            system_prompt="You're a helpful agent",
            tools=[weather_tool],
        )

    # This will create a POST /my_agent/run endpoint
    # `question` will be the input argument and will be auto-validated by a Pydantic model
    async def run_api_async(self, question: str) -> str:
        result = await self.agent.run_async(messages=[ChatMessage.from_user(question)])
        return result["last_message"].text

    # This will create an OpenAI-compatible /chat/completions endpoint
    async def run_chat_completion_async(
        self, model: str, messages: list[dict], body: dict
    ) -> AsyncGenerator[str, None]:
        chat_messages = [
            ChatMessage.from_openai_dict_format(message) for message in messages
        ]

        return async_streaming_generator(
            pipeline=self.agent,
            pipeline_run_args={
                "messages": chat_messages,
            },
        )
"""

# An offline stand-in for an OpenAI model: it answers "You said: <the last user message>", word by word.
FAKE_LLM = """
from collections.abc import Generator

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self, text: str) -> str:
        return text

    def run_chat_completion(self, model: str, messages: list[dict], body: dict) -> str | Generator:
        last = [message for message in messages if message["role"] == "user"][-1]["content"]
        text = last if isinstance(last, str) else " ".join(part.get("text", "") for part in last)
        answer = f"You said: {text}"
        if not body.get("stream"):
            return answer
        return (word + " " for word in answer.split())
"""

# A real Haystack pipeline streamed from /run with streaming_generator: its component writes each
# chunk it produces to ``trace``, so a test sees it stop once the client hung up.
TRACED_HAYSTACK = '''
import time
from collections.abc import Generator

from haystack import Pipeline, component
from haystack.dataclasses import StreamingChunk

from hayhooks import BasePipelineWrapper, streaming_generator


@component
class TracedGenerator:
    def __init__(self, streaming_callback=None):
        self.streaming_callback = streaming_callback

    @component.output_types(text=str)
    def run(self, count: int, delay: float, trace: str, streaming_callback=None):
        callback = streaming_callback or self.streaming_callback
        for index in range(count):
            with open(trace, "a") as file:
                file.write(f"{index}\\n")
            if callback:
                callback(StreamingChunk(content=f"chunk {index}\\n"))
            time.sleep(delay)
        return {"text": "done"}


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = Pipeline()
        self.pipeline.add_component("llm", TracedGenerator())

    def run_api(self, count: int, delay: float, trace: str) -> Generator:
        """Stream the component's chunks as it makes them."""
        args = {"llm": {"count": count, "delay": delay, "trace": trace}}
        return streaming_generator(pipeline=self.pipeline, pipeline_run_args=args)
'''
