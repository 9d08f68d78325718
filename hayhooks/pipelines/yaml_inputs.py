"""``input_schema``: what a YAML pipeline's request fields accept, beyond their sockets' types.

A wrapper bounds its inputs in ``run_api``'s signature (``Annotated[str, Field(min_length=1)]``); a
YAML pipeline has no signature, so this section of ours says it, per request field of ``inputs``:

    input_schema:
      query: {type: string, min_length: 1, max_length: 1000, description: Words to search for}

``type`` types a field whose sockets are untyped (a PromptBuilder's variables take anything);
``min_length`` / ``max_length`` / ``pattern`` bound text, ``ge`` / ``gt`` / ``le`` / ``lt`` numbers.
The published Hayhooks ignores the section: the same file loads there, unbounded.
"""

import typing
from dataclasses import dataclass, field
from typing import Annotated, Any

from pydantic import Field, TypeAdapter

TYPES: dict[str, type] = {"string": str, "integer": int, "number": float, "boolean": bool}
# bound -> the values it takes, and how an error names them
_TEXT_BOUNDS = {"min_length": (int, "an integer"), "max_length": (int, "an integer"), "pattern": (str, "text")}
_NUMBER_BOUNDS = {key: ((int, float), "a number") for key in ("ge", "gt", "le", "lt")}
_BOUNDS = {**_TEXT_BOUNDS, **_NUMBER_BOUNDS}
_KEYS = {"type", "description", *_BOUNDS}


@dataclass(frozen=True)
class InputSpec:
    """One request field's entry of ``input_schema``."""

    type: str | None = None
    description: str | None = None
    bounds: dict[str, Any] = field(default_factory=dict)


def parse_input_schema(section: Any, inputs: typing.Collection[str]) -> dict[str, InputSpec]:
    """The ``input_schema`` section checked for shape; ``ValueError`` says what is wrong."""
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ValueError("'input_schema' must map request fields of 'inputs' to their constraints")
    specs = {}
    for name, entry in section.items():
        if name not in inputs:
            raise ValueError(f"'input_schema' names '{name}', which is not a request field of 'inputs'")
        if not isinstance(entry, dict):
            raise ValueError(f"'input_schema.{name}' must be a mapping such as {{min_length: 1}}")
        unknown = sorted(set(map(str, entry)) - _KEYS)
        if unknown:
            raise ValueError(f"'input_schema.{name}' has unknown keys {unknown}; known: {sorted(_KEYS)}")
        kind, description = entry.get("type"), entry.get("description")
        if kind is not None and kind not in TYPES:
            raise ValueError(f"'input_schema.{name}.type' must be one of {sorted(TYPES)}")
        if description is not None and not isinstance(description, str):
            raise ValueError(f"'input_schema.{name}.description' must be text")
        bounds = {key: value for key, value in entry.items() if key in _BOUNDS}
        for key, value in bounds.items():
            accepted, wording = _BOUNDS[key]
            if isinstance(value, bool) or not isinstance(value, accepted):
                raise ValueError(f"'input_schema.{name}.{key}' must be {wording}")
        specs[str(name)] = InputSpec(kind, description, bounds)
    return specs


def annotate(name: str, socket_type: Any, spec: InputSpec | None) -> Any:
    """The request field's annotation: the socket's type, typed and bounded by ``spec``; else ``ValueError``."""
    if spec is None:
        return socket_type
    annotation = socket_type
    if spec.type is not None:
        given = TYPES[spec.type]
        if socket_type is not Any and _json_type(socket_type) != _json_type(given):
            raise ValueError(f"'input_schema.{name}.type' is {spec.type}, but its socket takes {socket_type}")
        annotation = given
    kind = _json_type(annotation)
    for key in spec.bounds:
        wanted = ("string",) if key in _TEXT_BOUNDS else ("integer", "number")
        if kind not in wanted:
            raise ValueError(
                f"'input_schema.{name}.{key}' bounds {' or '.join(wanted)} values; the field takes "
                f"{kind or 'anything'} (give it a type)"
            )
    annotated = Annotated[annotation, Field(description=spec.description, **spec.bounds)]
    try:
        TypeAdapter(annotated)  # a pattern that does not compile fails here, at load, not on a request
    except Exception as error:
        raise ValueError(f"'input_schema.{name}' cannot be applied: {error}") from None
    return annotated


def _json_type(annotation: Any) -> str | None:
    """The JSON type of ``annotation`` (``X | None`` counts as X's, as Pydantic bounds X); None: any or mixed."""
    try:
        schema = TypeAdapter(annotation).json_schema()
    except Exception:
        return None
    kinds = {member.get("type") for member in schema.get("anyOf", [schema])} - {"null"}
    return kinds.pop() if len(kinds) == 1 else None
