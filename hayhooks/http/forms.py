"""Form bodies of ``/NAME/run`` (multipart with files, or urlencoded) → a pipeline's arguments.

A form carries strings and files. Each field is converted to its annotated type: text stays text,
anything else is read as JSON when it parses (numbers, booleans, ``null``, objects, arrays) and
validated by the same request model as a JSON body, so a value that does not convert answers 422
naming its field. A list takes repeated fields or one JSON array. Empty values and empty file
parts (what a browser form sends for an untouched input) count as not sent.

Files past 1 MiB are spooled to disk by Starlette's parser; they are closed, and so removed, when
the request ends, whatever way it ends (see :func:`close_form`).
"""

import collections.abc
import inspect
import json
import types
import typing
from typing import Any

from fastapi import HTTPException, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel
from starlette.datastructures import FormData, UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from starlette.types import Scope

from hayhooks.http.contract import validated_body
from hayhooks.pipelines.models import Upload

FORM_MEDIA_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
_FORM_CONTENT_TYPES = tuple(kind.encode() for kind in FORM_MEDIA_TYPES)
_FORM_KEY = "hayhooks.form"  # the parsed form of a request, closed once its response is sent
_LISTS = (list, tuple, set, frozenset, collections.abc.Sequence, collections.abc.Set, collections.abc.Iterable)


def is_form(scope: Scope) -> bool:
    """Whether the request's body is a form (its ``content-type``), without reading it."""
    for name, value in scope["headers"]:
        if name == b"content-type":
            return value.lower().startswith(_FORM_CONTENT_TYPES)
    return False


async def read_form(request: Request, max_bytes: int | None) -> FormData:
    """Parse the request's form; the route's body limit stops a body over ``max_bytes`` while it is read."""
    try:
        form = await request.form()
    except StarletteHTTPException as error:  # the body limit raises Starlette's own
        if error.status_code == 413:
            limit = f" of {max_bytes} bytes" if max_bytes else ""
            raise HTTPException(413, f"Upload larger than the limit{limit} (HAYHOOKS_MAX_UPLOAD_BYTES)") from None
        raise
    except ClientDisconnect:
        raise HTTPException(400, "The client closed the connection before the upload ended") from None
    request.scope[_FORM_KEY] = form
    return form


def close_form(scope: Scope) -> None:
    """Close the request's uploaded files, if it had any: their spooled temp files go with them.

    Synchronous on purpose: it runs in ``finally`` blocks, also of cancelled requests, where an
    await could be cancelled again; closing a temp file does not block.
    """
    form: FormData | None = scope.pop(_FORM_KEY, None)
    if form is not None:
        for _, value in form.multi_items():
            if isinstance(value, UploadFile):
                value.file.close()


def form_arguments(
    form: FormData, model: type[BaseModel], uploads: tuple[Upload, ...], *, strict: bool
) -> dict[str, Any]:
    """The run arguments a form gives: fields validated by ``model`` (``strict``: see
    :func:`~hayhooks.http.contract.validated_body`), files by ``uploads``; else 422."""
    problems: list[dict[str, Any]] = []
    values: dict[str, Any] = {}
    for name, field in model.model_fields.items():
        given = [value for value in form.getlist(name) if not _blank(value)]
        if not given:
            continue
        if any(isinstance(value, UploadFile) for value in given):
            problems.append(_problem(name, "Expected a form field, got a file"))
        elif _is_list(field.annotation):
            values[name] = _list_value(given, _item_type(field.annotation))
        elif len(given) > 1:
            problems.append(_problem(name, f"Sent {len(given)} times; one value expected"))
        else:
            values[name] = _value(given[0], field.annotation)
    arguments: dict[str, Any] = {}
    try:
        validated = validated_body(model, values, strict=strict)
    except RequestValidationError as error:
        problems += error.errors()
    else:
        arguments = {name: getattr(validated, name) for name in model.model_fields}
    for upload in uploads:
        parts = [part for part in form.getlist(upload.name) if not _blank(part)]
        files = [part for part in parts if isinstance(part, UploadFile)]
        if len(files) < len(parts):
            problems.append(_problem(upload.name, "Expected a file upload, got a text field"))
        elif not files and upload.required:
            problems.append(_problem(upload.name, "Field required: upload a file", kind="missing"))
        elif len(files) > 1 and not upload.many:
            problems.append(_problem(upload.name, f"Got {len(files)} files; this field takes one"))
        else:
            arguments[upload.name] = (files if upload.many else files[0]) if files else upload.default
    if problems:
        raise RequestValidationError(problems)
    return arguments


