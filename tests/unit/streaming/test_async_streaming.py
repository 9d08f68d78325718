"""async_streaming_generator: run_async as a task, chunks yielded as they are streamed, the task ended on close."""

import asyncio

import pytest
from haystack.core.errors import PipelineRuntimeError
from haystack.dataclasses import ChatMessage, StreamingChunk

from hayhooks import async_streaming_generator, default_on_tool_call_end, default_on_tool_call_start
from hayhooks.events import PipelineEvent, create_status_event
from tests.unit.streaming.fakes import FakeChatGenerator, SyncChatGenerator, chat_pipeline, tool_agent

QUERY = {"prompt_builder": {"query": "hi"}}


def contents(items) -> list[str]:
    return [item.content for item in items if isinstance(item, StreamingChunk)]


def stream_all(pipeline, **options) -> list:
    """Everything the generator yields, created (as wrappers do) inside a running loop."""

    async def main():
        return [item async for item in async_streaming_generator(pipeline, **options)]

    return asyncio.run(main())


def words(n: int) -> list[str]:
    return [str(i) for i in range(n)]


def test_chunks_arrive_while_the_generator_still_produces():
    llm = FakeChatGenerator(words=words(10), delay=0.02)

    async def main():
        stream = async_streaming_generator(chat_pipeline(llm=llm), pipeline_run_args=QUERY)
        first = await anext(stream)
        produced_at_first = len(llm.produced)
        return first, produced_at_first, [item async for item in stream]

    first, produced_at_first, rest = asyncio.run(main())

    assert first.content == "0"
    assert produced_at_first < 10
    assert contents(rest) == words(10)[1:]


@pytest.mark.parametrize(("streaming_components", "expected"), [(None, ["2a"]), ("all", ["1a", "2a"])])
def test_streaming_components_choose_who_streams(streaming_components, expected):
    pipeline = chat_pipeline(first=FakeChatGenerator(words=["1a"]), second=FakeChatGenerator(words=["2a"]))
    items = stream_all(pipeline, pipeline_run_args=QUERY, streaming_components=streaming_components)

    assert contents(items) == expected


def test_a_sync_only_streaming_component_needs_the_hybrid_mode():
    pipeline = chat_pipeline(llm=SyncChatGenerator(words=["x", "y"]))

    with pytest.raises(ValueError, match="allow_sync_streaming_callbacks"):
        stream_all(pipeline, pipeline_run_args=QUERY)
    assert contents(stream_all(pipeline, pipeline_run_args=QUERY, allow_sync_streaming_callbacks=True)) == ["x", "y"]


def test_a_sync_only_component_that_does_not_stream_is_no_obstacle():
    pipeline = chat_pipeline(first=SyncChatGenerator(words=["1a"]), second=FakeChatGenerator(words=["2a"]))

    assert contents(stream_all(pipeline, pipeline_run_args=QUERY)) == ["2a"]


def test_agent_tool_calls_become_events_and_the_pipeline_end_a_chunk():
    agent = tool_agent(FakeChatGenerator(call_tool=True, words=["three"]))
    items = stream_all(
        agent,
        pipeline_run_args={"messages": [ChatMessage.from_user("1+2?")]},
        on_tool_call_start=default_on_tool_call_start,
        on_tool_call_end=default_on_tool_call_end,
        on_pipeline_end=lambda result: f"[{result['last_message'].text}]",
    )

    events = [item for item in items if isinstance(item, PipelineEvent)]
    assert [event.data.description for event in events] == ["Calling 'add' tool...", "Called 'add' tool"]
    assert any(isinstance(item, str) and "Response:\n3" in item for item in items)
    assert contents(items)[-2:] == ["three", "[three]"]


def test_an_agent_with_a_sync_only_chat_generator_streams_too():
    agent = tool_agent(SyncChatGenerator(words=["p", "q"]))
    items = stream_all(agent, pipeline_run_args={"messages": [ChatMessage.from_user("go")]})

    assert contents(items) == ["p", "q"]


def test_external_queue_items_are_yielded_with_the_chunks():
    llm = FakeChatGenerator(words=words(5), delay=0.01)

    async def main():
        events: asyncio.Queue = asyncio.Queue()
        events.put_nowait("queued before the run")
        stream = async_streaming_generator(chat_pipeline(llm=llm), pipeline_run_args=QUERY, external_event_queue=events)
        items = []
        async for item in stream:
            items.append(item)
            if getattr(item, "content", None) == "1":
                events.put_nowait(create_status_event("halfway"))
        return items

    items = asyncio.run(main())

    assert items[0] == "queued before the run"
    position = next(i for i, item in enumerate(items) if isinstance(item, PipelineEvent))
    assert items[position].data.description == "halfway"
    assert contents(items[:position]) == ["0", "1"]
    assert contents(items) == words(5)


def test_a_pipeline_error_is_raised_by_the_generator_after_the_chunks_before_it():
    async def main(received):
        async for item in async_streaming_generator(
            chat_pipeline(llm=FakeChatGenerator(fail_after=2)), pipeline_run_args=QUERY
        ):
            received.append(item.content)

    received = []
    with pytest.raises(PipelineRuntimeError, match="the model broke down"):
        asyncio.run(main(received))
    assert received == ["a", "b"]


def read_three_then_close(llm, **options):
    """Read three chunks, close the stream, then watch the generator for 0.1 s: (produced at close, after)."""

    async def main():
        stream = async_streaming_generator(chat_pipeline(llm=llm), pipeline_run_args=QUERY, **options)
        assert [(await anext(stream)).content for _ in range(3)] == ["0", "1", "2"]
        await stream.aclose()
        produced_at_close = len(llm.produced)
        await asyncio.sleep(0.1)  # 20 more chunks' worth, had the run gone on
        return produced_at_close, len(llm.produced)

    return asyncio.run(main())


def test_closing_the_generator_cancels_the_run():
    llm = FakeChatGenerator(words=words(400), delay=0.005)

    produced_at_close, produced_later = read_three_then_close(llm)

    assert llm.cancelled
    assert produced_at_close <= 4
    assert produced_later == produced_at_close


def test_closing_stops_a_sync_component_streaming_from_its_thread():
    llm = SyncChatGenerator(words=words(400), delay=0.005)

    produced_at_close, produced_later = read_three_then_close(llm, allow_sync_streaming_callbacks=True)

    # Cancelling cannot reach the thread; its next chunk can, and that chunk is the last it makes.
    assert produced_at_close <= 5
    assert produced_later <= produced_at_close + 1


def test_a_shielded_run_goes_on_to_its_end_after_the_close():
    llm = FakeChatGenerator(words=words(30), delay=0.005)

    async def main():
        stream = async_streaming_generator(chat_pipeline(llm=llm), pipeline_run_args=QUERY, shield_pipeline_task=True)
        await anext(stream)
        await stream.aclose()
        for _ in range(100):
            if len(llm.produced) == 30:
                break
            await asyncio.sleep(0.01)

    asyncio.run(main())

    assert len(llm.produced) == 30
    assert not llm.cancelled
