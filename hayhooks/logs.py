"""One log format for everything a hayhooks server prints: its own lines, gunicorn's, uvicorn's and
those of pipeline code.

``text`` reads well in a terminal; ``json`` is one object per line for log shippers. Every record
logged while a request is handled carries that request's id, whichever logger or thread it comes
from: the middleware sets :data:`REQUEST_ID`, and the threadpool that runs ``run_api`` copies the
context, so the filter below finds it there too.
"""

import json
import logging
import logging.config
import time
from contextvars import ContextVar
from typing import Any, Literal, TextIO

from hayhooks.settings import Settings

REQUEST_ID: ContextVar[str | None] = ContextVar("hayhooks_request_id", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"
TEXT_FIELDS = ("request_id", "pipeline", "duration_ms")  # appended to a text line when the record has them

# What every LogRecord has; any other attribute came from ``extra``. ``color_message`` is uvicorn's
# ANSI-coloured copy of the message.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "color_message",
}

# Haystack logs every component run at INFO (lines per request), watchfiles every file event, the MCP SDK
# every request.
_CHATTY_LIBRARIES = ("haystack", "watchfiles", "mcp")


class RequestIdFilter(logging.Filter):
    """Stamp the id of the request being handled on the record; a handler filter, so it sees
    records of every logger, pipeline code's included."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id") and (request_id := REQUEST_ID.get()) is not None:
            record.request_id = request_id
        return True


class TextFormatter(logging.Formatter):
    """``TEXT_FORMAT`` followed by `` key=value`` for each of ``TEXT_FIELDS`` the record carries."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # before any traceback, which follows on new lines
        fields = (f" {key}={value}" for key in TEXT_FIELDS if (value := getattr(record, key, None)) is not None)
        return super().formatMessage(record) + "".join(fields)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC), level, pid, logger, message, then every ``extra`` field."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "pid": record.process,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and value is not None:
                entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str)


def build_handler(log_format: Literal["text", "json"] = "text", stream: TextIO | None = None) -> logging.Handler:
    """The one handler every logger writes to (stderr by default); ``dictConfig`` builds it by reference."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(RequestIdFilter())
    return handler


def logging_dict_config(settings: Settings) -> dict[str, Any]:
    """The whole process's logging as a ``dictConfig`` schema: gunicorn's ``logconfig_dict``, uvicorn's ``log_config``.

    The root logger gets the handler, so pipeline code and libraries log in the same format.
    gunicorn's and uvicorn's access logs get none: the middleware's ``hayhooks.access`` lines
    replace them, and uvicorn skips building its own when its logger has no handler. Libraries that
    log routine work at INFO are held to WARNING unless DEBUG is asked for.
    """
    chatty_level = "WARNING" if settings.log_level == "INFO" else settings.log_level

    def own() -> dict[str, Any]:  # a fresh dict per logger: dictConfig converts them in place
        return {"handlers": ["hayhooks"], "level": settings.log_level, "propagate": False}

    def silent() -> dict[str, Any]:
        return {"handlers": [], "propagate": False}

    return {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"hayhooks": {"()": build_handler, "log_format": settings.log_format}},
        "root": {"handlers": ["hayhooks"], "level": settings.log_level},
        "loggers": {
            "gunicorn.error": own(),  # UvicornWorker hands its handlers to uvicorn.error
            "uvicorn": own(),  # uvicorn.error propagates into it when uvicorn runs alone
            "gunicorn.access": silent(),  # UvicornWorker hands its handlers to uvicorn.access
            "uvicorn.access": silent(),
            **{name: {"level": chatty_level} for name in _CHATTY_LIBRARIES},
        },
    }


def configure_logging(settings: Settings) -> None:
    """Apply :func:`logging_dict_config` unless this process already has logging set up.

    gunicorn and ``hayhooks run`` set it up before the app is built; a host application, a test
    runner or ``basicConfig`` leaves handlers on the root logger, and those stay. Either way
    hayhooks' own loggers follow ``HAYHOOKS_LOG_LEVEL``.
    """
    logging.getLogger("hayhooks").setLevel(settings.log_level)
    if not logging.getLogger().handlers:
        logging.config.dictConfig(logging_dict_config(settings))


class PipelineLog:
    """``from hayhooks import log``: what pipeline code written for the published Hayhooks logs with.

    That one is loguru's logger; this keeps the calls wrappers make (``log.info("{} docs", n)``,
    ``success``, ``trace``, ``exception``, ``bind``, ``opt``) and writes them as standard ``logging``
    records of ``hayhooks.pipelines``, in the server's one log format, with the request id.
    """

    def __init__(self, logger: logging.Logger, extra: dict[str, Any] | None = None) -> None:
        self._logger = logger
        self._extra = extra or {}

    def bind(self, **extra: Any) -> "PipelineLog":
        return PipelineLog(self._logger, {**self._extra, **extra})

    def opt(self, *_args: Any, **_options: Any) -> "PipelineLog":
        return self  # colours, lazy evaluation and depth are loguru's; the message stays the same

    def _log(self, level: int, message: Any, args: tuple, kwargs: dict, exc_info: bool = False) -> None:
        if not self._logger.isEnabledFor(level):
            return
        text = str(message)
        if args or kwargs:
            try:
                text = text.format(*args, **kwargs)
            except (IndexError, KeyError, ValueError):
                text = " ".join([text, *map(str, args)])
        self._logger.log(level, "%s", text, exc_info=exc_info, extra=self._extra, stacklevel=3)

    def trace(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._log(logging.DEBUG, message, args, kwargs)

    def debug(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._log(logging.DEBUG, message, args, kwargs)

    def info(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._log(logging.INFO, message, args, kwargs)

    success = info

    def warning(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._log(logging.WARNING, message, args, kwargs)

    def error(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._log(logging.ERROR, message, args, kwargs)

    def critical(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._log(logging.CRITICAL, message, args, kwargs)

    def exception(self, message: Any, *args: Any, **kwargs: Any) -> None:
        self._log(logging.ERROR, message, args, kwargs, exc_info=True)


log = PipelineLog(logging.getLogger("hayhooks.pipelines"))
