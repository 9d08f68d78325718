"""Files → a ready pipeline (a wrapper class or a YAML pipeline), and nothing else.

Loading runs on a worker's load threads, never on its event loop. Each load of a wrapper is
imported as its own private package, so two revisions (or a deploy's validation copy and the
identical revision being served) never share module state, and a failed load leaves nothing
behind in ``sys.modules``.
"""

import ast
import contextlib
import importlib.machinery
import importlib.util
import inspect
import itertools
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import docstring_parser
import yaml
from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool

from hayhooks.errors import USER_ERRORS, describe
from hayhooks.pipelines.bounded_yaml import YamlRefused, load_bounded
from hayhooks.pipelines.models import (
    Streams,
    Upload,
    model_from_fields,
    request_model_from_callable,
    result_type_of_callable,
    takes_headers,
    uploads_of_callable,
)
from hayhooks.pipelines.names import WRAPPER_FILE, is_ignored
from hayhooks.pipelines.source import Entry
from hayhooks.pipelines.wrapper import ENTRY_POINTS, BasePipelineWrapper
from hayhooks.pipelines.yaml_inputs import InputSpec, annotate, parse_input_schema

Headers = Mapping[str, str]
# Calls one of a pipeline's entry points with its arguments by name (and the request's headers, for
# methods that ask for them); raises PipelineRunError when the pipeline's own code raised.
Call = Callable[[dict[str, Any], Headers | None], Awaitable[Any]]
YamlResult = Literal["raw", "outputs"]

_PACKAGE_PREFIX = "hayhooks_pipelines"
_load_numbers = itertools.count(1)  # itertools.count is atomic under the GIL: safe across load threads
_import_lock = threading.Lock()  # wrappers that need their folder on sys.path import one at a time
_namespace_lock = threading.Lock()
_haystack_lock = threading.Lock()
# Imported once, in one thread, before any pipeline code runs: Haystack's first import (its lazy
# package imports) is not safe in two threads at once: seen as _DeadlockError and "partially
# initialized module" when several wrappers load in parallel on a fresh worker.
_HAYSTACK_CORE = ("haystack", "haystack.dataclasses", "haystack.components", "haystack.tools")


class PipelineLoadError(Exception):
    """A pipeline that could not be loaded; the message is meant for the user.

    ``retryable``: the same files may load on a later try (see :func:`may_pass_on_retry`); false when
    only a change of the pipeline's files can help, so a worker does not try them again until then.
    """

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


def may_pass_on_retry(error: BaseException, own: Path | None) -> bool:
    """Whether a load that raised ``error`` may succeed with the same files: the one rule of what is retried.

    Not retried (the pipeline's own files are wrong): a syntax error in them; an import of a module
    of the pipeline's folder (``own``; None for a YAML pipeline, which has no code of its own) that
    is missing, or of a name it lacks; a YAML component type Haystack does not know, or does not
    allow; a YAML component given arguments it does not take.
    Retried: anything else ``setup()``, module code or a YAML component's init raises (a service not
    up yet), and import or syntax errors outside the folder (a package installed, a shared module
    on ``HAYHOOKS_ADDITIONAL_PYTHON_PATH`` fixed: no change of the pipeline's files would say so).
    Loads that fail on their own shape (no ``PipelineWrapper``, bad YAML) raise ``retryable=False``.
    """
    from haystack.core.errors import DeserializationError, PipelineError

    if isinstance(error, SyntaxError):  # IndentationError and TabError too
        return not _path_inside(error.filename, own)
    if isinstance(error, ImportError):
        own_package = (error.name or "").partition(".")[0] == _PACKAGE_PREFIX
        return not (own_package or _path_inside(error.path, own))
    if isinstance(error, PipelineError):  # an unknown component type, a bad connection
        return False
    if isinstance(error, DeserializationError):  # not allowed (no cause), or the component's from_dict/init raised
        return error.__cause__ is not None and not isinstance(error.__cause__, TypeError)
    return True


def _path_inside(path: str | None, folder: Path | None) -> bool:
    return bool(path) and folder is not None and Path(path).resolve().is_relative_to(folder.resolve())


def overran_timeout(name: str, timeout: float) -> str:
    """What a load that took longer than ``HAYHOOKS_LOAD_TIMEOUT`` failed with, in a worker or a deploy check."""
    return f"Loading '{name}' took longer than {timeout:g}s (HAYHOOKS_LOAD_TIMEOUT)"


