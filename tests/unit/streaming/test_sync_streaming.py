"""streaming_generator: a Pipeline or an Agent run in a thread, its chunks yielded as they are streamed."""

import logging
import threading
import time
from queue import Queue

import pytest
from haystack import Pipeline, component
from haystack.components.builders import ChatPromptBuilder
from haystack.core.errors import PipelineRuntimeError
from haystack.dataclasses import ChatMessage, StreamingChunk

from hayhooks import PipelineEvent, default_on_tool_call_end, default_on_tool_call_start, streaming_generator
from hayhooks.events import create_status_event
from hayhooks.pipelines.streaming import configure_streaming
from tests.unit.streaming.fakes import FakeChatGenerator, SyncChatGenerator, chat_pipeline, tool_agent

QUERY = {"prompt_builder": {"query": "hi"}}


def contents(items) -> list[str]:
    return [item.content for item in items if isinstance(item, StreamingChunk)]


@pytest.fixture
def configured_all():
    configure_streaming("all")
    yield
    configure_streaming("")


def test_chunks_arrive_while_the_generator_still_produces():
    llm = SyncChatGenerator(words=[str(i) for i in range(10)], delay=0.02)
    stream = streaming_generator(chat_pipeline(llm=llm), pipeline_run_args=QUERY)

    first = next(stream)
    produced_at_first = len(llm.produced)
    rest = list(stream)

    assert first.content == "0"
    assert produced_at_first < 10
    assert contents(rest) == [str(i) for i in range(1, 10)]


def two_generators() -> tuple[Pipeline, SyncChatGenerator, SyncChatGenerator]:
    first, second = SyncChatGenerator(words=["1a", "1b"]), SyncChatGenerator(words=["2a", "2b"])
    return chat_pipeline(first=first, second=second), first, second


@pytest.mark.parametrize(
    ("streaming_components", "expected"),
    [(None, ["2a", "2b"]), ("all", ["1a", "1b", "2a", "2b"]), (["first"], ["1a", "1b"]), ([], [])],
)
def test_streaming_components_choose_who_streams(streaming_components, expected):
    pipeline, _, _ = two_generators()
    stream = streaming_generator(pipeline, pipeline_run_args=QUERY, streaming_components=streaming_components)

    assert contents(stream) == expected


def test_the_configured_setting_is_the_default(configured_all):
    pipeline, _, _ = two_generators()

    assert contents(streaming_generator(pipeline, pipeline_run_args=QUERY)) == ["1a", "1b", "2a", "2b"]
    assert contents(streaming_generator(pipeline, pipeline_run_args=QUERY, streaming_components=["second"])) == [
        "2a",
        "2b",
    ]


def test_configuring_names_and_back_to_the_last_component():
    pipeline, _, _ = two_generators()
    try:
        configure_streaming(" first , ")
        assert contents(streaming_generator(pipeline, pipeline_run_args=QUERY)) == ["1a", "1b"]
    finally:
        configure_streaming("")
    assert contents(streaming_generator(pipeline, pipeline_run_args=QUERY)) == ["2a", "2b"]


def test_caller_run_args_are_not_modified():
    args = {"prompt_builder": {"query": "hi"}, "llm": {}}
    list(streaming_generator(chat_pipeline(llm=SyncChatGenerator()), pipeline_run_args=args))

    assert args == {"prompt_builder": {"query": "hi"}, "llm": {}}


def test_a_pipeline_without_streaming_components_is_refused():
    pipeline = Pipeline()
    pipeline.add_component("prompt_builder", ChatPromptBuilder(template=[ChatMessage.from_user("{{ query }}")]))

    with pytest.raises(ValueError, match="No streaming-capable components"):
        streaming_generator(pipeline, pipeline_run_args=QUERY)


