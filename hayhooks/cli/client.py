"""The CLI's HTTP helper: one request to the server; any failure becomes a message on stderr and exit 1.

The settings are imported inside the functions, so ``hayhooks --help`` does not pay for them.
"""

import codecs
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NoReturn, TextIO

import typer

if TYPE_CHECKING:
    from hayhooks.cli.multipart import MultipartBody

DEFAULT_TIMEOUT = 120.0


def fail(message: str) -> NoReturn:
    """Print ``message`` to stderr and end the command with exit code 1."""
    typer.echo(f"Error: {message}", err=True)
    raise typer.Exit(1)


@dataclass(frozen=True)
class Target:
    """What the root command's options say about the server to call."""

    server: str | None = None
    token: str | None = None


def _target(ctx: typer.Context) -> Target:
    return ctx.obj if isinstance(ctx.obj, Target) else Target()


def server_url(ctx: typer.Context) -> str:
    """The ``--server`` URL given to the root command, else the one the settings describe."""
    if server := _target(ctx).server:
        return server.rstrip("/")
    from hayhooks.settings import get_settings

    return get_settings().server_url


def _authorization(ctx: typer.Context) -> dict[str, str]:
    """``--token``, else the admin token (it opens every endpoint), else the API token."""
    from hayhooks.settings import get_settings

    settings = get_settings()
    secret = settings.admin_token or settings.api_token
    token = _target(ctx).token or (secret.get_secret_value() if secret else None)
    return {"Authorization": f"Bearer {token}"} if token else {}


STREAMED_TYPES = ("text/plain", "text/event-stream")


def _copy_text(response: Any, out: TextIO) -> None:
    """Write a streamed UTF-8 answer to ``out`` as it arrives; a character split across reads stays whole."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    while chunk := response.read1(65536):
        out.write(decoder.decode(chunk))
        out.flush()
    out.write(decoder.decode(b"", final=True))
    out.flush()


class ClientError(Exception):
    """A request that got no usable answer; the message says why, for the user."""


def request(
    ctx: typer.Context,
    method: str,
    path: str,
    payload: dict[str, Any] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    server: str | None = None,
    stream_to: TextIO | None = None,
    form: "MultipartBody | None" = None,
) -> Any:
    """:func:`send`, with a failure printed to stderr and the command ended with exit code 1."""
    try:
        return send(ctx, method, path, payload, timeout, server, stream_to, form)
    except ClientError as error:
        fail(str(error))


def send(
    ctx: typer.Context,
    method: str,
    path: str,
    payload: dict[str, Any] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    server: str | None = None,
    stream_to: TextIO | None = None,
    form: "MultipartBody | None" = None,
) -> Any:
    """Send one request to ``{server}/{path}`` and return the decoded JSON answer (or its text);
    raise :class:`ClientError` when there is none (unreachable, timeout, an HTTP error).

    ``server`` overrides the URL of ``--server`` and the settings, for commands that call several.
    ``stream_to``: a streamed answer (text/plain, text/event-stream) is written there as it arrives,
    and ``None`` returned. ``form``: sent instead of the JSON ``payload``, streamed from its files.

    The standard library's client, not httpx: a client command should start in a blink, and
    importing httpx alone takes longer than the whole request.
    """
    import ssl
    import urllib.error
    import urllib.request

    from hayhooks.settings import get_settings

    base = server.rstrip("/") if server else server_url(ctx)
    headers = {"Accept": "application/json", **_authorization(ctx)}
    body: Any = None
    if form is not None:
        body = form.chunks()
        headers.update({"Content-Type": form.content_type, "Content-Length": str(len(form))})
    elif payload is not None:
        body = json.dumps(payload).encode()
        headers["Content-Type"] = "application/json"
    outgoing = urllib.request.Request(f"{base}/{path}", data=body, headers=headers, method=method)
    context = ssl._create_unverified_context() if get_settings().disable_ssl else None
    try:
        with urllib.request.urlopen(outgoing, timeout=timeout, context=context) as response:
            if stream_to is not None and response.headers.get_content_type() in STREAMED_TYPES:
                _copy_text(response, stream_to)
                return None
            text = response.read().decode("utf-8", errors="replace")
    except urllib.error.HTTPError as error:
        explained = error_message(error.read().decode("utf-8", errors="replace"))
        raise ClientError(f"HTTP {error.code}: {explained}") from None
    except TimeoutError:
        raise ClientError(f"hayhooks at {base} did not answer within {timeout:g} s") from None
    except (BrokenPipeError, ConnectionResetError) as error:
        if form is None:
            raise ClientError(f"cannot reach hayhooks at {base}: {error}") from None
        raise ClientError(
            f"hayhooks at {base} closed the connection during the upload (larger than HAYHOOKS_MAX_UPLOAD_BYTES?)"
        ) from None
    except (urllib.error.URLError, OSError) as error:
        raise ClientError(f"cannot reach hayhooks at {base}: {getattr(error, 'reason', error)}") from None
    try:
        return json.loads(text)
    except ValueError:
        return text


def error_message(body: str) -> str:
    """The server's explanation in an error body: its ``detail``, one line per validation error."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip() or "no details given"
    detail = data.get("detail", data) if isinstance(data, dict) else data
    if isinstance(detail, str):
        return detail
    if isinstance(detail, list) and all(isinstance(item, dict) for item in detail):
        return "invalid request:" + "".join(f"\n  {_validation_error(item)}" for item in detail)
    return json.dumps(detail)


def _validation_error(error: dict[str, Any]) -> str:
    """``field.path: msg`` for one FastAPI validation error; the leading ``body`` is dropped."""
    loc = [str(part) for part in error.get("loc", [])]
    if len(loc) > 1 and loc[0] == "body":
        loc = loc[1:]
    return f"{'.'.join(loc) or '(request)'}: {error.get('msg', 'invalid')}"
