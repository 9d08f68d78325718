"""Marking a wrapper's return value as a Server-Sent Events stream."""

from collections.abc import AsyncGenerator, Generator
from dataclasses import dataclass
from typing import Any


@dataclass
class SSEStream:
    """Return ``SSEStream(gen)`` from ``run_api``/``run_api_async`` to send ``gen`` (sync or async) as
    ``text/event-stream``; a generator returned bare streams as plain text."""

    stream: Generator[Any, None, None] | AsyncGenerator[Any, None]