def test_agent_tool_calls_become_events_around_their_chunks():
    agent = tool_agent(FakeChatGenerator(call_tool=True, words=["three"]))
    items = list(
        streaming_generator(
            agent,
            pipeline_run_args={"messages": [ChatMessage.from_user("1+2?")]},
            on_tool_call_start=default_on_tool_call_start,
            on_tool_call_end=default_on_tool_call_end,
        )
    )

    kinds = [
        item.type if isinstance(item, PipelineEvent) else "details" if isinstance(item, str) else "chunk"
        for item in items
    ]
    assert kinds[:5] == ["status", "chunk", "status", "details", "chunk"]  # start, tool call, end, result
    assert items[0].data.description == "Calling 'add' tool..."
    assert items[1].tool_calls[0].tool_name == "add"
    assert items[2].data.done is True
    assert "Response:\n3" in items[3]
    assert items[4].tool_call_result.result == "3"
    assert contents(items)[-1] == "three"


def test_reasoning_and_pipeline_end_callbacks():
    seen = []
    llm = SyncChatGenerator(reasoning="pondering", words=["x"])
    items = list(
        streaming_generator(
            chat_pipeline(llm=llm),
            pipeline_run_args=QUERY,
            on_reasoning=lambda text, extra: seen.append(extra) or [f"thought: {text}", None],
            on_pipeline_end=lambda result: f"done: {result['llm']['replies'][0].text}",
        )
    )

    assert items[0] == "thought: pondering"
    assert items[1].reasoning.reasoning_text == "pondering"
    assert seen == [{}]
    assert contents(items) == ["", "x", "done: x"]


def test_a_failing_callback_is_logged_and_the_stream_goes_on(caplog):
    def broken(result):
        raise KeyError("oops")

    with caplog.at_level(logging.ERROR, logger="hayhooks.streaming"):
        items = list(
            streaming_generator(chat_pipeline(llm=SyncChatGenerator()), pipeline_run_args=QUERY, on_pipeline_end=broken)
        )

    assert contents(items) == ["a", "b", "c"]
    assert "broken" in caplog.text


@component
class Announce:
    """Puts an event on a queue from inside the run, then passes its input on."""

    def __init__(self, queue) -> None:
        self.queue = queue

    @component.output_types(query=str)
    def run(self, query: str):
        self.queue.put(create_status_event("looking it up"))
        time.sleep(0.03)  # longer than the generator's poll, so the event is seen before any chunk
        return {"query": query}


def test_external_queue_items_are_yielded_with_the_chunks():
    events: Queue = Queue()
    events.put("queued before the run")
    pipeline = chat_pipeline(llm=SyncChatGenerator(words=["a"]))
    pipeline.add_component("announce", Announce(events))
    pipeline.connect("announce.query", "prompt_builder.query")

    items = list(
        streaming_generator(pipeline, pipeline_run_args={"announce": {"query": "hi"}}, external_event_queue=events)
    )

    assert items[0] == "queued before the run"
    assert items[1].data.description == "looking it up"
    assert contents(items) == ["a"]


def test_a_pipeline_error_is_raised_by_the_generator_after_the_chunks_before_it():
    stream = streaming_generator(chat_pipeline(llm=SyncChatGenerator(fail_after=2)), pipeline_run_args=QUERY)

    received = []
    with pytest.raises(PipelineRuntimeError, match="the model broke down"):
        for item in stream:
            received.append(item.content)
    assert received == ["a", "b"]


def stream_threads() -> list[threading.Thread]:
    return [thread for thread in threading.enumerate() if thread.name == "hayhooks-stream"]


def test_closing_the_generator_stops_the_run_at_its_next_chunk():
    llm = SyncChatGenerator(words=[str(i) for i in range(400)], delay=0.005)
    stream = streaming_generator(chat_pipeline(llm=llm), pipeline_run_args=QUERY)
    assert [next(stream).content for _ in range(3)] == ["0", "1", "2"]

    stream.close()
    produced_at_close = len(llm.produced)
    time.sleep(0.1)  # 20 more chunks' worth, had the run gone on

    assert produced_at_close <= 5
    assert len(llm.produced) == produced_at_close
    assert stream_threads() == []


def test_closing_an_agent_stream_stops_the_agent():
    llm = FakeChatGenerator(words=[str(i) for i in range(400)], delay=0.005)
    stream = streaming_generator(tool_agent(llm), pipeline_run_args={"messages": [ChatMessage.from_user("go")]})
    next(stream)

    stream.close()
    time.sleep(0.05)

    assert len(llm.produced) <= 3
    assert stream_threads() == []
