"""Small OS and interpreter helpers shared by the pipelines, the cluster view, the metrics and the worker."""

import ctypes
import fcntl
import functools
import gc
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


def is_alive(pid: int) -> bool:
    """Whether a process of that pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (created if missing), across threads and processes."""
    with open(path, "a+") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    """glibc's ``malloc_trim``; None with another C library (musl, macOS), where there is nothing to do."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def limit_malloc_arenas(count: int) -> None:
    """Cap glibc's C heap arenas at ``count`` (0 or ``MALLOC_ARENA_MAX`` in the environment: leave them).

    glibc gives threads arenas of their own, up to 8 per core; every load thread and request thread
    that lands on a fresh one grows it to its own high-water mark, which trimming cannot return while
    live blocks are scattered in it. Called before a worker starts threads, so it covers them all.
    """
    if count and "MALLOC_ARENA_MAX" not in os.environ:
        with suppress(OSError, AttributeError):  # not glibc: nothing to cap
            ctypes.CDLL(None).mallopt(_M_ARENA_MAX, count)


def freeze_start_up_objects() -> None:
    """Take what start-up built (Haystack, FastAPI, the app) out of the cycle collector's rounds.

    They live as long as the process, yet every full collection walked all of them: 70 ms of a
    blocked event loop per reload and per automatic collection, for nothing. Pipeline revisions
    load after this, so they stay collectable.
    """
    gc.collect()
    gc.freeze()


def release_memory() -> None:
    """Free unreachable objects now and hand the C heap's free pages back to the OS.

    A dropped pipeline revision (its modules, models, validators, large objects) sits in reference
    cycles until some later full collection, so the next loads take fresh memory meanwhile, and glibc
    keeps the pages it frees scattered among live ones: without this, every reload left a worker
    bigger (a server 20 % bigger after a few hundred redeploys of a wrapper holding 1 MB).
    """
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