class PipelineRunError(Exception):
    """The pipeline's own code raised while running: ``error`` is what it raised.

    Anything else escaping :attr:`LoadedPipeline.run` is a bug of hayhooks, not of the pipeline.
    """

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class LoadedPipeline:
    """One loaded revision of a pipeline, ready to serve requests."""

    name: str
    revision: str
    kind: str
    request_model: type[BaseModel] | None  # the arguments of ``run``, but files; None without ``run``
    result_type: Any  # what ``run`` returns, for the response schema
    run: Call | None  # None for a wrapper that only chats: it has no ``/NAME/run``
    description: str = ""
    result_description: str | None = None
    streams: Streams = "never"  # ``run`` is declared to return a generator, an SSEStream or a Response
    uploads: tuple[Upload, ...] = ()  # parameters of ``run`` that take uploaded files (multipart requests)
    chat_completion: Call | None = None  # run_chat_completion(model, messages, body)
    response: Call | None = None  # run_response(model, input_items, body)
    file_upload: Call | None = None  # run_file_upload(filename, content_type, content, purpose)
    skip_mcp: bool = False  # not an MCP tool (the wrapper's ``skip_mcp``, a YAML's ``skip_mcp: true``)
    load_seconds: float = 0.0
    modules: tuple[str, ...] = field(default=(), repr=False)

    def unload(self) -> None:
        """Drop this revision's private modules; requests still holding the revision keep working."""
        _forget(self.modules)


def load_entry(entry: Entry, *, yaml_result: YamlResult = "raw") -> LoadedPipeline:
    """Load the pipeline an entry of the directory describes; raise :class:`PipelineLoadError`.

    ``yaml_result``: what a YAML pipeline's run answers, Haystack's whole result by component
    (``raw``, as the published Hayhooks) or only the values its ``outputs`` name.
    """
    started = time.perf_counter()
    import_haystack_core()
    loaded = load_wrapper(entry) if entry.kind == "files" else load_yaml(entry, yaml_result)
    loaded.load_seconds = time.perf_counter() - started
    return loaded


def import_haystack_core() -> None:
    """Import Haystack's core packages once, before any pipeline code (and before a checker forks)."""
    with _haystack_lock:  # held for the first import only; later loads pass straight through
        for module in _HAYSTACK_CORE:
            importlib.import_module(module)


# --- pipeline wrappers ---------------------------------------------------------------------------


def load_wrapper(entry: Entry) -> LoadedPipeline:
    folder = entry.path
    if not (folder / WRAPPER_FILE).is_file():
        raise PipelineLoadError(f"Pipeline '{entry.name}' has no {WRAPPER_FILE}")
    package = f"{_PACKAGE_PREFIX}.{entry.name.replace('-', '_')}_{entry.revision}_{next(_load_numbers)}"
    module, modules = _import_wrapper_module(entry.name, folder, package)
    try:
        wrapper_class = getattr(module, "PipelineWrapper", None)
        if not (inspect.isclass(wrapper_class) and issubclass(wrapper_class, BasePipelineWrapper)):
            raise PipelineLoadError(
                f"{WRAPPER_FILE} of '{entry.name}' must define class PipelineWrapper(BasePipelineWrapper)"
            )
        methods = {role: _implemented(wrapper_class, names) for role, names in ENTRY_POINTS.items()}
        if not (methods["run"] or methods["chat_completion"] or methods["response"]):
            raise PipelineLoadError(
                f"PipelineWrapper of '{entry.name}' implements none of run_api, run_chat_completion and run_response "
                "(nor their _async variants)"
            )
        try:
            wrapper = wrapper_class()
            wrapper.setup()
        except USER_ERRORS as error:
            raise PipelineLoadError(
                f"setup() of '{entry.name}' failed: {describe(error)}", retryable=may_pass_on_retry(error, folder)
            ) from error
        try:
            bound = {role: getattr(wrapper, method) for role, method in methods.items() if method}
            calls = {role: _caller(method) for role, method in bound.items()}
            run = bound.get("run")
            request_model = request_model_from_callable(run, f"{entry.name}RunRequest") if run else None
            uploads = uploads_of_callable(run) if run else ()
            result_type, result_description, streams = result_type_of_callable(run) if run else (None, None, "never")
            description = docstring_parser.parse(inspect.getdoc(run) or "").short_description or "" if run else ""
        except USER_ERRORS as error:
            raise PipelineLoadError(
                f"PipelineWrapper of '{entry.name}' has an unusable method: {describe(error)}"
            ) from error
    except BaseException:
        _forget(modules)
        raise
    return LoadedPipeline(
        name=entry.name,
        revision=entry.revision,
        kind="files",
        request_model=request_model,
        result_type=result_type,
        result_description=result_description,
        streams=streams,
        uploads=uploads,
        run=calls.get("run"),
        chat_completion=calls.get("chat_completion"),
        response=calls.get("response"),
        file_upload=calls.get("file_upload"),
        description=description,
        skip_mcp=bool(getattr(wrapper_class, "skip_mcp", False)),
        modules=modules,
    )


