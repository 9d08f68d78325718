"""Running a pipeline or an Agent and yielding its streamed chunks as they come.

The generators hand a streaming callback to the pipeline's streaming components, run it (sync: in
a thread; async: as a task) and yield each chunk, what the user callbacks make of it, and the
items of an optional external event queue. Stopping is part of the contract: once the consumer
closes the generator (a web server does when the client disconnects), the callback raises at the
next chunk, which ends a run in a thread, and the async variant also cancels its task.
"""

import asyncio
import contextvars
import logging
import threading
from collections.abc import AsyncGenerator, Awaitable, Callable, Generator
from contextvars import ContextVar
from dataclasses import dataclass
from functools import partial
from queue import Empty, Queue
from typing import TYPE_CHECKING, Any, Literal

from hayhooks.pipelines.stream_hooks import OnPipelineEnd, OnReasoning, OnToolCallEnd, OnToolCallStart, StreamHooks

if TYPE_CHECKING:
    from haystack.dataclasses import StreamingChunk

logger = logging.getLogger("hayhooks.streaming")

StreamingComponents = list[str] | Literal["all"] | None
_POLL_SECONDS = 0.01  # how often the sync generator looks at its external event queue
_STOP_SECONDS = 1.0  # how long closing waits for the run to reach its next chunk, or its cancellation, and end
_default_streaming_components: StreamingComponents = None  # None: the last streaming-capable component


def configure_streaming(setting_value: str) -> None:
    """Set which components stream when a call does not say: ``HAYHOOKS_STREAMING_COMPONENTS``.

    Empty means the last streaming-capable component, ``all`` every one, else comma-separated names.
    A worker calls this once at start.
    """
    global _default_streaming_components
    _default_streaming_components = _parse_streaming_components(setting_value)


def _parse_streaming_components(setting_value: str) -> StreamingComponents:
    value = setting_value.strip()
    if value.lower() == "all":
        return "all"
    return [name.strip() for name in value.split(",") if name.strip()] or None


class _StreamClosed(BaseException):
    """Raised by the streaming callback once the consumer has gone, to end the run at its next chunk.

    Not an Exception, so neither Haystack (which wraps a component's errors and snapshots the run)
    nor a component's own ``except Exception`` mistakes it for a failure to handle.
    """


@dataclass
class _Stream:
    """Where one run's streaming callbacks put chunks (``put`` is safe from any thread)."""

    put: Callable[[Any], None]
    closed: bool = False

    def send(self, chunk: "StreamingChunk") -> None:
        if self.closed:
            raise _StreamClosed
        self.put(chunk)


@dataclass
class _End:
    """The last item of a run: its result or what it raised."""

    result: Any = None
    error: BaseException | None = None


# The callbacks are module-level functions that find their stream in the context, because Haystack
# deep-copies and, when a run fails, serializes component inputs: a closure would not serialize.
_STREAM: ContextVar[_Stream] = ContextVar("hayhooks_stream")


def _send_chunk(chunk: "StreamingChunk") -> None:
    _STREAM.get().send(chunk)


async def _send_chunk_async(chunk: "StreamingChunk") -> None:
    _STREAM.get().send(chunk)


def streaming_generator(  # noqa: PLR0913
    pipeline: Any,
    *,
    pipeline_run_args: dict[str, Any] | None = None,
    on_tool_call_start: OnToolCallStart = None,
    on_tool_call_end: OnToolCallEnd = None,
    on_reasoning: OnReasoning = None,
    on_pipeline_end: OnPipelineEnd = None,
    streaming_components: StreamingComponents = None,
    include_outputs_from: set[str] | None = None,
    external_event_queue: "Queue[Any] | None" = None,
) -> Generator[Any, None, None]:
    """Run ``pipeline`` (a Pipeline or an Agent) in a thread and yield its chunks as they are streamed.

    ``streaming_components`` picks the components that stream: a list of names, ``"all"``, or
    None for the server's setting (by default the last streaming-capable component). Also yielded:
    what the ``on_*`` callbacks return (events or strings) and the items put on
    ``external_event_queue``; ``on_pipeline_end``'s text comes last, as a chunk. The run's error is
    raised by the generator. Closing the generator stops the run at its next chunk.
    """
    run_args = _with_callbacks(pipeline, pipeline_run_args or {}, lambda _: _send_chunk, streaming_components)
    run = _bind(pipeline, pipeline.run, run_args, include_outputs_from)
    hooks = StreamHooks(on_tool_call_start, on_tool_call_end, on_reasoning, on_pipeline_end)
    return _stream_from_thread(run, hooks, external_event_queue)


