"""Request ids and access lines: one pure ASGI middleware, because it sits on every request's path.

A request keeps the ``X-Request-ID`` its client (or a proxy) sent, or gets a fresh one; the id goes
back in the response headers and onto every log record of the request (see :mod:`hayhooks.logs`).
"""

import logging
import time
from uuid import uuid4

from starlette._utils import get_route_path
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hayhooks.logs import REQUEST_ID

access_logger = logging.getLogger("hayhooks.access")

REQUEST_ID_HEADER = b"x-request-id"
MAX_REQUEST_ID_LENGTH = 128
PROBE_PATHS = frozenset({"/health", "/ready"})  # logged at DEBUG, so probes do not flood the logs


class RequestContextMiddleware:
    """Sets the request id, adds it to the response, and logs one ``hayhooks.access`` line per request."""

    def __init__(self, app: ASGIApp, *, access_log: bool = True) -> None:
        self.app = app
        self.access_log = access_log

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _client_request_id(scope["headers"]) or uuid4().hex
        id_header = (REQUEST_ID_HEADER, request_id.encode())
        status = 500  # what the server answers if the app fails before starting a response

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message = {**message, "headers": [*message.get("headers", ()), id_header]}
            await send(message)

        token = REQUEST_ID.set(request_id)
        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if self.access_log:
                _log_access(scope, status, time.perf_counter() - started)
            REQUEST_ID.reset(token)


def _client_request_id(headers: list[tuple[bytes, bytes]]) -> str | None:
    """The client's id if it is printable ASCII of at most 128 characters: it goes into logs and headers as is."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            if 0 < len(value) <= MAX_REQUEST_ID_LENGTH and value.isascii():
                text = value.decode("ascii")
                if text.isprintable():
                    return text
            return None
    return None


def _log_access(scope: Scope, status: int, seconds: float) -> None:
    route_path = get_route_path(scope)
    level = logging.DEBUG if route_path in PROBE_PATHS else logging.INFO
    if not access_logger.isEnabledFor(level):
        return
    client = scope.get("client")
    client_address = f"{client[0]}:{client[1]}" if client else None
    method, path = scope["method"], scope["path"]
    access_logger.log(
        level,
        '%s "%s %s" %d',
        client_address,
        method,
        path,
        status,
        extra={
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round(seconds * 1000, 2),
            "client": client_address,
            "pipeline": _pipeline_name(scope, route_path),
        },
    )


def _pipeline_name(scope: Scope, route_path: str) -> str | None:
    """``NAME`` for ``/NAME/run``: from the route that matched, else (no route matched) from the path."""
    path = getattr(scope.get("route"), "path", None) or route_path
    name, _, action = path[1:].partition("/")
    return name if name and action == "run" else None
