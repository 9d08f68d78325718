"""Schemathesis fuzzes the app through its own ``/openapi.json``: no input makes it answer 500.

The app runs in-process over ASGI (schemathesis keeps its lifespan running, so pipelines load as in a
worker), each schema over its own pipelines directory in a temp folder, so deploys write only there.
Cases come from schemathesis' Hypothesis strategies, both valid ones and ones that break the schema,
a bounded number per operation.
"""

import shutil
import time
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from hayhooks.http.app import create_app
from hayhooks.http.routes.run import PIPELINE_FAILED
from hayhooks.settings import Settings
from tests.helpers import pipelines as samples
from tests.helpers.hostile_yaml import HOSTILE_YAML
from tests.helpers.support import EXAMPLES

BUDGET = settings(max_examples=30, deadline=None, database=None, suppress_health_check=list(HealthCheck))
POSITIVE, NEGATIVE = GenerationMode.POSITIVE, GenerationMode.NEGATIVE

BUILTIN = [
    ("GET", "/status"),
    ("GET", "/status/{pipeline_name}"),
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/metrics"),
    ("POST", "/deploy_files"),
    ("POST", "/deploy-files"),
    ("POST", "/deploy-yaml"),
    ("POST", "/deploy"),
    ("POST", "/undeploy/{pipeline_name}"),
    ("GET", "/v1/models"),
    ("GET", "/models"),
    ("POST", "/v1/chat/completions"),
    ("POST", "/chat/completions"),
    ("POST", "/v1/responses"),
    ("POST", "/responses"),
    ("POST", "/v1/files"),
    ("POST", "/files"),
    ("GET", "/v1/files"),
    ("GET", "/files"),
    ("GET", "/v1/files/{file_id}"),
    ("GET", "/files/{file_id}"),
    ("GET", "/v1/files/{file_id}/content"),
    ("GET", "/files/{file_id}/content"),
    ("DELETE", "/v1/files/{file_id}"),
    ("DELETE", "/files/{file_id}"),
]
# invalid inputs exist only for operations that take some
BUILTIN_CASES = [(m, p, mode) for m, p in BUILTIN for mode in (POSITIVE, NEGATIVE) if mode is POSITIVE or m == "POST"]
EXAMPLE_RUNS = sorted(f"/{p.stem if p.is_file() else p.name}/run" for p in EXAMPLES.iterdir() if p.name[0] != ".")


def _schema(folder: Path) -> schemathesis.BaseSchema:
    app = create_app(
        Settings(
            pipelines_dir=folder / "pipelines",
            runtime_dir=folder / "runtime",
            watch=False,
            load_timeout=10,
            run_timeout=10,
            max_body_bytes=64 * 1024,
        )
    )
    return schemathesis.openapi.from_asgi("/openapi.json", app)


def _operations(schema: schemathesis.BaseSchema) -> set[tuple[str, str]]:
    return {(op.method.upper(), op.path) for op in (result.ok() for result in schema.get_all_operations())}


@pytest.fixture(scope="module")
def builtin_schema(tmp_path_factory: pytest.TempPathFactory) -> schemathesis.BaseSchema:
    """The built-in endpoints over an empty pipelines directory."""
    return _schema(tmp_path_factory.mktemp("builtin"))


@pytest.fixture(scope="module")
def examples_schema(tmp_path_factory: pytest.TempPathFactory) -> schemathesis.BaseSchema:
    """A copy of the bundled example pipelines."""
    folder = tmp_path_factory.mktemp("examples")
    shutil.copytree(EXAMPLES, folder / "pipelines")
    return _schema(folder)


# Valid code and names for half the generated deploys: random text almost never loads, and a deploy
# with an invalid name or without a pipeline_wrapper.py is refused before its file names, its other
# fields or its code are even looked at.
VALID_CODE = {
    "/deploy_files": ("files", samples.versioned("fuzz")),
    "/deploy-files": ("files", samples.versioned("fuzz")),
    "/deploy-yaml": ("source_code", samples.PROMPT_YAML),
    "/deploy": ("source_code", samples.PROMPT_YAML),
}


def _with_valid_code(path: str, case, name: str | None):
    field, code = VALID_CODE[path]
    if name is None or not isinstance(case.body, dict):
        return case
    case.body["name"] = name
    if field == "files" and isinstance(case.body.get("files"), dict):
        case.body["files"]["pipeline_wrapper.py"] = code
    elif field == "source_code":
        case.body["source_code"] = code
    return case