def async_streaming_generator(  # noqa: PLR0913
    pipeline: Any,
    *,
    pipeline_run_args: dict[str, Any] | None = None,
    on_tool_call_start: OnToolCallStart = None,
    on_tool_call_end: OnToolCallEnd = None,
    on_reasoning: OnReasoning = None,
    on_pipeline_end: OnPipelineEnd = None,
    streaming_components: StreamingComponents = None,
    include_outputs_from: set[str] | None = None,
    allow_sync_streaming_callbacks: bool = False,
    external_event_queue: "asyncio.Queue[Any] | None" = None,
    shield_pipeline_task: bool = False,
) -> AsyncGenerator[Any, None]:
    """The async :func:`streaming_generator`: ``run_async`` as a task on the running loop.

    Streaming components need a ``run_async``; with ``allow_sync_streaming_callbacks`` those
    without one stream too, from the thread Haystack runs them in. Closing the generator cancels
    the task, unless ``shield_pipeline_task``: then the run goes on to its end, unread.
    """

    def callback_for(component: Any) -> Callable[["StreamingChunk"], Any]:
        # An Agent streams what its chat generator streams; it runs a sync-only one in a thread.
        agent = _is_agent(component)
        if callable(getattr(component.chat_generator if agent else component, "run_async", None)):
            return _send_chunk_async
        if agent or allow_sync_streaming_callbacks:
            return _send_chunk
        raise ValueError(
            f"Component of type '{type(component).__name__}' has no 'run_async', so it cannot stream in an async "
            "pipeline. Use streaming_generator, a component with 'run_async', or allow_sync_streaming_callbacks=True."
        )

    run_args = _with_callbacks(pipeline, pipeline_run_args or {}, callback_for, streaming_components)
    run = _bind(pipeline, pipeline.run_async, run_args, include_outputs_from)
    hooks = StreamHooks(on_tool_call_start, on_tool_call_end, on_reasoning, on_pipeline_end)
    return _stream_from_task(run, hooks, external_event_queue, shield=shield_pipeline_task)


def _stream_from_thread(
    run: Callable[[], Any], hooks: StreamHooks, external: "Queue[Any] | None"
) -> Generator[Any, None, None]:
    items: Queue[Any] = Queue()
    stream = _Stream(items.put)

    def produce() -> None:
        _STREAM.set(stream)
        try:
            items.put(_End(result=run()))
        except _StreamClosed:
            pass  # the consumer has gone: nobody to tell
        except BaseException as error:  # noqa: BLE001 - handed to the consumer, which raises it
            items.put(_End(error=error))

    # The thread runs in a copy of the consumer's context, so e.g. the request id reaches its log lines.
    context = contextvars.copy_context()
    thread = threading.Thread(target=context.run, args=(produce,), name="hayhooks-stream", daemon=True)
    thread.start()
    try:
        while True:
            if external is not None:
                yield from _drain(external)
                try:
                    item = items.get(timeout=_POLL_SECONDS)
                except Empty:
                    continue
            else:
                item = items.get()
            if isinstance(item, _End):
                break
            yield from hooks.around(item)
        if external is not None:
            yield from _drain(external)
        if item.error is not None:
            raise item.error
        if (last := hooks.end(item.result)) is not None:
            yield last
    finally:
        stream.closed = True
        thread.join(_STOP_SECONDS)


