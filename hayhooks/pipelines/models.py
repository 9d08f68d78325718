"""Pydantic request models and result types from a run method's signature or a YAML's sockets."""

import inspect
from collections.abc import Callable
from typing import Any

import docstring_parser
from pydantic import BaseModel, Field, TypeAdapter, create_model


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


def request_model_from_callable(func: Callable, model_name: str) -> type[BaseModel]:
    """One field per parameter of ``func``: its type, default and docstring description."""
    docs = {param.arg_name: param.description for param in docstring_parser.parse(inspect.getdoc(func) or "").params}
    fields: dict[str, Any] = {}
    for name, param in inspect.signature(func, eval_str=True).parameters.items():
        if param.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        default = ... if param.default is inspect.Parameter.empty else param.default
        fields[name] = (schema_safe(param.annotation), Field(default, description=docs.get(name) or None))
    return create_model(model_name, **fields)


def result_type_of_callable(func: Callable) -> tuple[Any, str | None]:
    """What ``func`` returns, and the docstring's ``Returns:`` description of it."""
    returns = docstring_parser.parse(inspect.getdoc(func) or "").returns
    annotation = inspect.signature(func, eval_str=True).return_annotation
    return schema_safe(annotation), returns.description if returns else None


def model_from_fields(model_name: str, fields: dict[str, tuple[Any, Any]]) -> type[BaseModel]:
    """A model of named fields, each ``(annotation, default)``; ``...`` marks a required one."""
    return create_model(model_name, **{name: (schema_safe(tp), default) for name, (tp, default) in fields.items()})