def _implemented(wrapper_class: type[BasePipelineWrapper], names: tuple[str, ...]) -> str | None:
    """The first of ``names`` the wrapper overrides (the async variant comes first, as published)."""
    for name in names:
        if getattr(wrapper_class, name) is not getattr(BasePipelineWrapper, name):
            return name
    return None


def _caller(method: Callable) -> Call:
    """A :data:`Call` of a wrapper's method: awaited on the loop if async, else in the threadpool."""
    headers_wanted = takes_headers(method)
    awaited = inspect.iscoroutinefunction(method)
    on_the_loop = awaited or inspect.isasyncgenfunction(method)  # an async generator is only created here

    async def call(arguments: dict[str, Any], headers: Headers | None) -> Any:
        if headers_wanted:
            arguments = {**arguments, "headers": headers}
        try:
            if awaited:
                return await method(**arguments)
            if on_the_loop:
                return method(**arguments)
            return await run_in_threadpool(method, **arguments)
        except USER_ERRORS as error:
            raise PipelineRunError(error) from error

    return call


def _import_wrapper_module(name: str, folder: Path, package: str) -> tuple[Any, tuple[str, ...]]:
    """Import ``folder/pipeline_wrapper.py`` as ``package.pipeline_wrapper``.

    Relative imports (``from .helpers import x``) resolve inside the package, and such imports run
    without any lock: one whose module code hangs holds up no other load. Absolute imports of
    sibling modules (``import helpers``) need the folder on ``sys.path`` while the module executes,
    so those wrappers import one at a time; their siblings are then moved out of the global module
    namespace, so another pipeline's ``helpers`` is never confused with this one.
    """
    absolute = _imports_siblings_absolutely(folder)
    with _import_lock if absolute else contextlib.nullcontext():
        before = set(sys.modules)
        finders = _use_source_finders(folder)
        if absolute:
            sys.path.insert(0, str(folder))
        try:
            with _namespace_lock:
                _ensure_namespace(_PACKAGE_PREFIX)
            init = str(folder / "__init__.py")
            spec = importlib.util.spec_from_file_location(
                package, init, loader=_SourceLoader(package, init), submodule_search_locations=[str(folder)]
            )
            package_module = importlib.util.module_from_spec(spec)
            sys.modules[package] = package_module
            if (folder / "__init__.py").is_file():
                spec.loader.exec_module(package_module)
            module = importlib.import_module(f"{package}.pipeline_wrapper")
        except BaseException as error:
            _forget(_own_modules(package, folder, before))
            if isinstance(error, USER_ERRORS):
                raise PipelineLoadError(
                    f"Failed to import {WRAPPER_FILE} of '{name}': {describe(error)}",
                    retryable=may_pass_on_retry(error, folder),
                ) from error
            raise
        finally:
            if absolute:
                sys.path.remove(str(folder))
            for path in finders:
                sys.path_importer_cache.pop(path, None)
        modules = _own_modules(package, folder, before)
        for sibling in (m for m in modules if not m.startswith(_PACKAGE_PREFIX)):
            sys.modules.pop(sibling, None)  # imported absolutely: out of the global namespace, kept by the revision
        return module, tuple(m for m in modules if m.startswith(_PACKAGE_PREFIX))


class _SourceLoader(importlib.machinery.SourceFileLoader):
    """Compiles pipeline code from its source at every load and writes no ``__pycache__``.

    A cached ``.pyc`` is trusted when its source's mtime, in whole seconds, and size match: an edit
    of the same size within one second would otherwise keep running the previous code under the
    new revision's name.
    """

    def get_code(self, fullname: str) -> Any:
        try:
            return self.source_to_code(self.get_data(self.path), self.path)
        except SyntaxError as error:  # one over null bytes names no file: it is this one, so it is not retried
            error.filename = error.filename or self.path
            raise