def _problem(name: str, message: str, kind: str = "value_error") -> dict[str, Any]:
    return {"type": kind, "loc": ("body", name), "msg": message, "input": None}


def _blank(value: str | UploadFile) -> bool:
    if isinstance(value, UploadFile):
        return not value.filename and not value.size
    return value == ""


def _list_value(given: list[str], item_type: Any) -> Any:
    if len(given) == 1 and given[0].lstrip().startswith("["):
        try:
            return json.loads(given[0])
        except ValueError:
            pass
    return [_value(value, item_type) for value in given]


def _value(text: str, annotation: Any) -> Any:
    """``text`` as is for a text field, else its JSON value when it is JSON (pydantic converts the rest).

    A boolean may be spelled ``True`` too, as Python clients (``requests``) send one."""
    if _is_text(annotation):
        return text
    if bool in _members(annotation):
        text = text.lower()
    try:
        return json.loads(text)
    except ValueError:
        return text


def _unwrap(annotation: Any) -> Any:
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def _members(annotation: Any) -> tuple[Any, ...]:
    annotation = _unwrap(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return tuple(_unwrap(member) for member in typing.get_args(annotation) if member is not type(None))
    return (annotation,)


def _is_text(annotation: Any) -> bool:
    """A string type (a string enum too) or a literal of strings: its value is the text as sent."""
    for member in _members(annotation):
        if inspect.isclass(member) and issubclass(member, str):
            return True
        if typing.get_origin(member) is typing.Literal and all(isinstance(arg, str) for arg in typing.get_args(member)):
            return True
    return False


def _is_list(annotation: Any) -> bool:
    members = _members(annotation)
    return len(members) == 1 and (typing.get_origin(members[0]) or members[0]) in _LISTS


def _item_type(annotation: Any) -> Any:
    args = typing.get_args(_members(annotation)[0])
    return args[0] if args else Any


def form_body(model: type[BaseModel], uploads: tuple[Upload, ...], *, required: bool = False) -> dict[str, Any]:
    """A route's ``openapi_extra`` documenting a ``multipart/form-data`` body of :func:`form_schema`.
    ``required`` stays unset otherwise, so that it adds to a JSON body the route documents already."""
    body: dict[str, Any] = {"content": {"multipart/form-data": {"schema": form_schema(model, uploads)}}}
    if required:
        body["required"] = True
    return {"requestBody": body}


def form_schema(model: type[BaseModel], uploads: tuple[Upload, ...]) -> dict[str, Any]:
    """The ``multipart/form-data`` body ``/docs`` shows: a file picker per upload, structured fields as JSON text.

    Self-contained (no ``$ref``), so it can sit in a route's ``openapi_extra``.
    """
    schema = model.model_json_schema()
    properties: dict[str, Any] = {}
    for name, field_schema in schema.get("properties", {}).items():
        if _is_plain(field_schema):
            properties[name] = field_schema
        else:
            description = " ".join(filter(None, [field_schema.get("description"), "(JSON)"]))
            properties[name] = {"type": "string", "title": field_schema.get("title", name), "description": description}
    binary = {"type": "string", "format": "binary"}
    for upload in uploads:
        properties[upload.name] = {
            **({"type": "array", "items": binary} if upload.many else binary),
            **({"description": upload.description} if upload.description else {}),
        }
    required = [*schema.get("required", []), *(upload.name for upload in uploads if upload.required)]
    return {"type": "object", "properties": properties, **({"required": required} if required else {})}


_SCALARS = {"string", "integer", "number", "boolean", "null"}


def _is_plain(field_schema: dict[str, Any]) -> bool:
    """A schema a form field can be typed into as it is: scalars, enums, lists of those."""
    if "$ref" in field_schema or "allOf" in field_schema:
        return False
    if "anyOf" in field_schema:
        return all(_is_plain(member) for member in field_schema["anyOf"])
    kind = field_schema.get("type")
    if kind == "array":
        return _is_plain(field_schema.get("items", {}))
    return kind is None or kind in _SCALARS
