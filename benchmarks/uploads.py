"""Timing an upload from the client's side, and the server's peak memory while it takes it.

One ``multipart/form-data`` request at a time on a fresh connection (standard library only), the
file sent from memory in 1 MiB writes, so what is timed is the server taking it in. The peak is
the server process's high-water mark of resident memory (``VmHWM``), reset before each upload
through ``/proc/PID/clear_refs``, over its resident memory just before.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

from hayhooks.bench.server import HOST

MIB = 1024 * 1024
BOUNDARY = "hayhooks-bench-boundary"


@dataclass
class UploadTiming:
    mib_per_second: float  # median over the repeats
    seconds: float  # median time of one upload, request sent -> answer read
    peak_extra_mib: float  # the most resident memory an upload added, over the repeats
    size_mib: int
    repeats: int


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/{pid}/status")


def _upload(port: int, path: str, payload: bytes) -> float:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="big.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    connection = http.client.HTTPConnection(HOST, port, timeout=300)
    started = time.perf_counter()
    connection.putrequest("POST", path)
    connection.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
    connection.putheader("Content-Length", str(len(head) + len(payload) + len(tail)))
    connection.endheaders()
    connection.send(head)
    view = memoryview(payload)
    for offset in range(0, len(payload), MIB):
        connection.send(view[offset : offset + MIB])
    connection.send(tail)
    response = connection.getresponse()
    body = response.read()
    seconds = time.perf_counter() - started
    connection.close()
    if response.status != 200:
        raise RuntimeError(f"{path} answered {response.status}: {body[:200]!r}")
    described = json.loads(body)["result"][0]
    if described["bytes"] != len(payload):
        raise RuntimeError(f"{path} saw {described['bytes']} bytes of {len(payload)}")
    return seconds


def time_uploads(targets: list[tuple[int, int]], path: str, *, size_mib: int, rounds: int) -> list[UploadTiming]:
    """``rounds`` uploads of one ``size_mib`` file to ``path`` of each ``(port, pid)`` server.

    The servers take turns, one upload each per round, so a slow moment of the machine (the page
    cache writing back the spooled files of the previous uploads, say) falls on all of them alike.
    """
    payload = bytes(range(256)) * (size_mib * MIB // 256)
    for port, _ in targets:
        _upload(port, path, payload[:MIB])  # warm-up: the first request of a worker pays for lazy imports
    times: list[list[float]] = [[] for _ in targets]
    peaks: list[list[float]] = [[] for _ in targets]
    for _ in range(rounds):
        for index, (port, pid) in enumerate(targets):
            before = _status_kib(pid, "VmRSS")
            Path(f"/proc/{pid}/clear_refs").write_text("5")  # resets VmHWM to the current resident size
            times[index].append(_upload(port, path, payload))
            peaks[index].append((_status_kib(pid, "VmHWM") - before) / 1024)
    timings = []
    for server_times, server_peaks in zip(times, peaks, strict=True):
        seconds = statistics.median(server_times)
        timings.append(
            UploadTiming(
                mib_per_second=round(size_mib / seconds, 1),
                seconds=round(seconds, 3),
                peak_extra_mib=round(max(server_peaks), 1),
                size_mib=size_mib,
                repeats=rounds,
            )
        )
    return timings
