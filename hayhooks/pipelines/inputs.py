"""Turning JSON pipeline inputs back into the objects the pipeline's input sockets expect."""

from dataclasses import is_dataclass
from types import UnionType
from typing import TYPE_CHECKING, Any, Union, get_args, get_origin

from pydantic import BaseModel, TypeAdapter

if TYPE_CHECKING:
    from haystack.core.pipeline.base import PipelineBase


def coerce_pipeline_inputs(pipeline: "PipelineBase", data: dict[str, Any]) -> dict[str, Any]:
    """Rebuild serialized objects (``ChatMessage``, ``Document``, ...) in ``data`` from the socket types.

    A JSON body brings them as plain dicts. A dict (or a dict in a list) given for a socket typed
    ``T``, ``list[T]`` or an optional/union of those becomes a ``T`` when ``T`` has ``from_dict``,
    is a pydantic model or a dataclass; other values pass unchanged. ``data`` may be nested
    (``{"component": {"input": value}}``) or flat (``{"input": value}``), told apart as
    ``Pipeline.run`` does, and the result keeps its shape.

    Raises ValueError when a socket type offers several such classes: a dict does not say which.
    """
    if all(isinstance(value, dict) for value in data.values()):
        sockets = pipeline.inputs(include_components_with_connected_inputs=True)
        return {
            name: {
                key: _coerce(value, [sockets[name][key]["type"]] if key in sockets.get(name, {}) else [])
                for key, value in inputs.items()
            }
            for name, inputs in data.items()
        }
    sockets = pipeline.inputs()
    return {
        key: _coerce(value, [inputs[key]["type"] for inputs in sockets.values() if key in inputs])
        for key, value in data.items()
    }


def _coerce(value: Any, socket_types: list[Any]) -> Any:
    """``value`` rebuilt as the first of ``socket_types`` that names a rebuildable class."""
    if not (isinstance(value, dict) or (isinstance(value, list) and any(isinstance(v, dict) for v in value))):
        return value
    for socket_type in socket_types:
        classes = _rebuildable_classes(socket_type)
        if len(classes) > 1:
            names = ", ".join(sorted(cls.__name__ for cls in classes))
            raise ValueError(
                f"Cannot coerce input for socket type '{socket_type}': a dict could be any of {names}. "
                "Pass this input as an already-deserialized object."
            )
        if classes:
            (cls,) = classes
            if isinstance(value, dict):
                return _rebuild(value, cls)
            return [_rebuild(item, cls) if isinstance(item, dict) else item for item in value]
    return value


def _rebuildable_classes(socket_type: Any) -> set[type]:
    """The classes in ``socket_type`` (through unions and ``list[...]``) that a dict can be rebuilt into."""
    if get_origin(socket_type) in (Union, UnionType):
        return set().union(*(_rebuildable_classes(arm) for arm in get_args(socket_type)))
    if get_origin(socket_type) is list:
        args = get_args(socket_type)
        return _rebuildable_classes(args[0]) if args else set()
    if isinstance(socket_type, type) and (
        hasattr(socket_type, "from_dict") or issubclass(socket_type, BaseModel) or is_dataclass(socket_type)
    ):
        return {socket_type}
    return set()


def _rebuild(value: dict[str, Any], cls: type) -> Any:
    """Haystack's own ``from_dict`` first, so its objects deserialize the way Haystack writes them."""
    if hasattr(cls, "from_dict"):
        return cls.from_dict(value)
    if issubclass(cls, BaseModel):
        return cls.model_validate(value)
    return TypeAdapter(cls).validate_python(value)