def fuzz(schema: schemathesis.BaseSchema, method: str, path: str, mode: GenerationMode, check) -> None:
    """Call ``method path`` with up to ``BUDGET.max_examples`` generated cases; ``check`` each answer."""
    cases = schema[path][method].as_strategy(generation_mode=mode)
    if path in VALID_CODE and mode is POSITIVE:
        names = st.sampled_from([None, "fuzzed", "fuzzed-2"])
        cases = st.tuples(cases, names).map(lambda pair: _with_valid_code(path, *pair))

    @BUDGET
    @given(case=cases)
    def call(case) -> None:
        check(case, case.call())

    call()


def test_every_operation_is_fuzzed(builtin_schema, examples_schema):
    """Proves the lists below cover the schema: a new endpoint cannot go unfuzzed."""
    assert _operations(builtin_schema) == set(BUILTIN)
    assert _operations(examples_schema) == set(BUILTIN) | {("POST", run) for run in EXAMPLE_RUNS}


@pytest.mark.parametrize(
    ("method", "path", "mode"), BUILTIN_CASES, ids=[f"{m} {p} {g.value}" for m, p, g in BUILTIN_CASES]
)
def test_builtin_endpoints_never_answer_500(builtin_schema, method: str, path: str, mode: GenerationMode):
    """Proves: status, health, readiness, metrics, deploys (files, YAML, the older form) and
    undeploys answer every generated input, valid or not (bad names, file maps, YAML, query values,
    wrong types), with a 2xx or a 4xx that says why, never with a server error."""

    def check(case, response) -> None:
        assert response.status_code < 500, f"{case.as_curl_command()}\n-> {response.status_code}: {response.text}"

    fuzz(builtin_schema, method, path, mode, check)


@pytest.mark.parametrize("mode", [POSITIVE, NEGATIVE], ids=lambda mode: mode.value)
@pytest.mark.parametrize("path", EXAMPLE_RUNS)
def test_example_pipeline_runs_never_answer_500_unless_the_pipeline_raised(examples_schema, path: str, mode):
    """Proves: every example pipeline's /run validates generated bodies (422 for what does not fit
    its request model) and serialises whatever it returns; the only 500 reports an error the
    pipeline itself raised (``PIPELINE_FAILED``); a bug of hayhooks (``SERVER_BUG``) fails it."""

    def check(case, response) -> None:
        if response.status_code == 500 and response.json().get("detail", "").startswith(PIPELINE_FAILED):
            return
        assert response.status_code < 500, f"{case.as_curl_command()}\n-> {response.status_code}: {response.text}"

    fuzz(examples_schema, "POST", path, mode, check)


# File maps the schema's strategy hardly ever produces: path-like names with dots, slashes, names
# too long for the filesystem, control characters, lone surrogates, a name used as a folder too.
_NAME_PARTS = st.sampled_from(["a", "b.py", "..", ".", "", "pipeline_wrapper.py", "x" * 300, "\ud800", "\n", "c.pyc"])
_ANY_TEXT = st.text(st.characters(exclude_categories=()), max_size=20)
FILE_NAMES = st.lists(_NAME_PARTS | _ANY_TEXT, min_size=1, max_size=4).map("/".join)
FILE_MAPS = st.dictionaries(FILE_NAMES, _ANY_TEXT, max_size=4)


def test_deploys_of_generated_file_maps_never_answer_500(builtin_schema):
    """Proves: /deploy_files refuses file names the filesystem cannot hold (too long, control
    characters, lone surrogates, a file name another one uses as its folder) and contents that are
    not UTF-8 with a 422, before writing anything, and publishes the rest."""
    operation = builtin_schema["/deploy_files"]["POST"]
    wrapper = samples.versioned("fuzz")

    @BUDGET
    @given(files=FILE_MAPS, wrapper_content=st.sampled_from([wrapper, "\ud800", "x = (\n"]))
    def call(files: dict[str, str], wrapper_content: str) -> None:
        body = {"name": "fuzzed", "files": {**files, "pipeline_wrapper.py": wrapper_content}, "overwrite": True}
        case = operation.Case(body=body, media_type="application/json")
        response = case.call()
        assert response.status_code in (200, 422), (
            f"{case.as_curl_command()}\n-> {response.status_code}: {response.text}"
        )

    call()


@pytest.mark.parametrize("case", sorted(HOSTILE_YAML))
def test_hostile_yaml_deploys_are_refused_fast_and_write_nothing(make_client, pipelines_dir, case: str):
    client = make_client()
    # The server's deploy checker listens, as it does a moment after start-up: its start is not the answer's.
    client.portal.call(client.app.state.worker.checker.warm_up)
    started = time.perf_counter()
    answer = client.post("/deploy-yaml", json={"name": "hostile", "source_code": HOSTILE_YAML[case]})
    assert time.perf_counter() - started < 2, case
    assert answer.status_code == 422, (case, answer.status_code, answer.text[:300])
    assert not list(pipelines_dir.iterdir()), case
