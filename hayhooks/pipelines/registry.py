"""Name → the revision a worker serves, its state and its last error.

Reads are lock-free: the serving map is replaced, never edited, so a request that looked up a
pipeline keeps the revision it found even if a swap happens while it runs.
"""

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Literal, Protocol

from hayhooks.pipelines.loader import LoadedPipeline

State = Literal["waiting", "loading", "ready", "failed"]


@dataclass(frozen=True)
class PipelineStatus:
    """What a worker knows of one pipeline name."""

    name: str
    state: State
    revision: str | None  # the revision being served, if any
    target: str | None  # the directory's revision this worker last tried to load
    kind: str | None = None
    error: str | None = None
    description: str = ""
    updated_at: float = 0.0
    load_seconds: float | None = None
    attempts: int = 0  # loads of ``target`` this worker tried (retries included)
    next_retry_at: float | None = None  # epoch seconds of the next try of ``target``; None: none without a file change

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "state": self.state,
            "revision": self.revision,
            "target_revision": self.target,
            "kind": self.kind,
            "error": self.error,
            "description": self.description,
            "updated_at": self.updated_at,
            "load_seconds": self.load_seconds,
            "attempts": self.attempts,
            "next_retry_at": self.next_retry_at,
        }


Listener = Callable[[], None]


class ServingTable(Protocol):
    """What the HTTP layer may see of a registry: what is served, every status, and when they change."""

    def get(self, name: str) -> LoadedPipeline | None: ...

    def serving(self) -> Mapping[str, LoadedPipeline]: ...

    def status(self, name: str) -> PipelineStatus | None: ...

    def statuses(self) -> list[PipelineStatus]: ...

    def on_change(self, listener: Listener) -> None: ...


class PipelineRegistry:
    """The pipelines one worker serves. Mutated only by the reconciler, on the event loop."""

    def __init__(self) -> None:
        self._serving: dict[str, LoadedPipeline] = {}
        self._status: dict[str, PipelineStatus] = {}
        self._listeners: list[Listener] = []

    # --- reading ---

    def get(self, name: str) -> LoadedPipeline | None:
        return self._serving.get(name)

    def serving(self) -> dict[str, LoadedPipeline]:
        return self._serving

    def status(self, name: str) -> PipelineStatus | None:
        return self._status.get(name)

    def statuses(self) -> list[PipelineStatus]:
        return [self._status[name] for name in sorted(self._status)]

    def target(self, name: str) -> str | None:
        status = self._status.get(name)
        return status.target if status else None

    # --- changing ---

    def on_change(self, listener: Listener) -> None:
        """Call ``listener`` after every change of what is served or of a status."""
        self._listeners.append(listener)

    def mark_loading(self, name: str, target: str, kind: str, state: Literal["waiting", "loading"] = "loading") -> None:
        """A load of revision ``target`` started (or, ``waiting``, waits for its turn among the workers);
        whatever is served keeps serving meanwhile."""
        current = self._status.get(name) or PipelineStatus(name=name, state=state, revision=None, target=None)
        self._set_status(
            replace(current, state=state, target=target, kind=kind, error=None, attempts=0, next_retry_at=None)
        )

    def swap(self, loaded: LoadedPipeline, attempts: int = 1) -> LoadedPipeline | None:
        """Serve ``loaded``, which loaded at try ``attempts``; return the revision it replaced. One assignment."""
        previous = self._serving.get(loaded.name)
        self._serving = {**self._serving, loaded.name: loaded}
        self._set_status(
            PipelineStatus(
                name=loaded.name,
                state="ready",
                revision=loaded.revision,
                target=loaded.revision,
                kind=loaded.kind,
                description=loaded.description,
                load_seconds=round(loaded.load_seconds, 4),
                attempts=attempts,
            )
        )
        return previous

    def fail(
        self,
        name: str,
        target: str | None,
        error: str,
        kind: str | None = None,
        *,
        attempts: int = 0,
        next_retry_at: float | None = None,
    ) -> None:
        """Record a failed load (``attempts`` tries of ``target`` so far, the next one due at ``next_retry_at``);
        the last good revision, if any, keeps serving."""
        current = self._status.get(name)
        serving = self._serving.get(name)
        self._set_status(
            PipelineStatus(
                name=name,
                state="failed",
                revision=serving.revision if serving else None,
                target=target,
                kind=kind or (current.kind if current else None),
                error=error,
                description=serving.description if serving else "",
                attempts=attempts,
                next_retry_at=next_retry_at,
            )
        )

    def retry_at(self, name: str, when: float) -> None:
        """The next try of a failed load is now due at ``when`` (epoch seconds)."""
        self._set_status(replace(self._status[name], next_retry_at=when))

    def remove(self, name: str) -> LoadedPipeline | None:
        """Stop serving ``name`` and forget it; return what was served."""
        removed = self._serving.get(name)
        if removed is not None:
            self._serving = {key: value for key, value in self._serving.items() if key != name}
        if self._status.pop(name, None) is not None or removed is not None:
            self._notify()
        return removed

    def _set_status(self, status: PipelineStatus) -> None:
        self._status[status.name] = replace(status, updated_at=time.time())
        self._notify()

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()
