"""Streaming a pipeline's generator to a client, and stopping it when the client goes away.

:class:`PipelineStream` sends the items of a generator (sync or async) as they come, each framed by
a :class:`Framing`: plain text and server-sent events for ``/NAME/run``, OpenAI's chunk and event
formats for the chat endpoints. It watches for the client's disconnect while it streams: then the
generator is closed at once (a sync one by the thread that iterates it), so a pipeline streaming
through ``streaming_generator`` stops at its next chunk instead of running to the end for nobody.
An exception mid-stream ends the stream with a visible error and a log line.
"""

import asyncio
import contextlib
import functools
import json
import logging
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator
from typing import Any, Protocol

from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from hayhooks.errors import USER_ERRORS
from hayhooks.pipelines.sse import SSEStream

logger = logging.getLogger("hayhooks.run")

Source = Generator[Any, None, None] | AsyncGenerator[Any, None]
_AHEAD = 16  # items a sync generator may produce before the client has been sent them
_END = object()


def is_stream(result: Any) -> bool:
    return isinstance(result, SSEStream | Generator | AsyncGenerator)


class Framing(Protocol):
    """How one kind of stream puts items on the wire."""

    media_type: bytes

    def frame(self, item: Any) -> bytes | None:
        """The bytes of one item; ``None`` for an item this stream does not carry."""

    def error(self, message: str) -> bytes:
        """The last bytes of a stream whose source raised."""

    def end(self) -> bytes:
        """The last bytes of a stream that ended well."""


class PlainText:
    media_type = b"text/plain; charset=utf-8"

    def frame(self, item: Any) -> bytes | None:
        text = item_text(item)
        return None if text is None else text.encode()

    def error(self, message: str) -> bytes:
        return f"\n{message}\n".encode()

    def end(self) -> bytes:
        return b""


class ServerSentEvents(PlainText):
    """Each item an SSE ``data:`` event, one ``data:`` line per line of it."""

    media_type = b"text/event-stream"

    def frame(self, item: Any) -> bytes | None:
        text = item_text(item)
        return None if text is None else sse_data(text)

    def error(self, message: str) -> bytes:
        return f"event: error\ndata: {json.dumps({'error': message})}\n\n".encode()


def sse_data(text: str) -> bytes:
    lines = text.splitlines() or [""]
    return ("".join(f"data: {line}\n" if line else "data:\n" for line in lines) + "\n").encode()


class PipelineStream(Response):
    """An ASGI response that streams a run's generator; ``describe_error`` words a mid-stream failure.

    A :class:`Response` so that FastAPI passes it through; none of Response's body handling is used.
    """

    background: BackgroundTask | None = None

    def __init__(
        self,
        source: Source,
        framing: Framing,
        *,
        headers: dict[str, str],
        describe_error: Callable[[BaseException], str],
        label: str,
    ) -> None:
        self.source = source
        self.framing = framing
        self.raw_headers = [
            (b"content-type", framing.media_type),
            *((k.encode(), v.encode()) for k, v in headers.items()),
        ]
        if framing.media_type == b"text/event-stream":
            self.raw_headers += [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
        self.describe_error = describe_error
        self.label = label

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        streaming = asyncio.ensure_future(self._stream(send))
        disconnect = asyncio.ensure_future(_disconnected(receive))
        try:
            await asyncio.wait((streaming, disconnect), return_when=asyncio.FIRST_COMPLETED)
        finally:
            disconnect.cancel()
            if not streaming.done():  # the client left (or this request was cancelled): stop the work
                logger.info("%s: the client went away, stream stopped", self.label)
                streaming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await streaming
        if self.background is not None:
            await self.background()

    async def _stream(self, send: Send) -> None:
        items = iterate(self.source)
        framing = self.framing
        try:
            async for item in items:
                data = framing.frame(item)
                if data:
                    await send({"type": "http.response.body", "body": data, "more_body": True})
            tail = framing.end()
        except USER_ERRORS as error:
            logger.error("%s: the stream failed", self.label, exc_info=error)
            tail = framing.error(self.describe_error(error))
        finally:
            await _close(items)
        await send({"type": "http.response.body", "body": tail, "more_body": False})


def iterate(source: Source) -> AsyncIterator[Any]:
    """The items of a sync or async generator, on the event loop; closing it closes the source."""
    return _from_thread(source) if isinstance(source, Generator) else source


async def join_text(source: Source | SSEStream) -> str:
    """A whole stream's text, for a client that did not ask to stream (or cannot: an MCP tool call)."""
    if isinstance(source, SSEStream):
        source = source.stream
    if isinstance(source, Generator):
        return await run_in_threadpool(_join_sync, source)
    try:
        return "".join([text async for item in source if (text := item_text(item))])
    finally:
        await source.aclose()


def _join_sync(source: Generator[Any, None, None]) -> str:
    with contextlib.closing(source):
        return "".join(text for item in source if (text := item_text(item)))


def item_text(item: Any) -> str | None:
    """The text an item of a stream carries; ``None`` for UI events (PipelineEvent), which only
    the chat endpoints send on."""
    if isinstance(item, str):
        return item
    if isinstance(item, bytes):
        return item.decode("utf-8", "replace")
    if item is None:
        return ""
    if isinstance(item, streaming_chunk_type()):
        if item.content:
            return item.content
        reasoning = getattr(item, "reasoning", None)
        return getattr(reasoning, "reasoning_text", "") or ""
    if callable(getattr(item, "to_event_dict", None)):
        return None
    try:
        return json.dumps(item)
    except (TypeError, ValueError):
        return str(item)


@functools.cache
def streaming_chunk_type() -> type:
    """Haystack's StreamingChunk, imported on first use: importing the app stays free of Haystack."""
    from haystack.dataclasses import StreamingChunk

    return StreamingChunk


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _close(items: AsyncIterator[Any]) -> None:
    aclose = getattr(items, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


async def _from_thread(generator: Generator[Any, None, None]) -> AsyncGenerator[Any, None]:
    """Iterate a sync generator in a thread of its own, which also closes it (a generator may be
    closed only by the thread that runs it) as soon as the consumer stops."""
    loop = asyncio.get_running_loop()
    arrived: asyncio.Queue[tuple[Any, BaseException | None]] = asyncio.Queue()
    room = threading.Semaphore(_AHEAD)
    stopped = threading.Event()

    def hand_over(item: Any, error: BaseException | None = None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is listening any more
            loop.call_soon_threadsafe(arrived.put_nowait, (item, error))

    def produce() -> None:
        try:
            for item in _until_stopped(generator, stopped, room):
                hand_over(item)
        except BaseException as error:  # handed to the consumer, which raises it
            hand_over(_END, error)
        else:
            hand_over(_END)
        finally:
            generator.close()

    threading.Thread(target=produce, name="hayhooks-stream", daemon=True).start()
    try:
        while True:
            item, error = await arrived.get()
            if error is not None:
                raise error
            if item is _END:
                return
            yield item
            room.release()
    finally:
        stopped.set()
        room.release()  # a producer waiting for room sees the stop


def _until_stopped(generator: Iterator[Any], stopped: threading.Event, room: threading.Semaphore) -> Iterator[Any]:
    while True:
        room.acquire()
        if stopped.is_set():
            return
        try:
            item = next(generator)
        except StopIteration:
            return
        if stopped.is_set():
            return
        yield item
