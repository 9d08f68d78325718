"""How the gunicorn master runs hayhooks workers, resolved from ``HAYHOOKS_*`` settings.

Used by ``gunicorn -c gunicorn.conf.py`` (the file at the repository root imports this module) and
by ``hayhooks run --workers N``. The master only binds, forks and supervises: it builds no app and
starts no thread; every worker calls ``create_app()`` and starts its own watcher.
"""

import gc
import importlib
import logging
import os
import shutil
from pathlib import Path

from hayhooks.cluster.board import WorkerBoard
from hayhooks.cluster.metrics import MetricsStore, metrics_dir
from hayhooks.cluster.runtime import announce_server, claim_runtime_dir, runtime_dir
from hayhooks.http.security import open_deploy_warning
from hayhooks.logs import logging_dict_config
from hayhooks.settings import Settings

__all__ = [
    "wsgi_app",
    "worker_class",
    "bind",
    "workers",
    "timeout",
    "graceful_timeout",
    "keepalive",
    "max_requests",
    "max_requests_jitter",
    "worker_tmp_dir",
    "proc_name",
    "preload_app",
    "control_socket_disable",
    "logconfig_dict",
    "on_starting",
    "when_ready",
    "post_worker_init",
    "child_exit",
    "on_exit",
]

# Resolved once, when gunicorn reads this file in the master, before it preloads the app or forks:
# the runtime folder claimed here reaches every worker through the environment.
_settings, _owned_runtime_dir = claim_runtime_dir(Settings())
_metrics = MetricsStore(metrics_dir(_settings))
_metrics.prepare(wipe=True)

# What pipelines load most: imported ahead by a preloading master, so forked workers share it.
PRELOADED_MODULES = (
    "haystack",
    "haystack.components.builders",
    "haystack.components.converters",
    "haystack.components.retrievers.in_memory",
    "haystack.components.routers",
    "haystack.document_stores.in_memory",
)

wsgi_app = "hayhooks.http.app:create_app()"
worker_class = "uvicorn_worker.UvicornWorker"
bind = [f"{_settings.host}:{_settings.port}"]
_worker_count = _settings.worker_count()
workers = _worker_count.count
timeout = _settings.timeout
graceful_timeout = _settings.graceful_timeout
keepalive = _settings.keepalive
max_requests = _settings.max_requests
max_requests_jitter = _settings.max_requests_jitter
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
proc_name = "hayhooks"
preload_app = _settings.preload
control_socket_disable = True  # gunicorn 27's per-user control socket would be shared by every server
logconfig_dict = logging_dict_config(_settings)  # no accesslog: the hayhooks.access lines replace it

_log = logging.getLogger("gunicorn.error")


def on_starting(server) -> None:
    """Create the pipelines directory and the workers' shared runtime folder; log what was resolved."""
    settings = _settings
    pipelines_dir = Path(settings.pipelines_dir).absolute()
    if pipelines_dir.exists() and not pipelines_dir.is_dir():
        raise SystemExit(f"HAYHOOKS_PIPELINES_DIR {pipelines_dir} exists and is not a directory")
    pipelines_dir.mkdir(parents=True, exist_ok=True)
    if not os.access(pipelines_dir, os.R_OK | os.X_OK):
        raise SystemExit(f"HAYHOOKS_PIPELINES_DIR {pipelines_dir} is not readable")
    # A -w on gunicorn's command line overrides this file's count.
    count = server.cfg.workers
    source = _worker_count.source if count == _worker_count.count else "gunicorn --workers"
    announce_server(count, source)  # before the first fork: every worker inherits it
    _log.info(
        "hayhooks: workers=%d (from %s) on %s, pipelines %s, runtime %s, watch=%s%s",
        count,
        source,
        ", ".join(server.cfg.bind),
        pipelines_dir,
        runtime_dir(settings),
        settings.watch,
        " (polling)" if settings.watch_poll else "",
    )
    if warning := open_deploy_warning(settings):
        _log.warning("hayhooks: %s", warning)


def when_ready(server) -> None:
    """With preload: import Haystack and the libraries the directory's pipelines import in the master
    (their code and setup() still run only in workers), then freeze the heap, so forked workers share it."""
    if server.cfg.preload_app:
        from hayhooks.pipelines.loader import import_haystack_core  # a master that does not preload stays light
        from hayhooks.pipelines.preimport import import_ahead

        for module in PRELOADED_MODULES:
            importlib.import_module(module)
        import_haystack_core()  # what every worker's start imports first
        ahead = import_ahead(Path(_settings.pipelines_dir), _settings.additional_python_path.split(os.pathsep))
        gc.collect()
        gc.freeze()  # keep the collector from touching (and so copying) the shared objects in workers
        _log.info(
            "hayhooks: Haystack and %d modules the pipelines import loaded in the master, heap frozen before fork",
            len(ahead),
        )
        if _settings.deploy_api:
            from hayhooks.cluster.checker import fork_checker

            if checker := fork_checker(runtime_dir(_settings), server.LISTENERS):
                _log.info("hayhooks: deploy checker forked from the master (pid %d)", checker)


def post_worker_init(worker) -> None:
    """The master replaces a worker that exits: one stuck in a load it cannot stop may retire."""
    worker.wsgi.state.worker.replaceable = True


def child_exit(server, worker) -> None:
    """Drop a dead worker from the cluster view and fold its metrics into the archive, at once."""
    WorkerBoard(runtime_dir(_settings)).forget(worker.pid)
    _metrics.archive_dead_worker(worker.pid)


def on_exit(server) -> None:
    """Remove the runtime folder this master created."""
    if _owned_runtime_dir is not None:
        shutil.rmtree(_owned_runtime_dir, ignore_errors=True)
