"""Error messages meant for API clients: what went wrong, without the server's filesystem layout."""

import re

# What pipeline code may raise that is a failed load or run, never a reason to end the worker:
# exit(), a stray KeyboardInterrupt, a GeneratorExit out of a closed generator. Not CancelledError,
# which is how the event loop stops a request.
USER_ERRORS: tuple[type[BaseException], ...] = (Exception, SystemExit, KeyboardInterrupt, GeneratorExit)

# An absolute path of two or more parts; only its last part (the file name) is kept.
_ABSOLUTE_PATH = re.compile(r"(?<![\w.~:/-])/(?:[^\s/'\"():,\[\]]+/)+([^\s/'\"():,\[\]]+)")


def redact_paths(message: str) -> str:
    """``/srv/pipelines/.staging-x/pipeline_wrapper.py`` becomes ``pipeline_wrapper.py``."""
    return _ABSOLUTE_PATH.sub(r"\1", message)


def describe(error: BaseException) -> str:
    """``Type: message`` of an exception (``Type`` alone when it has no message), paths redacted."""
    message = str(error)
    return redact_paths(f"{type(error).__name__}: {message}" if message else type(error).__name__)
