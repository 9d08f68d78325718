"""One log format for hayhooks, uvicorn and gunicorn: time, level, worker pid, logger, message."""

import logging

FORMAT = "%(asctime)s %(levelname)s [%(process)d] %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    """Give hayhooks' loggers a handler unless the host application already configured one."""
    logger = logging.getLogger("hayhooks")
    if logger.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
