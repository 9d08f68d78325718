"""Chat wrappers written from the published Hayhooks docs import and stream against our ``hayhooks``.

The wrapper sources below keep the docs' shape (imports, signatures, calls); only the LLM is swapped
for an offline fake, since the tests have no API keys.
"""

import asyncio
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from haystack.dataclasses import StreamingChunk

# The README's "chat with website" wrapper: a Pipeline, run_api, and a streaming run_chat_completion.
CHAT_WRAPPER = """
from typing import Generator, List, Union

from haystack import Pipeline
from haystack.components.builders import ChatPromptBuilder
from haystack.dataclasses import ChatMessage

from hayhooks import BasePipelineWrapper, get_last_user_message, streaming_generator
from tests.unit.streaming.fakes import FakeChatGenerator  # stands in for OpenAIChatGenerator


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        template = [ChatMessage.from_user("Answer the question: {{ question }}")]
        self.pipeline = Pipeline()
        self.pipeline.add_component("prompt", ChatPromptBuilder(template=template, required_variables="*"))
        self.pipeline.add_component("llm", FakeChatGenerator(words=["Paris", " is", " nice"]))
        self.pipeline.connect("prompt.prompt", "llm.messages")

    def run_api(self, question: str) -> str:
        result = self.pipeline.run({"prompt": {"question": question}})
        return result["llm"]["replies"][0].text

    def run_chat_completion(self, model: str, messages: List[dict], body: dict) -> Union[str, Generator]:
        question = get_last_user_message(messages)

        # Streaming pipeline run, will return a generator
        return streaming_generator(
            pipeline=self.pipeline,
            pipeline_run_args={"prompt": {"question": question}},
        )
"""

# The README's quick-start agent: an Agent with a tool, streamed by run_chat_completion_async.
AGENT_WRAPPER = """
from typing import AsyncGenerator

from haystack.components.agents import Agent
from haystack.dataclasses import ChatMessage
from haystack.tools import Tool

from hayhooks import BasePipelineWrapper, async_streaming_generator
from tests.unit.streaming.fakes import FakeChatGenerator  # stands in for OpenAIChatGenerator


def weather_function(location):
    return f"The weather in {location} is sunny."


weather_tool = Tool(
    name="weather_tool",
    description="Provides weather information for a given location.",
    parameters={"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]},
    function=weather_function,
)


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.agent = Agent(
            chat_generator=FakeChatGenerator(words=["Sunny", "."]),
            system_prompt="You're a helpful agent",
            tools=[weather_tool],
        )

    async def run_api_async(self, question: str) -> str:
        result = await self.agent.run_async(messages=[ChatMessage.from_user(question)])
        return result["last_message"].text

    async def run_chat_completion_async(
        self, model: str, messages: list[dict], body: dict
    ) -> AsyncGenerator[str, None]:
        chat_messages = [ChatMessage.from_openai_dict_format(message) for message in messages]

        return async_streaming_generator(
            pipeline=self.agent,
            pipeline_run_args={
                "messages": chat_messages,
            },
        )
"""


def load_wrapper(tmp_path: Path, source: str) -> ModuleType:
    path = tmp_path / "pipeline_wrapper.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"published_wrapper_{tmp_path.name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules.pop(spec.name, None)
    return module


def test_the_docs_chat_wrapper_streams_its_answer(tmp_path):
    wrapper = load_wrapper(tmp_path, CHAT_WRAPPER).PipelineWrapper()
    wrapper.setup()
    messages = [{"role": "user", "content": "Where to go?"}, {"role": "assistant", "content": "Hm"}]

    stream = wrapper.run_chat_completion("chat", [*messages, {"role": "user", "content": "Which city?"}], {})

    chunks = list(stream)
    assert all(isinstance(chunk, StreamingChunk) for chunk in chunks)
    assert "".join(chunk.content for chunk in chunks) == "Paris is nice"
    assert wrapper.run_api("Which city?") == "Paris is nice"


def test_the_docs_agent_wrapper_streams_its_answer(tmp_path):
    wrapper = load_wrapper(tmp_path, AGENT_WRAPPER).PipelineWrapper()
    wrapper.setup()

    async def chat() -> list:
        stream = await wrapper.run_chat_completion_async("agent", [{"role": "user", "content": "Weather?"}], {})
        return [chunk async for chunk in stream]

    chunks = asyncio.run(chat())
    assert [chunk.content for chunk in chunks] == ["Sunny", "."]
    assert asyncio.run(wrapper.run_api_async("Weather?")) == "Sunny."
