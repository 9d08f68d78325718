"""Pydantic request models and result types from a run method's signature or a YAML's sockets."""

import collections.abc
import inspect
import json
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import docstring_parser
from pydantic import BaseModel, Field, TypeAdapter, ValidationError, create_model
from starlette.datastructures import Headers, UploadFile
from starlette.responses import Response

from hayhooks.pipelines.sse import SSEStream

HEADERS_PARAMETER = "headers"  # ``headers: Headers | None = None`` receives the request's headers
_SEQUENCES = (list, tuple, collections.abc.Sequence, collections.abc.Iterable)
_STREAM_ORIGINS = (
    collections.abc.Generator,
    collections.abc.AsyncGenerator,
    collections.abc.Iterator,
    collections.abc.AsyncIterator,
)
Streams = Literal["never", "sometimes", "always"]  # whether a run method is declared to return a stream


def schema_safe(annotation: Any) -> Any:
    """The annotation itself when Pydantic can validate and describe it, else ``Any``.

    Haystack sockets carry types (numpy arrays, plain classes) that Pydantic cannot put into an
    OpenAPI schema; those fields accept any JSON instead of breaking the whole ``/docs``.
    """
    if annotation is inspect.Parameter.empty:
        return Any
    try:
        TypeAdapter(annotation).json_schema()
    except Exception:
        return Any
    return annotation


@dataclass(frozen=True)
class Upload:
    """A parameter that takes uploaded files (``files: list[UploadFile] | None = None``, ``file: UploadFile``)."""

    name: str
    many: bool  # a list of files, else one
    required: bool
    default: Any = None
    description: str | None = None


def request_model_from_callable(func: Callable, model_name: str) -> type[BaseModel]:
    """One field per parameter of ``func``: its type, default and docstring description.

    Upload parameters (see :func:`uploads_of_callable`) are no field: files never come as JSON.
    """
    docs = _parameter_docs(func)
    uploads = {upload.name for upload in uploads_of_callable(func)}
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(func, eval_str=True).parameters.items():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        if name in uploads or (name == HEADERS_PARAMETER and takes_headers(func)):
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (schema_safe(param.annotation), Field(default, description=docs.get(name) or None))
    return create_model(model_name, **fields)


def validate_inputs(model: type[BaseModel], data: bytes | dict[str, Any], *, strict: bool) -> BaseModel:
    """A pipeline's inputs (JSON text, or values parsed from JSON) as its request ``model``.

    Strict is what the JSON Schema of ``model`` accepts: Pydantic's strict JSON mode (no ``"10"`` or
    ``false`` for an integer; what JSON can only spell as text still converts: ISO dates, UUIDs, enum
    values), except that a whole number written ``10.0`` is an integer, as in JSON Schema. Lax is
    Pydantic's Python mode: the published Hayhooks' coercion.
    """
    if not strict:
        return model.model_validate(data)
    text = data if isinstance(data, bytes) else json.dumps(data)
    try:
        return model.model_validate_json(text, strict=True)
    except ValidationError as error:
        if not all(_whole_number_for_integer(problem) for problem in error.errors()):
            raise
        return model.model_validate_json(text)  # nothing else was wrong: lax turns 10.0 into 10


def _whole_number_for_integer(problem: Any) -> bool:
    value = problem.get("input")
    return problem["type"] == "int_type" and isinstance(value, float) and value.is_integer()


def uploads_of_callable(func: Callable) -> tuple[Upload, ...]:
    """The parameters of ``func`` annotated with Starlette's (or FastAPI's) ``UploadFile``, alone or in a list."""
    docs = _parameter_docs(func)
    uploads = []
    for name, param in inspect.signature(func, eval_str=True).parameters.items():
        many = _upload_shape(param.annotation)
        if many is None:
            continue
        required = param.default is inspect.Parameter.empty
        uploads.append(Upload(name, many, required, None if required else param.default, docs.get(name) or None))
    return tuple(uploads)


def _upload_shape(annotation: Any) -> bool | None:
    """``True`` for a list of files, ``False`` for one file, ``None`` when it takes no files."""
    if typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    if _is_union(annotation):
        members = [member for member in typing.get_args(annotation) if member is not type(None)]
        return _upload_shape(members[0]) if len(members) == 1 else None
    if inspect.isclass(annotation) and issubclass(annotation, UploadFile):
        return False
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in _SEQUENCES and args and _upload_shape(args[0]) is False:
        return True
    return None


def _parameter_docs(func: Callable) -> dict[str, str | None]:
    return {param.arg_name: param.description for param in docstring_parser.parse(inspect.getdoc(func) or "").params}


def result_type_of_callable(func: Callable) -> tuple[Any, str | None, Streams]:
    """What ``func`` returns when it does not stream, the docstring's ``Returns:`` description of
    it, and whether it is declared to stream (a generator, an :class:`SSEStream` or a Response):
    never, as one member of a union, or always (then it has no JSON answer to document).

    An annotation that cannot be evaluated (a name imported only for type checkers) counts as ``Any``.
    """
    returns = docstring_parser.parse(inspect.getdoc(func) or "").returns
    try:
        annotation = inspect.signature(func, eval_str=True).return_annotation
    except Exception:
        annotation = inspect.Parameter.empty
    members = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    plain = [member for member in members if not _streams(member)]
    result: Any = plain[0] if len(plain) == 1 else typing.Union[tuple(plain)] if plain else Any  # noqa: UP007
    streams: Streams = "never" if len(plain) == len(members) else "sometimes" if plain else "always"
    return schema_safe(result), returns.description if returns else None, streams


def takes_headers(func: Callable) -> bool:
    """Whether ``func`` declares ``headers: Headers | None = None``; another form of it is refused."""
    param = inspect.signature(func).parameters.get(HEADERS_PARAMETER)
    if param is None or param.annotation is inspect.Parameter.empty:
        return False
    annotation = inspect.signature(func, eval_str=True).parameters[HEADERS_PARAMETER].annotation
    members = typing.get_args(annotation) if _is_union(annotation) else (annotation,)
    if Headers not in members:
        return False  # a pipeline input that happens to be called "headers"
    if param.default is not None or param.kind is inspect.Parameter.POSITIONAL_ONLY:
        raise TypeError(f"declare the request headers as 'headers: Headers | None = None' in {func.__name__}")
    return True


def _is_union(annotation: Any) -> bool:
    return typing.get_origin(annotation) in (typing.Union, types.UnionType)


def _streams(annotation: Any) -> bool:
    origin = typing.get_origin(annotation) or annotation
    if inspect.isclass(origin) and issubclass(origin, (SSEStream, Response)):
        return True
    return origin in _STREAM_ORIGINS


def model_from_fields(model_name: str, fields: dict[str, tuple[Any, Any]]) -> type[BaseModel]:
    """A model of named fields, each ``(annotation, default)``; ``...`` marks a required one."""
    return create_model(model_name, **{name: (schema_safe(tp), default) for name, (tp, default) in fields.items()})
