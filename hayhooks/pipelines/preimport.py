"""The libraries a pipelines directory imports, found without running its code, imported ahead.

A preloading gunicorn master imports them before it forks, so every worker shares their pages
instead of importing them again: a worker's start is then only its own part of each load (the
wrapper's module and ``setup()``, the YAML's components). Nothing of the directory runs here:
wrappers are read with :mod:`ast` (top-level absolute imports only), YAML files are parsed as data
(the ``type`` of each component), and a module is imported only when it is found outside the
pipelines directory and the extra import paths meant for pipeline code.
"""

import ast
import contextlib
import importlib
import importlib.util
import logging
from collections.abc import Iterable, Iterator
from pathlib import Path

import yaml

from hayhooks.pipelines.bounded_yaml import YamlRefused, load_bounded
from hayhooks.pipelines.names import is_ignored
from hayhooks.pipelines.source import Entry, PipelineSource

logger = logging.getLogger("hayhooks.preimport")

# A module and the names imported from it (``from m import a, b``: attribute access is what loads
# a lazy package's member, as Haystack's are).
Named = tuple[str, tuple[str, ...]]

_MAX_SOURCE_BYTES = 1024 * 1024  # a larger .py file is not scanned: it is data, not a wrapper


def import_ahead(root: Path, pipeline_paths: Iterable[str] = ()) -> list[str]:
    """Import what the pipelines in ``root`` import; the modules imported. Never raises: a module
    that fails here is only left to the worker's own load, which reports it."""
    local = [root.absolute(), *(Path(path).absolute() for path in pipeline_paths if path)]
    entries, _errors = PipelineSource(root).scan()
    local_names = {name for entry in entries.values() for name in _local_module_names(entry)}
    wanted: dict[str, set[str]] = {}
    for entry in entries.values():
        for module, names in modules_named(entry):
            wanted.setdefault(module, set()).update(names)
    imported = []
    for module, names in wanted.items():
        if module.split(".")[0] in local_names or not _is_library(module, local):
            continue
        try:
            _import(module, names)
        except Exception as error:  # a library that does not import here fails the same way in the worker
            logger.debug("not imported ahead: %s (%s: %s)", module, type(error).__name__, error)
            continue
        imported.append(module)
    return imported


def modules_named(entry: Entry) -> list[Named]:
    """The absolute imports at the top of a wrapper folder's Python files, or a YAML's component types."""
    try:
        if entry.kind == "yaml":
            return list(_component_types(load_bounded(entry.path.read_text())))
        return [named for path in _python_files(entry.path) for named in _top_level_imports(path)]
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError, YamlRefused, yaml.YAMLError):
        return []  # the worker's load says what is wrong with it


def _python_files(folder: Path) -> Iterator[Path]:
    for path in sorted(folder.rglob("*.py")):
        relative = path.relative_to(folder).parts
        if not any(is_ignored(part) for part in relative) and path.stat().st_size <= _MAX_SOURCE_BYTES:
            yield path


def _top_level_imports(path: Path) -> Iterator[Named]:
    """``import a.b`` and ``from a.b import c`` at module level (or in a module-level ``try``)."""
    body = ast.parse(path.read_bytes(), filename=str(path)).body
    statements = [*body, *(inner for node in body if isinstance(node, ast.Try) for inner in node.body)]
    for node in statements:
        if isinstance(node, ast.Import):
            yield from ((alias.name, ()) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, tuple(alias.name for alias in node.names if alias.name != "*")


def _component_types(document: object) -> Iterator[Named]:
    """Every ``type: package.module.Class`` in a YAML document (components, document stores, ...)."""
    if isinstance(document, dict):
        kind = document.get("type")
        if isinstance(kind, str) and "." in kind:
            module, _, name = kind.rpartition(".")
            yield module, (name,)
        for value in document.values():
            yield from _component_types(value)
    elif isinstance(document, list):
        for value in document:
            yield from _component_types(value)


def _local_module_names(entry: Entry) -> set[str]:
    """Top-level names a wrapper may import from its own folder: those are pipeline code."""
    if entry.kind != "files":
        return set()
    with contextlib.suppress(OSError):
        return {path.stem if path.suffix == ".py" else path.name for path in entry.path.iterdir()}
    return set()


def _is_library(module: str, local: list[Path]) -> bool:
    """Whether ``module``'s top-level package is installed outside the pipeline code's folders."""
    try:
        spec = importlib.util.find_spec(module.split(".")[0])
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    places = [spec.origin, *(spec.submodule_search_locations or [])]
    found = [Path(place).absolute() for place in places if place and place not in ("built-in", "frozen")]
    return not any(path.is_relative_to(folder) for path in found for folder in local)


def _import(module: str, names: Iterable[str]) -> None:
    imported = importlib.import_module(module)
    for name in sorted(names):
        if not hasattr(imported, name):  # a submodule not imported by its package
            with contextlib.suppress(ImportError):
                importlib.import_module(f"{module}.{name}")
