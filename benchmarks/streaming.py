"""Timing a streamed answer from the client's side: time to the first body byte, and chunks per second.

A raw HTTP/1.1 client on asyncio streams (standard library only), so what is timed is the server:
one request at a time, on a fresh connection each, as a chat front-end opens them.
"""

from __future__ import annotations

import asyncio
import json
import statistics
import time
from dataclasses import dataclass

from hayhooks.bench.server import HOST


@dataclass
class StreamTiming:
    first_chunk_ms: float  # median, request sent -> first body bytes
    first_chunk_p90_ms: float
    chunks_per_second: float  # of one long stream, median over the repeats
    requests: int


async def _stream(port: int, path: str, body: dict) -> tuple[float, float, int]:
    """One streamed request: (seconds to the first body bytes, seconds to the end, body bytes)."""
    reader, writer = await asyncio.open_connection(HOST, port)
    payload = json.dumps(body).encode()
    head = (
        f"POST {path} HTTP/1.1\r\nhost: {HOST}\r\ncontent-type: application/json\r\ncontent-length: {len(payload)}\r\n"
    )
    started = time.perf_counter()
    writer.write(head.encode() + b"connection: close\r\n\r\n" + payload)
    await writer.drain()
    headers = await reader.readuntil(b"\r\n\r\n")
    if not headers.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"{path} answered {headers.splitlines()[0]!r}")
    first = await reader.read(65536)
    first_at = time.perf_counter() - started
    size = len(first)
    while chunk := await reader.read(65536):
        size += len(chunk)
    ended = time.perf_counter() - started
    writer.close()
    return first_at, ended, size


def time_stream(port: int, path: str, *, short: int, long: int, requests: int, repeats: int) -> StreamTiming:
    """``requests`` streams of ``short`` items for the first-chunk times, ``repeats`` of ``long`` items for the rate."""

    async def measure() -> StreamTiming:
        for _ in range(5):  # warm-up: the first requests of a worker pay for lazy imports
            await _stream(port, path, {"count": short})
        firsts = sorted([(await _stream(port, path, {"count": short}))[0] * 1000 for _ in range(requests)])
        rates = []
        for _ in range(repeats):
            _, ended, _size = await _stream(port, path, {"count": long})
            rates.append(long / ended)
        return StreamTiming(
            first_chunk_ms=round(statistics.median(firsts), 3),
            first_chunk_p90_ms=round(firsts[int(0.9 * (len(firsts) - 1))], 3),
            chunks_per_second=round(statistics.median(rates), 1),
            requests=requests,
        )

    return asyncio.run(measure())
