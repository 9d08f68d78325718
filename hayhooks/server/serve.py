"""``hayhooks run``: one worker in this process with uvicorn, or N workers under gunicorn."""

import logging.config
import os
import shutil
import sys

from hayhooks.server.cluster import claim_runtime_dir
from hayhooks.server.security import open_deploy_warning
from hayhooks.settings import get_settings


def serve() -> None:
    """Serve with the current settings; ``HAYHOOKS_WORKERS`` > 1 hands over to gunicorn."""
    settings = get_settings()
    if (settings.workers or 1) > 1:
        _exec_gunicorn()
    _run_uvicorn()


def _exec_gunicorn() -> None:
    """Replace this process by a gunicorn master using the packaged configuration."""
    config = "python:hayhooks.server.gunicorn_conf"
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", "--config", config])


def _run_uvicorn() -> None:
    import uvicorn

    from hayhooks.logs import logging_dict_config

    settings = get_settings()
    log_config = logging_dict_config(settings)
    logging.config.dictConfig(log_config)
    if warning := open_deploy_warning(settings):
        logging.getLogger("hayhooks").warning("%s", warning)
    owned = claim_runtime_dir(settings)
    try:
        uvicorn.run(
            "hayhooks.server.app:create_app",
            factory=True,
            host=settings.host,
            port=settings.port,
            root_path=settings.root_path,
            timeout_graceful_shutdown=settings.graceful_timeout,
            timeout_keep_alive=settings.keepalive,
            log_config=log_config,
            access_log=False,  # the hayhooks.access lines replace uvicorn's
        )
    finally:
        if owned:
            shutil.rmtree(owned, ignore_errors=True)
