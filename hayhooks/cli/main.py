"""The ``hayhooks`` command: ``run`` starts the server; the other commands are HTTP clients of one.

Only typer is imported up front so that ``--help`` and the client commands start fast; the server
(Haystack, FastAPI, uvicorn) is imported by ``run`` alone, the HTTP client by the commands that call.
"""

import os
import time
from pathlib import Path
from typing import Annotated

import typer

from hayhooks.cli import bench, pipeline
from hayhooks.cli.client import ClientError, Target, fail, request, send, server_url
from hayhooks.cli.status import compare_instances, render_status

app = typer.Typer(
    name="hayhooks",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)
app.add_typer(pipeline.app, name="pipeline")

CONVERGE_POLL_SECONDS = 0.5  # how often `hayhooks status --wait-converged` asks again


@app.callback()
def root(
    ctx: typer.Context,
    server: Annotated[
        str | None,
        typer.Option(
            "--server",
            metavar="URL",
            help="URL of the server the client commands call; default: built from HAYHOOKS_HOST, "
            "HAYHOOKS_PORT and HAYHOOKS_USE_HTTPS.",
        ),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(
            "--token",
            metavar="TOKEN",
            help="Bearer token sent with every request; default: HAYHOOKS_ADMIN_TOKEN, else HAYHOOKS_API_TOKEN.",
        ),
    ] = None,
) -> None:
    """Serve Haystack pipelines as REST APIs, and deploy, run and inspect them from the command line."""
    ctx.obj = Target(server=server, token=token)


@app.command()
def run(
    host: Annotated[str | None, typer.Option("--host", "-h", help="Address to bind (HAYHOOKS_HOST).")] = None,
    port: Annotated[
        int | None, typer.Option("--port", "-p", min=1, max=65535, help="Port to bind (HAYHOOKS_PORT).")
    ] = None,
    pipelines_dir: Annotated[
        Path | None,
        typer.Option("--pipelines-dir", "-d", help="Directory the pipelines are served from (HAYHOOKS_PIPELINES_DIR)."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-w",
            min=1,
            help="Worker processes (HAYHOOKS_WORKERS, default 1); more than 1 runs them under gunicorn.",
        ),
    ] = None,
    root_path: Annotated[
        str | None,
        typer.Option("--root-path", help="ASGI root path behind a proxy prefix (HAYHOOKS_ROOT_PATH)."),
    ] = None,
    additional_python_path: Annotated[
        str | None,
        typer.Option(
            "--additional-python-path",
            help="Extra import paths for pipeline code, os.pathsep-separated (HAYHOOKS_ADDITIONAL_PYTHON_PATH).",
        ),
    ] = None,
) -> None:
    """Start the server in the foreground.

    Each option given overrides its HAYHOOKS_* environment variable, also for the worker processes.
    """
    _serve_with(
        {
            "HAYHOOKS_HOST": host,
            "HAYHOOKS_PORT": port,
            "HAYHOOKS_PIPELINES_DIR": pipelines_dir,
            "HAYHOOKS_WORKERS": workers,
            "HAYHOOKS_ROOT_PATH": root_path,
            "HAYHOOKS_ADDITIONAL_PYTHON_PATH": additional_python_path,
        }
    )


mcp = typer.Typer(help="The MCP server.", no_args_is_help=True)
app.add_typer(mcp, name="mcp")


@mcp.command("run")
def mcp_run(
    host: Annotated[str | None, typer.Option("--host", "-h", help="Address to bind (HAYHOOKS_MCP_HOST).")] = None,
    port: Annotated[
        int | None, typer.Option("--port", "-p", min=1, max=65535, help="Port to bind (HAYHOOKS_MCP_PORT, 1417).")
    ] = None,
    pipelines_dir: Annotated[
        Path | None,
        typer.Option("--pipelines-dir", "-d", help="Directory the pipelines are served from (HAYHOOKS_PIPELINES_DIR)."),
    ] = None,
    json_response: Annotated[
        bool,
        typer.Option("--json-response", "-j", help="/mcp answers with JSON bodies, not SSE streams."),
    ] = False,
    workers: Annotated[
        int | None,
        typer.Option("--workers", "-w", min=1, help="Worker processes (HAYHOOKS_WORKERS, default 1), as for run."),
    ] = None,
    additional_python_path: Annotated[
        str | None,
        typer.Option("--additional-python-path", help="Extra import paths for pipeline code (os.pathsep-separated)."),
    ] = None,
) -> None:
    """Serve the pipelines as MCP tools on their own port (1417): /mcp, /sse and /messages/.

    The same server as run (every worker serves MCP, the REST API stays available), bound to the
    MCP host and port, as the published `hayhooks mcp run` is, so existing client configurations work.
    """
    from hayhooks.settings import Settings

    settings = Settings()
    _serve_with(
        {
            "HAYHOOKS_HOST": host or settings.mcp_host,
            "HAYHOOKS_PORT": port or settings.mcp_port,
            "HAYHOOKS_PIPELINES_DIR": pipelines_dir,
            "HAYHOOKS_WORKERS": workers,
            "HAYHOOKS_ADDITIONAL_PYTHON_PATH": additional_python_path,
            "HAYHOOKS_MCP": "true",
            "HAYHOOKS_MCP_JSON_RESPONSE": "true" if json_response else None,
        }
    )


