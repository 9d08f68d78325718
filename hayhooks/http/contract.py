"""The HTTP contract every operation keeps: what it documents, what it takes, how strictly it reads it.

Any operation that reads a body can answer 400 (a body that does not parse), 413 (a body over the
limits) and 415 (a media type it does not take): FastAPI and the body limits answer those before the
operation's code runs, so the operation cannot document them itself. A 405 names every method of
the path, not only those of the first route that matched it. Pipeline inputs are validated as
strictly as the schema types them unless HAYHOOKS_STRICT_INPUTS is off.
"""

from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.routing import Match

from hayhooks.pipelines.models import validate_inputs

JSON = "application/json"

# One event of a text/event-stream answer, as OpenAPI 3.1 describes a stream: each event, not the whole.
SSE_EVENT: dict[str, Any] = {
    "schema": {
        "type": "object",
        "properties": {
            "data": {"type": "string"},
            "event": {"type": "string"},
            "id": {"type": "string"},
            "retry": {"type": "integer"},
        },
    }
}
BODY_ERRORS: dict[str, dict[str, Any]] = {
    "400": {"description": "The body does not parse (not UTF-8 JSON, or a malformed form)"},
    "413": {"description": "The body is larger than HAYHOOKS_MAX_BODY_BYTES (uploads: HAYHOOKS_MAX_UPLOAD_BYTES)"},
    "415": {"description": "The Content-Type is not one the operation takes (see its request body)"},
}


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def is_json(kind: str) -> bool:
    return kind == JSON or (kind.startswith("application/") and kind.endswith("+json"))


def takes(*kinds: str) -> Callable[[Request], Awaitable[None]]:
    """A dependency answering 415 unless the body is one of ``kinds`` (JSON: ``application/*+json`` too).

    A request without a body passes: what it lacks is the operation's to say (422 for a required one).
    """
    accepted = ", ".join(kinds)

    async def require_media_type(request: Request) -> None:  # async: FastAPI would run a def in a thread
        kind = media_type(request)
        headers = request.headers
        if not kind and headers.get("content-length", "0") == "0" and "transfer-encoding" not in headers:
            return
        if kind in kinds or (JSON in kinds and is_json(kind)):
            return
        raise HTTPException(415, f"Content-Type {kind or '(none)'} is not taken here: send {accepted}")

    return require_media_type


JSON_BODY = [Depends(takes(JSON))]  # the dependencies of an operation that takes a JSON body


def validated_body(model: type[BaseModel], data: bytes | dict[str, Any], *, strict: bool) -> BaseModel:
    """``data`` (a JSON body, or the values of a form) as ``model`` (see :func:`validate_inputs`), else a
    422 naming each field."""
    try:
        return validate_inputs(model, data, strict=strict)
    except ValidationError as error:
        problems = error.errors(include_url=False)
        raise RequestValidationError([{**problem, "loc": ("body", *problem["loc"])} for problem in problems]) from None


def document_body_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add :data:`BODY_ERRORS` to every operation of ``schema`` that has a request body (its own win)."""
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if isinstance(operation, dict) and "requestBody" in operation:
                responses = operation.setdefault("responses", {})
                for status, response in BODY_ERRORS.items():
                    responses.setdefault(status, response)
    return schema


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(app: FastAPI, request: Request) -> Iterable[str]:
    """Every method some route of ``app`` (included routers too) takes on the request's path."""
    for method in _METHODS:
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in app.router.routes):
            yield method


def install(app: FastAPI) -> None:
    """Answer 405 with an ``Allow`` header listing the methods of every route on the path."""

    async def method_not_allowed(request: Request, error: Exception) -> Response:
        assert isinstance(error, StarletteHTTPException)
        if error.status_code == 405:
            allow = ", ".join(allowed_methods(app, request))
            error = StarletteHTTPException(405, error.detail, headers={**(error.headers or {}), "Allow": allow})
        return await http_exception_handler(request, error)

    app.add_exception_handler(StarletteHTTPException, method_not_allowed)
