"""``hayhooks pipeline ...``: deploy, undeploy and run pipelines on a running server."""

import json
import sys
from pathlib import Path
from typing import Annotated, Any, NoReturn
from urllib.parse import quote

import typer

from hayhooks.cli.client import fail, request

app = typer.Typer(
    help="Deploy, undeploy and run pipelines on a running hayhooks server.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

Overwrite = Annotated[
    bool, typer.Option("--overwrite", "-o", help="Replace the pipeline if one of that name already exists.")
]
Wait = Annotated[
    bool,
    typer.Option(
        "--wait/--no-wait",
        help="Return once every worker serves the new revision (--no-wait: once the server accepted it).",
    ),
]


def decode_text(path: Path, content: bytes) -> str:
    """``content`` of ``path`` as UTF-8 text; a file that is not UTF-8 ends the command with an error."""
    try:
        return content.decode("utf-8")
    except UnicodeDecodeError:
        fail(f"{path} is not UTF-8 text; only text files can be deployed")


def collect_files(directory: Path) -> dict[str, str]:
    """Every file the server would serve from ``directory``, keyed by its ``/``-separated path."""
    from hayhooks.pipelines.source import read_folder

    return {name: decode_text(directory / name, content) for name, content in read_folder(directory).items()}


def parse_params(params: list[str]) -> dict[str, Any]:
    """``key=value`` pairs as a dict; a value that parses as JSON is used as such, else as a string."""
    parsed: dict[str, Any] = {}
    for param in params:
        key, sep, value = param.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected key=value, got {param!r}", param_hint="--param")
        try:
            parsed[key] = json.loads(value, parse_constant=_reject_constant)
        except ValueError:
            parsed[key] = value
    return parsed


def _reject_constant(constant: str) -> NoReturn:
    """Keep ``NaN`` and ``Infinity`` as strings: they are not valid JSON to send."""
    raise ValueError(constant)


def confirm(message: str, answer: Any, everywhere: str) -> None:
    """Print ``message``, with the revision and worker agreement the server reports when it does."""
    if not isinstance(answer, dict):
        typer.echo(message)
        return
    if answer.get("revision"):
        message += f", revision {answer['revision']}"
    if answer.get("converged") is True:
        workers = answer.get("workers")
        count = len(workers) if isinstance(workers, list) else workers
        message += f", {everywhere} all {count} workers" if isinstance(count, int) else f", {everywhere} every worker"
    typer.echo(message)
    if answer.get("converged") is False:
        lagging = ", ".join(str(worker) for worker in answer.get("lagging") or [])
        typer.echo(f"Warning: not every worker has caught up yet (lagging: {lagging or 'unknown'})", err=True)


@app.command("deploy-files")
def deploy_files(
    ctx: typer.Context,
    pipeline_dir: Annotated[
        Path,
        typer.Argument(
            exists=True,
            file_okay=False,
            metavar="DIR",
            help="Directory with the pipeline's files (pipeline_wrapper.py and its helpers).",
        ),
    ],
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Pipeline name; default: the directory's name.")
    ] = None,
    overwrite: Overwrite = False,
    skip_saving_files: Annotated[
        bool,
        typer.Option(
            "--skip-saving-files",
            "-s",
            help="Send save_files=false, as the published Hayhooks CLI does; this server refuses it (422), "
            "because every worker serves what the pipelines directory holds.",
        ),
    ] = False,
    wait: Wait = True,
) -> None:
    """Deploy a pipeline from the files of a directory.

    Every file under DIR is sent, except __pycache__, *.pyc, dotfiles and *~ backups.
    """
    name = name or pipeline_dir.resolve().name
    files = collect_files(pipeline_dir)
    if not files:
        fail(f"no files to deploy in {pipeline_dir}")
    payload = {
        "name": name,
        "files": files,
        "overwrite": overwrite,
        "save_files": not skip_saving_files,
        "wait": wait,
    }
    confirm(f"Pipeline '{name}' deployed", request(ctx, "POST", "deploy_files", payload), "served by")


