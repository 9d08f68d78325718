"""Loads run in threads of their own; one that overruns its timeout is stopped, or watched.

A thread cannot be killed, but one running Python code can be interrupted: :func:`stop` raises
:class:`LoadAbandoned` in it at its next bytecode, repeatedly for a grace period. A thread blocked
outside Python (a C call, a ``sleep``, a socket read) cannot be reached that way; it is kept in
:class:`AbandonedLoads`, which tells from the thread's own CPU clock whether it sleeps (harmless
but reported) or burns a core (the worker must retire so that its supervisor replaces it).
"""

import asyncio
import contextlib
import ctypes
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

_STOP_GRACE_SECONDS = 2.0
_RESEND_SECONDS = 0.25  # pipeline code may swallow one LoadAbandoned in a bare ``except:``; not every one
# A stuck thread using more than a tenth of a core burns it: asleep ones use ~0, and several
# burning threads share the cores, so each may get far less than one.
BURNING_SHARE = 0.1


class LoadAbandoned(BaseException):
    """Raised inside a load that overran its timeout. Not an ``Exception``, so that pipeline code's
    ``except Exception`` does not swallow it; the loader's own cleanup (``except BaseException``) runs."""


def in_thread(
    function: Callable[..., T], *args: Any, on_late_result: Callable[[T], Any]
) -> tuple["asyncio.Future[T]", threading.Thread]:
    """Run ``function`` in a new daemon thread; a result that arrives after the caller gave up is
    handed to ``on_late_result`` so nothing it holds leaks."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if future.cancelled():
            if error is None:
                on_late_result(result)
        elif error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)

    def target() -> None:
        try:
            result, error = function(*args), None
        except BaseException as exc:  # handed to the awaiting coroutine (LoadAbandoned included)
            result, error = None, exc
        with contextlib.suppress(RuntimeError):  # the loop closed while we loaded: nobody waits any more
            loop.call_soon_threadsafe(settle, result, error)

    thread = threading.Thread(target=target, name="hayhooks-load", daemon=True)
    thread.start()
    return future, thread


async def stop(thread: threading.Thread, grace: float = _STOP_GRACE_SECONDS) -> bool:
    """Raise :class:`LoadAbandoned` in ``thread`` until it ends or ``grace`` passed; whether it ended."""
    deadline = time.monotonic() + grace
    while thread.is_alive() and time.monotonic() < deadline:
        if thread.ident is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(LoadAbandoned))
        await asyncio.sleep(_RESEND_SECONDS)
    return not thread.is_alive()


@dataclass
class AbandonedLoad:
    """A load that overran its timeout and could not be stopped."""

    name: str
    revision: str
    thread: threading.Thread
    since: float = field(default_factory=time.time)
    burning: bool = False
    _clock: int | None = None
    _last: tuple[float, float] | None = None  # (wall, cpu) at the previous look

    def __post_init__(self) -> None:
        with contextlib.suppress(OSError, AttributeError, TypeError):  # no per-thread clock on this platform
            self._clock = time.pthread_getcpuclockid(self.thread.ident)  # type: ignore[arg-type]

    def look(self) -> None:
        """Update :attr:`burning` from the CPU the thread used since the previous look."""
        if self._clock is None or not self.thread.is_alive():
            return
        try:
            now = (time.monotonic(), time.clock_gettime(self._clock))
        except OSError:  # the thread ended between the check and the read
            return
        if self._last is not None:
            wall, cpu = now[0] - self._last[0], now[1] - self._last[1]
            self.burning = wall > 0 and cpu / wall > BURNING_SHARE
        self._last = now

    def as_dict(self) -> dict:
        return {"pipeline": self.name, "revision": self.revision, "since": self.since, "burning": self.burning}


class AbandonedLoads:
    """This worker's loads that could not be stopped, until their threads end."""

    def __init__(self) -> None:
        self._loads: list[AbandonedLoad] = []

    def add(self, name: str, revision: str, thread: threading.Thread) -> None:
        load = AbandonedLoad(name, revision, thread)
        load.look()
        self._loads.append(load)

    def holds(self, name: str, revision: str) -> bool:
        """Whether an abandoned load of this revision still runs."""
        return any(load.name == name and load.revision == revision and load.thread.is_alive() for load in self._loads)

    def look(self) -> list[AbandonedLoad]:
        """Forget the loads whose threads ended, update the others' :attr:`~AbandonedLoad.burning`."""
        self._loads = [load for load in self._loads if load.thread.is_alive()]
        for load in self._loads:
            load.look()
        return list(self._loads)
