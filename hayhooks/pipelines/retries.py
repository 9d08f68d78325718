"""When a load that failed for a reason that may pass is tried again: backoff, and one timer per name.

Each worker retries on its own schedule; the jitter keeps workers that saw one failure together
(a service their ``setup()`` needs went down) from all calling it again in the same instant.
"""

import asyncio
import logging
import random
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger("hayhooks.reload")

_MAX_DOUBLINGS = 64  # past this the cap has long been reached; keeps 2**n a small number


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff: ``first`` seconds, doubling per failed attempt, the doubling capped at ``cap``."""

    first: float
    cap: float

    def delay(self, attempts: int, spread: float | None = None) -> float:
        """Seconds to wait after ``attempts`` failed tries: ``first * 2**(attempts - 1)``, at most ``cap``,
        then spread ±50% (``spread`` in [0, 1) picks where; random when not given)."""
        base = min(self.cap, self.first * 2 ** min(max(attempts - 1, 0), _MAX_DOUBLINGS))
        return base * (0.5 + (random.random() if spread is None else spread))


class RetryTimers:
    """At most one pending retry per name; a retry that fires runs as a task, cancelled on :meth:`cancel_all`."""

    def __init__(self) -> None:
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._running: set[asyncio.Task] = set()

    def schedule(self, name: str, delay: float, retry: Callable[[], Coroutine[Any, Any, None]]) -> float:
        """Run coroutine ``retry()`` in ``delay`` seconds, replacing any pending retry of ``name``;
        return when, in epoch seconds (what status shows)."""
        self.cancel(name)
        self._timers[name] = asyncio.get_running_loop().call_later(delay, self._fire, name, retry)
        return time.time() + delay

    def cancel(self, name: str) -> None:
        """Forget ``name``'s pending retry, if any; one already running finishes (it holds the name's lock)."""
        timer = self._timers.pop(name, None)
        if timer is not None:
            timer.cancel()

    async def cancel_all(self) -> None:
        """Stop every pending and running retry: the worker is stopping."""
        for name in list(self._timers):
            self.cancel(name)
        for task in self._running:
            task.cancel()
        await asyncio.gather(*self._running, return_exceptions=True)

    def _fire(self, name: str, retry: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self._timers.pop(name, None)
        task = asyncio.create_task(retry(), name=f"hayhooks-retry-{name}")
        self._running.add(task)
        task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task) -> None:
        self._running.discard(task)
        if not task.cancelled() and task.exception() is not None:  # a bug of ours: say so, as run_forever does
            logger.error("retry of %s failed", task.get_name(), exc_info=task.exception())