@app.command("deploy-yaml")
def deploy_yaml(
    ctx: typer.Context,
    pipeline_file: Annotated[
        Path,
        typer.Argument(
            exists=True,
            dir_okay=False,
            metavar="FILE",
            help="The YAML file of a serialized Haystack pipeline.",
        ),
    ],
    name: Annotated[
        str | None, typer.Option("--name", "-n", help="Pipeline name; default: the file name without suffix.")
    ] = None,
    overwrite: Overwrite = False,
    description: Annotated[
        str | None, typer.Option("--description", help="A description of the pipeline for its API docs.")
    ] = None,
    skip_mcp: Annotated[bool, typer.Option("--skip-mcp", help="Do not serve the pipeline as an MCP tool.")] = False,
    wait: Wait = True,
) -> None:
    """Deploy a pipeline from its YAML definition."""
    name = name or pipeline_file.stem
    payload = {
        "name": name,
        "source_code": decode_text(pipeline_file, pipeline_file.read_bytes()),
        "overwrite": overwrite,
        "description": description,
        "skip_mcp": skip_mcp,
        "wait": wait,
    }
    confirm(f"Pipeline '{name}' deployed", request(ctx, "POST", "deploy-yaml", payload), "served by")


@app.command()
def undeploy(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The name of the pipeline to remove.")],
) -> None:
    """Remove a pipeline from the server."""
    confirm(
        f"Pipeline '{name}' undeployed",
        request(ctx, "POST", f"undeploy/{quote(name, safe='')}"),
        "removed from",
    )


@app.command()
def run(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", help="The name of the pipeline to run.")],
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            "-p",
            metavar="KEY=VALUE",
            help="A run argument, repeatable; VALUE is used as JSON if it parses as JSON, else as a string.",
        ),
    ] = None,
    file: Annotated[
        list[Path] | None,
        typer.Option(
            "--file", "-f", metavar="FILE", help="A file to upload (repeatable); the run is sent as a multipart form."
        ),
    ] = None,
    directory: Annotated[
        list[Path] | None,
        typer.Option("--dir", "-d", metavar="DIR", help="Upload every file under DIR (repeatable; skips hidden ones)."),
    ] = None,
) -> None:
    """Run a pipeline and print its result as JSON (a streamed result as it arrives).

    With --file or --dir the files go in the form field 'files' (run_api(files: list[UploadFile])) and
    each --param as a form field, as the published CLI sends them.
    """
    path = f"{quote(name, safe='')}/run"
    arguments = parse_params(param or [])
    uploads = upload_paths(file or [], directory or [])
    if uploads:
        from hayhooks.cli.multipart import MultipartBody

        form = MultipartBody({key: form_value(value) for key, value in arguments.items()}, uploads)
        answer = request(ctx, "POST", path, stream_to=sys.stdout, form=form)
    else:
        answer = request(ctx, "POST", path, arguments, stream_to=sys.stdout)
    if answer is None:
        return
    result = answer.get("result", answer) if isinstance(answer, dict) else answer
    typer.echo(json.dumps(result, indent=2, ensure_ascii=False))


def upload_paths(files: list[Path], directories: list[Path]) -> list[Path]:
    """The files to upload: each ``--file``, then every non-hidden file under each ``--dir``, sorted."""
    for path in files:
        if not path.is_file():
            fail(f"{path} is not a file")
    found = list(files)
    for directory in directories:
        if not directory.is_dir():
            fail(f"{directory} is not a directory")
        inside = sorted(
            path
            for path in directory.rglob("*")
            if path.is_file() and not any(part.startswith(".") for part in path.relative_to(directory).parts)
        )
        if not inside:
            fail(f"{directory} has no files to upload")
        found += inside
    return found


def form_value(value: Any) -> str:
    """A run argument as a form field: text as it is, anything else as JSON (the server reads it back)."""
    return value if isinstance(value, str) else json.dumps(value)