async def _stream_from_task(
    run: Callable[[], Awaitable[Any]],
    hooks: StreamHooks,
    external: "asyncio.Queue[Any] | None",
    *,
    shield: bool,
) -> AsyncGenerator[Any, None]:
    loop = asyncio.get_running_loop()
    items: asyncio.Queue[Any] = asyncio.Queue()
    # Thread-safe, as sync components stream from Haystack's threads; one path keeps chunks in order.
    stream = _Stream(partial(loop.call_soon_threadsafe, items.put_nowait))
    context = contextvars.copy_context()
    context.run(_STREAM.set, stream)
    task = loop.create_task(run(), context=context)
    task.add_done_callback(lambda done: stream.put(_end_of(done)))
    next_chunk: asyncio.Task[Any] | None = None
    next_event: asyncio.Task[Any] | None = None
    try:
        while True:
            next_chunk = next_chunk or asyncio.ensure_future(items.get())
            waiting = {next_chunk}
            if external is not None:
                next_event = next_event or asyncio.ensure_future(external.get())
                waiting.add(next_event)
            await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if next_event is not None and next_event.done():
                event, next_event = next_event.result(), None
                yield event
            if next_chunk.done():
                item, next_chunk = next_chunk.result(), None
                if isinstance(item, _End):
                    break
                for each in hooks.around(item):
                    yield each
        if external is not None:
            if next_event is not None:
                next_event.cancel()  # a cancelled Queue.get leaves its item in the queue
            while not external.empty():
                yield external.get_nowait()
        if item.error is not None:
            raise item.error
        if (last := hooks.end(item.result)) is not None:
            yield last
    finally:
        for getter in (next_chunk, next_event):
            if getter is not None:
                getter.cancel()
        if not task.done():
            await _stop(task, stream, shield=shield)


def _end_of(task: "asyncio.Task[Any]") -> _End:
    if task.cancelled():
        return _End(error=asyncio.CancelledError())
    error = task.exception()
    return _End(error=error) if error is not None else _End(result=task.result())


_detached: set["asyncio.Task[Any]"] = set()  # shielded runs nobody awaits any more; the loop holds tasks weakly


async def _stop(task: "asyncio.Task[Any]", stream: _Stream, *, shield: bool) -> None:
    """End a run whose consumer has gone: cancel it, or with ``shield`` let it finish unread."""
    if shield:
        _detached.add(task)
        task.add_done_callback(_forget)
        return
    stream.closed = True  # stops the chunks of sync components in threads, which cancelling cannot
    task.cancel()
    await asyncio.wait({task}, timeout=_STOP_SECONDS)


def _forget(task: "asyncio.Task[Any]") -> None:
    _detached.discard(task)
    if not task.cancelled() and (error := task.exception()) is not None:
        logger.error("A shielded pipeline run failed after its stream closed", exc_info=error)


def _drain(queue: "Queue[Any]") -> Generator[Any, None, None]:
    while True:
        try:
            yield queue.get_nowait()
        except Empty:
            return


def _is_agent(pipeline: Any) -> bool:
    from haystack.components.agents import Agent

    return isinstance(pipeline, Agent)


def _bind(pipeline: Any, run: Callable[..., Any], run_args: dict[str, Any], include_outputs_from: Any) -> Callable:
    """``run`` with its arguments: an Agent takes them as keywords, a Pipeline as ``data``."""
    if _is_agent(pipeline):
        return partial(run, **run_args)
    return partial(run, data=run_args, include_outputs_from=include_outputs_from)


def _with_callbacks(
    pipeline: Any,
    run_args: dict[str, Any],
    callback_for: Callable[[Any], Callable[["StreamingChunk"], Any]],
    streaming_components: StreamingComponents,
) -> dict[str, Any]:
    """A copy of ``run_args`` that gives each chosen streaming component its callback."""
    from haystack.core.pipeline.base import PipelineBase

    if _is_agent(pipeline):
        return {**run_args, "streaming_callback": callback_for(pipeline)}
    if not isinstance(pipeline, PipelineBase):
        raise ValueError(f"Unsupported pipeline type: {type(pipeline)}")
    capable = [(name, c) for name, c in pipeline.walk() if "streaming_callback" in c.__haystack_input__]
    if not capable:
        raise ValueError("No streaming-capable components found in the pipeline")
    chosen = _default_streaming_components if streaming_components is None else streaming_components
    if chosen is None:
        capable = capable[-1:]
    elif chosen != "all":
        capable = [(name, c) for name, c in capable if name in chosen]
    args = dict(run_args)
    for name, component in capable:
        args[name] = {**args.get(name, {}), "streaming_callback": callback_for(component)}
    return args
