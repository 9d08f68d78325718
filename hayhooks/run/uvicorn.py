"""``hayhooks run``: one worker in this process with uvicorn, or N workers under gunicorn."""

import logging.config
import os
import shutil
import sys

from hayhooks.cluster.runtime import announce_server, claim_runtime_dir
from hayhooks.http.security import open_deploy_warning
from hayhooks.settings import Settings

GUNICORN_CONFIG = "python:hayhooks.run.gunicorn_conf"


def serve(settings: Settings) -> None:
    """Serve with ``settings``; more than one worker hands over to gunicorn."""
    if (settings.workers or 1) > 1:
        _exec_gunicorn()
    _run_uvicorn(settings)


def _exec_gunicorn() -> None:
    """Replace this process by a gunicorn master using the packaged configuration (it reads the
    same ``HAYHOOKS_*`` environment this process was started with)."""
    os.execv(sys.executable, [sys.executable, "-m", "gunicorn", "--config", GUNICORN_CONFIG])


def _run_uvicorn(settings: Settings) -> None:
    import uvicorn

    from hayhooks.http.app import create_app
    from hayhooks.logs import logging_dict_config

    log_config = logging_dict_config(settings)
    logging.config.dictConfig(log_config)
    if warning := open_deploy_warning(settings):
        logging.getLogger("hayhooks").warning("%s", warning)
    settings, owned = claim_runtime_dir(settings)
    announce_server(1, "hayhooks run: one process")
    try:
        uvicorn.run(
            create_app(settings),
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