def _use_source_finders(folder: Path) -> list[str]:
    """Make imports from ``folder`` and its subfolders use fresh finders (no stale directory
    listing) with :class:`_SourceLoader`; return the paths to forget once the import is done."""
    loaders = (
        (importlib.machinery.ExtensionFileLoader, importlib.machinery.EXTENSION_SUFFIXES),
        (_SourceLoader, importlib.machinery.SOURCE_SUFFIXES),
    )
    paths = [str(folder)]
    for dirpath, dirnames, _ in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not is_ignored(d)]
        paths += [os.path.join(dirpath, d) for d in dirnames]
    for path in paths:
        sys.path_importer_cache[path] = importlib.machinery.FileFinder(path, *loaders)
    return paths


def _imports_siblings_absolutely(folder: Path) -> bool:
    """Whether a module of the folder imports one of the folder's own modules by its bare name."""
    siblings = {p.stem if p.suffix == ".py" else p.name for p in folder.iterdir() if p.suffix == ".py" or p.is_dir()}
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not is_ignored(d)]
        for file_name in filenames:
            if not file_name.endswith(".py") or is_ignored(file_name):
                continue
            try:
                tree = ast.parse(Path(dirpath, file_name).read_bytes())
            except (SyntaxError, ValueError, OSError):
                return True  # cannot tell: import the careful way (the import reports the error)
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    imported = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    imported = [node.module]
                else:
                    continue
                if any(module.split(".")[0] in siblings for module in imported):
                    return True
    return False


def _ensure_namespace(name: str) -> None:
    if name not in sys.modules:
        spec = importlib.util.spec_from_loader(name, loader=None, is_package=True)
        sys.modules[name] = importlib.util.module_from_spec(spec)


def _own_modules(package: str, folder: Path, before: set[str]) -> tuple[str, ...]:
    """The modules this import added: ``package`` and its submodules, and sibling modules of
    ``folder`` imported by bare name (not what concurrent loads of other pipelines added)."""

    def own(module_name: str) -> bool:
        if module_name.startswith(_PACKAGE_PREFIX):
            return module_name == package or module_name.startswith(f"{package}.")
        return _path_inside(getattr(sys.modules.get(module_name), "__file__", None), folder)

    return tuple(filter(own, set(sys.modules) - before))


def _forget(modules: tuple[str, ...]) -> None:
    """Drop a revision's private modules and the ``@component`` classes they registered with Haystack.

    Haystack's registry would keep each such module, and all it holds, alive for good: whether the
    revision was served and replaced or failed half-way through its load.
    """
    from haystack.core.component.component import component

    for module_name in modules:
        sys.modules.pop(module_name, None)
    dropped = set(modules)
    for key in [key for key in component.registry if key.rpartition(".")[0] in dropped]:
        component.registry.pop(key, None)


# --- YAML pipelines ------------------------------------------------------------------------------


def load_yaml(entry: Entry, yaml_result: YamlResult = "raw") -> LoadedPipeline:
    return build_yaml_pipeline(entry.name, entry.revision, entry.path.read_text(), yaml_result)


@dataclass(frozen=True)
class YamlDefinition:
    """A YAML pipeline file split into the Haystack pipeline and what Hayhooks reads beside it."""

    pipeline: dict
    inputs: dict[str, list[str]]  # request field -> every "component.socket" it feeds
    outputs: dict[str, str]  # result field -> the "component.socket" it reads
    description: str
    input_schema: dict[str, InputSpec] = field(default_factory=dict)  # the request fields' bounds
    skip_mcp: bool = False


