"""hayhooks: Haystack pipelines served as REST APIs by every worker of a multi-process server.

Only the names below are public. They load on first use, so ``import hayhooks`` (and the CLI)
stays fast and imports no Haystack.
"""

from importlib import import_module
from typing import Any

_EXPORTS = {
    "BasePipelineWrapper": "hayhooks.pipelines.wrapper",
    "create_app": "hayhooks.http.app",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'hayhooks' has no attribute {name!r}")
    value = getattr(import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value
