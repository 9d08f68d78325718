"""Every ``HAYHOOKS_*`` setting, typed, in one place.

Values come from the environment and from a ``.env`` file in the working directory. This module
imports no Haystack, FastAPI or uvicorn, so the client CLI stays fast.
"""

import os
from functools import cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from hayhooks.cpus import DEFAULT_CGROUP_ROOT, Count, available_cpus


def _split_csv(value: object) -> object:
    """Let list settings be written as ``a,b`` in the environment as well as JSON."""
    if isinstance(value, str):
        value = value.strip()
        if value.startswith("["):
            import json

            return json.loads(value)
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


CsvList = Annotated[list[str], NoDecode]
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class Settings(BaseSettings):
    """The server's and the CLI's configuration. The env var of field ``x`` is ``HAYHOOKS_X``."""

    model_config = SettingsConfigDict(env_prefix="HAYHOOKS_", env_file=".env", extra="ignore")

    # --- where and how to listen ---
    host: str = Field("localhost", description="Address the server binds and the CLI calls.")
    port: int = Field(1416, ge=1, le=65535, description="Port the server binds and the CLI calls.")
    root_path: str = Field("", description="ASGI root path when served behind a proxy under a prefix.")
    workers: int | None = Field(
        None,
        ge=1,
        description="Worker processes. gunicorn.conf.py: unset means WEB_CONCURRENCY, else one per CPU the "
        "process may use (the container's CPU quota and the CPU affinity, not the host's cores); "
        "`hayhooks run`: unset means 1.",
    )
    cgroup_root: Path = Field(
        DEFAULT_CGROUP_ROOT,
        description="Where the cgroup filesystem is mounted, read for the container's CPU quota; a hook for "
        "tests and unusual mounts.",
    )

    # --- gunicorn (gunicorn.conf.py and `hayhooks run --workers N`) ---
    timeout: int = Field(
        60, ge=0, description="Seconds a silent worker may live before the master replaces it (gunicorn timeout)."
    )
    graceful_timeout: int = Field(30, ge=0, description="Seconds in-flight requests get to finish on shutdown.")
    keepalive: int = Field(5, ge=0, description="Seconds an idle keep-alive connection stays open.")
    max_requests: int = Field(
        0, ge=0, description="Replace a worker after this many requests (0: never); guards against leaks."
    )
    max_requests_jitter: int = Field(0, ge=0, description="Random extra requests so workers do not restart together.")
    preload: bool = Field(
        False,
        description="Import Haystack and the libraries the directory's pipelines import, and build the app, in the "
        "gunicorn master before forking, so workers share those pages (less memory, faster start); pipeline code "
        "and setup() still run, and watchers start, in each worker.",
    )

    malloc_arena_max: int = Field(
        2,
        ge=0,
        description="C heap arenas per process (glibc's M_ARENA_MAX; 0: glibc's default of 8 per core; "
        "MALLOC_ARENA_MAX, if set, wins). Each load and request thread would otherwise grow an arena of its "
        "own: +30 MiB per worker within minutes of redeploys.",
    )

    # --- pipelines ---
    pipelines_dir: Path = Field(Path("pipelines"), description="The pipelines directory, the one source of truth.")
    additional_python_path: str = Field("", description="Extra import paths (os.pathsep-separated) for pipeline code.")
    load_timeout: float = Field(
        60.0, gt=0, description="Seconds a pipeline may take to import and set up before its load fails."
    )
    load_threads: int = Field(2, ge=1, le=32, description="Threads per worker that load pipelines.")
    load_retry: bool = Field(
        True,
        description="Try a load that failed for a reason that may pass (setup() raised, a timeout, a missing module "
        "outside the pipeline's folder) again, with backoff, without waiting for a file change.",
    )
    load_retry_delay: float = Field(
        1.0, gt=0, description="Seconds before the first retry of a failed load; each further one waits twice as long."
    )
    load_retry_max_delay: float = Field(
        300.0, gt=0, description="Longest wait between retries, before the ±50% random spread each one gets."
    )
    max_workers_loading: int = Field(
        0,
        ge=0,
        description="Workers of one server (one runtime folder) that load the same pipeline at once; the others "
        "keep serving its old revision until a turn frees, so a reload's memory peak is this many extra copies, "
        "not one per worker. Cold starts take turns too. 0: no cap.",
    )

    yaml_result: Literal["raw", "outputs"] = Field(
        "raw",
        description="What `/NAME/run` of a YAML pipeline answers under `result`: `raw`, Haystack's whole result by "
        "component (as the published Hayhooks); `outputs`, only the values the YAML's `outputs` name.",
    )
    streaming_components: str = Field(
        "",
        description="Which components stream in streaming_generator(): empty: the last streaming-capable one; "
        "`all`; or a comma-separated list of component names.",
    )

    # --- following the directory ---
    watch: bool = Field(True, description="Watch the pipelines directory and reconcile on every change.")
    watch_debounce_ms: int = Field(
        40, ge=1, le=10_000, description="Quiet time after the last file event before a rescan."
    )
    watch_poll: bool = Field(False, description="Poll instead of inotify (network filesystems, Kubernetes volumes).")
    watch_poll_interval_ms: int = Field(300, ge=20, description="Polling interval when polling.")
    rescan_interval: float = Field(
        10.0, ge=0, description="Seconds between full rescans that catch missed events; 0 turns them off."
    )
    files_dir: Path | None = Field(
        None,
        description="The file store of `/v1/files`, shared by every worker (and every instance that mounts it); "
        "unset: `.hayhooks-files` inside the pipelines directory, so it lives on the same volume.",
    )
    runtime_dir: Path | None = Field(
        None,
        description="Where workers publish their state for the cluster view; unset: a temp dir per server.",
    )
    metrics_dir: Path | None = Field(
        None,
        validation_alias=AliasChoices("HAYHOOKS_METRICS_DIR", "PROMETHEUS_MULTIPROC_DIR", "metrics_dir"),
        description="Where workers keep their Prometheus metric files (PROMETHEUS_MULTIPROC_DIR is read too); "
        "unset: `metrics/` in the runtime folder.",
    )

    # --- MCP ---
    mcp: bool = Field(
        True, description="Serve every pipeline as an MCP tool at `/mcp` (Streamable HTTP) and `/sse` on every worker."
    )
    mcp_json_response: bool = Field(
        False, description="`/mcp` answers with one JSON body instead of an SSE stream (`hayhooks mcp run -j`)."
    )
    mcp_host: str = Field("localhost", description="Address `hayhooks mcp run` binds.")
    mcp_port: int = Field(1417, ge=1, le=65535, description="Port `hayhooks mcp run` binds.")

    # --- HTTP behaviour ---
    show_tracebacks: bool = Field(False, description="Include tracebacks in error responses and logs.")
    strict_inputs: bool = Field(
        True,
        description="Pipeline inputs (run bodies, forms, MCP tool arguments) must have the types `/openapi.json` "
        'gives them (422 for `"10"` or `false` where it says integer); false: the published Hayhooks\' coercion.',
    )
    cors_allow_origins: CsvList = Field(default_factory=list, description="CORS origins; empty: no CORS.")
    cors_allow_methods: CsvList = Field(default_factory=lambda: ["GET", "POST"], description="CORS methods.")
    cors_allow_headers: CsvList = Field(default_factory=lambda: ["*"], description="CORS request headers.")
    cors_allow_credentials: bool = Field(False, description="Allow credentials in CORS requests.")

    # --- who may do what, and limits ---
    admin_token: SecretStr | None = Field(
        None, description="When set, deploy and undeploy need `Authorization: Bearer <token>` (CLI: --token)."
    )
    api_token: SecretStr | None = Field(
        None, description="When set, running pipelines needs `Authorization: Bearer <token>` (or the admin token)."
    )
    deploy_api: bool = Field(
        True, description="Serve the runtime deploy/undeploy API; false: pipelines come only from the directory."
    )
    deploy_max_files: int = Field(1000, ge=1, description="Most files one `/deploy_files` may carry (422 above).")
    deploy_max_path_depth: int = Field(
        16, ge=1, description="Deepest file path (folders + file) of a `/deploy_files` deploy (422 above)."
    )
    deploy_max_file_bytes: int = Field(
        5 * 1024 * 1024, ge=1, description="Largest single file of a `/deploy_files` deploy (413 above)."
    )
    deploy_max_total_bytes: int = Field(
        10 * 1024 * 1024, ge=1, description="Largest total of the files of a `/deploy_files` deploy (413 above)."
    )
    deploy_check_memory_mb: int = Field(
        4096,
        ge=0,
        description="Memory (MiB) a runtime deploy's trial load may allocate in its disposable child process before "
        "the deploy fails with 422; 0: no limit. The trial's time limit is HAYHOOKS_LOAD_TIMEOUT.",
    )
    max_body_bytes: int = Field(
        10 * 1024 * 1024, ge=1024, description="Largest JSON (non-upload) request body accepted (413 above)."
    )
    max_upload_bytes: int = Field(
        256 * 1024 * 1024,
        ge=1024,
        description="Largest multipart upload (a `/NAME/run` with files, `POST /v1/files`) accepted, per request; "
        "413 above, checked while reading. Files past 1 MiB are spooled to disk (TMPDIR), never held in memory.",
    )
    run_timeout: float | None = Field(
        None, gt=0, description="Seconds a pipeline run may take before the request answers 504; unset: no limit."
    )
    max_concurrent_runs: int | None = Field(
        None, ge=1, description="Runs one worker accepts at once; more answer 503 at once. Unset: no limit."
    )

    # --- logs ---
    log_format: Literal["text", "json"] = Field(
        "text", description="text: one readable line per record; json: one JSON object per line, for log shippers."
    )
    log_level: str = Field("INFO", description="Lowest level logged: DEBUG, INFO, WARNING, ERROR or CRITICAL.")
    access_log: bool = Field(
        False,
        description="One line per HTTP request (method, path, status, duration, request id, pipeline). Off by "
        "default, like gunicorn's: it costs about 20 to 100 µs per request, and a proxy in front usually logs access.",
    )

    # --- CLI ---
    use_https: bool = Field(False, description="The CLI talks HTTPS to the server.")
    disable_ssl: bool = Field(False, description="The CLI skips TLS certificate checks.")

    _split = field_validator("cors_allow_origins", "cors_allow_methods", "cors_allow_headers", mode="before")(
        _split_csv
    )

    @field_validator("log_level")
    @classmethod
    def _known_level(cls, value: str) -> str:
        """Fail at startup on a typo instead of logging at a level nobody asked for."""
        level = value.strip().upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    def worker_count(self) -> Count:
        """HAYHOOKS_WORKERS, else WEB_CONCURRENCY, else one per CPU this process may use: Haystack
        pipelines are mostly CPU-bound Python, which the GIL serialises within one process."""
        if self.workers:
            return Count(self.workers, "HAYHOOKS_WORKERS")
        web_concurrency = os.environ.get("WEB_CONCURRENCY", "").strip()
        if web_concurrency.isdigit() and int(web_concurrency) > 0:
            return Count(int(web_concurrency), "WEB_CONCURRENCY")
        return available_cpus(self.cgroup_root)

    @property
    def server_url(self) -> str:
        """The URL the CLI calls when no ``--server`` is given."""
        scheme = "https" if self.use_https else "http"
        host = "127.0.0.1" if self.host in {"0.0.0.0", "::", ""} else self.host
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"


@cache
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return Settings()