def parse_yaml_definition(name: str, source_code: str) -> YamlDefinition:
    """Parse and check a YAML definition's shape, without building the pipeline."""
    try:
        document = load_bounded(source_code)
    except YamlRefused as error:
        raise PipelineLoadError(f"Refused YAML for '{name}': {error}") from None
    except yaml.YAMLError as error:
        raise PipelineLoadError(f"Invalid YAML for '{name}': {error}") from error
    if not isinstance(document, dict):
        raise PipelineLoadError(f"YAML of '{name}' must be a mapping with components, inputs and outputs")
    inputs = document.pop("inputs", None) or {}
    outputs = document.pop("outputs", None) or {}
    description = str(document.pop("description", None) or "")
    skip_mcp = document.pop("skip_mcp", False) is True
    if not isinstance(inputs, dict) or not isinstance(outputs, dict):
        raise PipelineLoadError(f"'inputs' and 'outputs' of '{name}' must map names to 'component.socket'")
    if not inputs and not outputs:
        raise PipelineLoadError(f"YAML of '{name}' must declare at least one of 'inputs' or 'outputs'")
    try:
        input_schema = parse_input_schema(document.pop("input_schema", None), inputs)
    except ValueError as error:
        raise PipelineLoadError(f"YAML of '{name}': {error}") from None
    return YamlDefinition(
        pipeline=document,
        inputs={str(key): _socket_paths(name, key, value) for key, value in inputs.items()},
        outputs={str(key): _socket_paths(name, key, value)[0] for key, value in outputs.items()},
        description=description,
        skip_mcp=skip_mcp,
        input_schema=input_schema,
    )


def _socket_paths(name: str, key: Any, value: Any) -> list[str]:
    paths = value if isinstance(value, list) else [value]
    if not paths or not all(isinstance(path, str) and "." in path for path in paths):
        raise PipelineLoadError(f"'{key}' of '{name}' must be 'component.socket' or a list of them")
    return paths


def _split(path: str) -> tuple[str, str]:
    component, socket = path.split(".", 1)
    return component, socket


def build_yaml_pipeline(name: str, revision: str, source_code: str, yaml_result: YamlResult = "raw") -> LoadedPipeline:
    """A Haystack pipeline from YAML, served with a request model built from its declared inputs."""
    from haystack import Pipeline  # only a server that loads pipelines pays for this import

    definition = parse_yaml_definition(name, source_code)
    try:
        pipeline = Pipeline.from_dict(definition.pipeline)
    except USER_ERRORS as error:
        raise PipelineLoadError(
            f"Cannot build pipeline '{name}': {describe(error)}", retryable=may_pass_on_retry(error, None)
        ) from error

    def sockets(path: str, direction: str) -> dict[str, Any]:
        component, _ = _split(path)
        if component not in pipeline.graph.nodes:
            raise PipelineLoadError(f"'{path}' of '{name}': the pipeline has no component '{component}'")
        return pipeline.graph.nodes[component][direction]

    request_fields: dict[str, tuple[Any, Any]] = {}
    for key, paths in definition.inputs.items():
        for path in paths:
            socket = sockets(path, "input_sockets").get(_split(path)[1])
            if socket is None:
                raise PipelineLoadError(f"Input '{key}' of '{name}': {path} is not an input socket")
        socket_type = sockets(paths[0], "input_sockets")[_split(paths[0])[1]].type
        try:
            request_fields[key] = (annotate(key, socket_type, definition.input_schema.get(key)), ...)
        except ValueError as error:
            raise PipelineLoadError(f"YAML of '{name}': {error}") from None

    result_fields: dict[str, tuple[Any, Any]] = {}
    for key, path in definition.outputs.items():
        socket = sockets(path, "output_sockets").get(_split(path)[1])
        if socket is None:
            raise PipelineLoadError(f"Output '{key}' of '{name}': {path} is not an output socket")
        result_fields[key] = (socket.type, None)

    request_model = model_from_fields(f"{name}RunRequest", request_fields)
    if yaml_result == "outputs":
        result_type: Any = model_from_fields(f"{name}RunResult", result_fields)
    else:
        result_type = dict[str, dict[str, Any]]
    include = {_split(path)[0] for path in definition.outputs.values()}

    def run_sync(arguments: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, dict[str, Any]] = {}
        for key, paths in definition.inputs.items():
            for path in paths:
                component, socket = _split(path)
                data.setdefault(component, {})[socket] = arguments[key]
        try:
            produced = pipeline.run(data=data, include_outputs_from=include)
        except USER_ERRORS as error:
            raise PipelineRunError(error) from error
        if yaml_result == "raw":
            return produced
        return {key: produced.get(_split(path)[0], {}).get(_split(path)[1]) for key, path in definition.outputs.items()}

    async def run(arguments: dict[str, Any], _headers: Headers | None) -> dict[str, Any]:
        return await run_in_threadpool(run_sync, arguments)

    return LoadedPipeline(
        name=name,
        revision=revision,
        kind="yaml",
        request_model=request_model,
        result_type=result_type,
        run=run,
        description=definition.description,
        skip_mcp=definition.skip_mcp,
    )