def _serve_with(overrides: dict[str, object]) -> None:
    """Start the server with ``overrides`` of its settings.

    Through the environment, not only into Settings: with --workers the server is a gunicorn
    master exec'd from here, and it and its workers read their settings from the environment.
    """
    for variable, value in overrides.items():
        if value is not None:
            os.environ[variable] = str(value)

    from hayhooks.run.uvicorn import serve
    from hayhooks.settings import Settings

    serve(Settings())


@app.command()
def status(
    ctx: typer.Context,
    instances: Annotated[
        list[str] | None,
        typer.Argument(
            metavar="[URL]...",
            help="Instances to compare (each one's own URL, not a load balancer's); default: the --server one.",
        ),
    ] = None,
    wait_converged: Annotated[
        bool,
        typer.Option(
            "--wait-converged",
            help="Wait until every worker (of every instance) serves the same revision of every pipeline and "
            "none is starting or loading; exit 1 with what differs once --timeout passes.",
        ),
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.0, metavar="S", help="Seconds --wait-converged waits.")
    ] = 60.0,
) -> None:
    """Show pipeline states and worker revisions.

    One row per pipeline with its state and the revision each worker serves, whether the workers
    agree, and the errors of pipelines that failed to load. Given several instance URLs: that for
    each, then whether every worker of every instance serves the same revisions; exits 1 if not
    (or if an instance does not answer). With --wait-converged: the same once they agree (exit 0)
    or once the timeout passes (exit 1), for a deploy pipeline to wait on.
    """
    if not instances and not wait_converged:
        answer = request(ctx, "GET", "status", timeout=10.0)
        if not isinstance(answer, dict):
            fail(f"unexpected /status answer: {answer!r}")
        typer.echo(render_status(server_url(ctx), answer))
        return
    urls = [url.rstrip("/") for url in instances or [server_url(ctx)]]
    deadline = time.monotonic() + timeout
    while True:
        answers, errors = _statuses(ctx, urls)
        agree, summary = compare_instances(answers)
        if agree or not wait_converged or time.monotonic() >= deadline:
            break
        time.sleep(CONVERGE_POLL_SECONDS)
    for url, answer in answers.items():
        if answer is not None:
            typer.echo(render_status(url, answer) + "\n")
    for error in errors:
        typer.echo(f"Error: {error}", err=True)
    typer.echo(summary if agree or not wait_converged else f"{summary} (still, after {timeout:g} s)")
    if not agree:
        raise typer.Exit(1)


def _statuses(ctx: typer.Context, urls: list[str]) -> tuple[dict[str, dict | None], list[str]]:
    """Each instance's ``/status`` answer (``None`` for one that gave none), and why those gave none."""
    answers: dict[str, dict | None] = {}
    errors = []
    for url in urls:
        try:
            answer = send(ctx, "GET", "status", timeout=10.0, server=url)
        except ClientError as error:
            answer = None
            errors.append(str(error))
        answers[url] = answer if isinstance(answer, dict) else None
    return answers, errors


@app.command()
def deploy(
    ctx: typer.Context,
    path: Annotated[
        Path,
        typer.Argument(
            exists=True,
            metavar="PATH",
            help="A pipeline directory (deployed as files) or a .yml/.yaml pipeline file.",
        ),
    ],
    name: Annotated[
        str | None,
        typer.Option("--name", "-n", help="Pipeline name; default: the directory's name or the file's stem."),
    ] = None,
    overwrite: pipeline.Overwrite = False,
    wait: pipeline.Wait = True,
) -> None:
    """Deploy a pipeline directory or YAML file.

    A directory is deployed like 'pipeline deploy-files', a .yml/.yaml file like 'pipeline deploy-yaml'.
    """
    if path.is_dir():
        pipeline.deploy_files(ctx, path, name=name, overwrite=overwrite, skip_saving_files=False, wait=wait)
    elif path.suffix.lower() in (".yml", ".yaml"):
        pipeline.deploy_yaml(ctx, path, name=name, overwrite=overwrite, description=None, wait=wait)
    else:
        fail(f"{path} is neither a directory nor a .yml/.yaml file")


app.command(name="bench")(bench.bench)


def main() -> None:
    """Entry point of the ``hayhooks`` script."""
    app()
