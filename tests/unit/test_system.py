"""The C heap cap: threads of a capped process share a few glibc arenas instead of growing one each."""

import subprocess
import sys

import pytest

from hayhooks.system import _malloc_trim

# Eight threads hold 200 blocks of 60 kB (below glibc's mmap threshold, so from an arena) at the same
# moment; glibc's malloc_stats() then prints one "Arena N:" block per arena in use.
PROGRAM = """
import ctypes, sys, threading
from hayhooks.system import limit_malloc_arenas
limit_malloc_arenas(int(sys.argv[1]))
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
barrier = threading.Barrier(9)
def hold():
    blocks = [libc.malloc(60_000) for _ in range(200)]
    barrier.wait()  # all hold their blocks
    barrier.wait()  # the stats are printed
    for block in blocks:
        libc.free(ctypes.c_void_p(block))
threads = [threading.Thread(target=hold) for _ in range(8)]
for thread in threads:
    thread.start()
barrier.wait()
libc.malloc_stats()
barrier.wait()
for thread in threads:
    thread.join()
"""


def arenas(cap: int) -> int:
    """How many arenas the program's threads used under ``cap``."""
    done = subprocess.run([sys.executable, "-c", PROGRAM, str(cap)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stderr.count("Arena ")


@pytest.mark.skipif(_malloc_trim() is None, reason="not glibc")
def test_capped_threads_share_arenas(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    assert arenas(2) <= 2
    assert arenas(0) > 2  # glibc's default: the threads took arenas of their own
