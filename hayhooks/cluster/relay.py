"""Hand an HTTP request to the sibling worker that can answer it, over a local socket.

An MCP client of the legacy HTTP+SSE transport holds its event stream open on one worker and posts
its messages to ``/messages/``, where the load balancer (or the kernel, under gunicorn) may pick any
worker. A worker that does not hold the session relays the message to its siblings; the one that
holds it answers, and the reply goes back to the client. Each worker listens on a Unix socket in
Linux's abstract namespace, named after the runtime folder and its pid: nothing to clean up, gone
with the process. The siblings are the live workers of the board.

Frames are a 4-byte big-endian length and that many bytes: a JSON head, then the body, each way.
"""

import asyncio
import contextlib
import json
import logging
import os
import struct
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from hayhooks.cluster.runtime import connect_local, from_this_user, local_address

logger = logging.getLogger("hayhooks.relay")

_LENGTH = struct.Struct(">I")
_MAX_FRAME = 16 * 1024 * 1024
_CONNECT_SECONDS = 2.0
_ANSWER_SECONDS = 30.0


@dataclass
class Relayed:
    """A request or an answer as it crosses: a JSON head and a body."""

    head: dict
    body: bytes


Deliver = Callable[[Relayed], Awaitable[Relayed]]  # answers a relayed request in this worker


def relay_address(runtime_dir: Path, pid: int) -> str:
    """The abstract socket name of worker ``pid`` of the server whose runtime folder is ``runtime_dir``."""
    return local_address(runtime_dir, f"relay-{pid}")


class Relay:
    """This worker's end: serves relayed requests with ``deliver``, and relays its own to siblings."""

    def __init__(self, runtime_dir: Path, deliver: Deliver) -> None:
        self.runtime_dir = runtime_dir
        self.deliver = deliver
        self._server: asyncio.AbstractServer | None = None

    async def start(self) -> None:
        address = relay_address(self.runtime_dir, os.getpid())
        try:
            self._server = await asyncio.start_unix_server(self._serve, address)
        except OSError as error:  # another app of this process holds it (tests build several)
            logger.warning("no relay for this worker (%s): its SSE sessions get only messages sent to it", error)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 1.0)
            self._server = None

    async def ask(
        self, pids: Iterable[int], request: Relayed, *, declined: Callable[[Relayed], bool]
    ) -> Relayed | None:
        """Relay ``request`` to each of ``pids`` at once; the first answer that is not ``declined``, else None."""
        others = [pid for pid in pids if pid != os.getpid()]
        if not others:
            return None
        pending = {asyncio.create_task(self._ask_one(pid, request)) for pid in others}
        try:
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    answer = task.result()
                    if answer is not None and not declined(answer):
                        return answer
        finally:
            for task in pending:
                task.cancel()
        return None

    async def _ask_one(self, pid: int, request: Relayed) -> Relayed | None:
        try:
            reader, writer = await asyncio.open_unix_connection(
                sock=connect_local(relay_address(self.runtime_dir, pid), _CONNECT_SECONDS)
            )
        except OSError:
            return None  # a worker that is gone or has no relay (it is starting or stopping)
        try:
            await _write(writer, request)
            return await asyncio.wait_for(_read(reader), _ANSWER_SECONDS)
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as error:
            logger.warning("relay to worker %s failed: %s", pid, error)
            return None
        finally:
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not from_this_user(writer):
            writer.close()
            return
        try:
            request = await _read(reader)
            await _write(writer, await self.deliver(request))
        except (OSError, ValueError, asyncio.IncompleteReadError):
            pass  # the asking worker went away, or sent garbage: nothing to answer
        except Exception:
            logger.exception("BUG in hayhooks answering a relayed request")
        finally:
            writer.close()


async def _write(writer: asyncio.StreamWriter, message: Relayed) -> None:
    head = json.dumps(message.head).encode()
    writer.write(_LENGTH.pack(len(head)) + head + _LENGTH.pack(len(message.body)) + message.body)
    await writer.drain()


async def _read(reader: asyncio.StreamReader) -> Relayed:
    head = json.loads(await _frame(reader))
    if not isinstance(head, dict):
        raise ValueError("a relayed head must be a JSON object")
    return Relayed(head, await _frame(reader))


async def _frame(reader: asyncio.StreamReader) -> bytes:
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if length > _MAX_FRAME:
        raise ValueError(f"relayed frame of {length} bytes is over the limit")
    return await reader.readexactly(length)
