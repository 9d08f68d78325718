"""The CLI's HTTP helper: one request to the server; any failure becomes a message on stderr and exit 1.

httpx and the settings are imported inside the functions, so ``hayhooks --help`` does not pay for them.
"""

import json
from dataclasses import dataclass
from typing import Any, NoReturn

import typer

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


def request(
    ctx: typer.Context,
    method: str,
    path: str,
    payload: dict[str, Any] | None = None,
    timeout: float = DEFAULT_TIMEOUT,
) -> Any:
    """Send one request to ``{server}/{path}`` and return the decoded JSON answer (or its text)."""
    import httpx

    from hayhooks.settings import get_settings

    base = server_url(ctx)
    try:
        with httpx.Client(timeout=timeout, verify=not get_settings().disable_ssl) as client:
            response = client.request(method, f"{base}/{path}", json=payload, headers=_authorization(ctx))
    except httpx.TimeoutException:
        fail(f"hayhooks at {base} did not answer within {timeout:g} s")
    except httpx.TransportError as exc:
        fail(f"cannot reach hayhooks at {base}: {exc}")
    if response.is_error:
        fail(f"HTTP {response.status_code}: {error_message(response.text)}")
    try:
        return response.json()
    except ValueError:
        return response.text


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
