"""Loading an entry: wrappers and YAML pipelines, their request models, runs and private modules."""

import asyncio
import sys
import textwrap

import pytest
from pydantic import ValidationError

from hayhooks.pipelines.loader import PipelineLoadError, PipelineRunError, load_entry, parse_yaml_definition
from hayhooks.pipelines.source import Entry
from tests.helpers.pipelines import (
    ASYNC,
    FILE_READER,
    GREET,
    IMPORT_ERROR,
    NO_RUN_METHOD,
    PROMPT_YAML,
    RAISES,
    SETUP_FAILS,
    SYNTAX_ERROR,
    versioned,
    write_wrapper,
    write_yaml,
)
from tests.unit.core.conftest import private_modules

STATEFUL = """
from hayhooks import BasePipelineWrapper
from .state import calls

# {tag}


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self) -> int:
        calls.append(1)
        return len(calls)
"""

ABSOLUTE_SIBLING = """
import helpers
from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self) -> str:
        return helpers.VALUE
"""

NO_WRAPPER_CLASS = "from hayhooks import BasePipelineWrapper\n\nclass Wrapper(BasePipelineWrapper):\n    pass\n"
NOT_A_SUBCLASS = "class PipelineWrapper:\n    def run_api(self) -> str:\n        return 'x'\n"


def run(pipeline, **body):
    return asyncio.run(pipeline.run(dict(pipeline.request_model(**body)), None))


def test_wrapper_request_model_result_type_and_description_come_from_run_api(pipelines_dir, load):
    write_wrapper(pipelines_dir, "greet", GREET)
    greet = load("greet")
    assert (greet.name, greet.kind) == ("greet", "files")
    schema = greet.request_model.model_json_schema()
    assert schema["required"] == ["name"]
    assert schema["properties"]["name"]["type"] == "string"
    assert schema["properties"]["name"]["description"] == "Who to greet."
    assert schema["properties"]["excited"]["default"] is False
    assert greet.result_type is str
    assert greet.result_description == "The greeting."
    assert greet.description == "Greet someone."
    with pytest.raises(ValidationError):
        greet.request_model()


def test_revision_of_the_loaded_pipeline_is_the_entry_revision(pipelines_dir, source, load):
    write_wrapper(pipelines_dir, "greet", GREET)
    assert load("greet").revision == source.scan_one("greet")[0].revision


def test_sync_wrapper_runs_with_its_sibling_files(pipelines_dir, load):
    write_wrapper(pipelines_dir, "greet", GREET)
    greet = load("greet")
    assert run(greet, name="Ada") == "Hello, Ada."
    assert run(greet, name="Ada", excited=True) == "Hello, Ada!"


def test_async_wrapper_runs(pipelines_dir, load):
    write_wrapper(pipelines_dir, "adder", ASYNC)
    adder = load("adder")
    assert run(adder, numbers=[1, 2, 39]) == 42
    assert adder.result_type is int


def test_an_exception_in_run_api_comes_out_as_pipeline_run_error(pipelines_dir, load):
    write_wrapper(pipelines_dir, "raises", RAISES)
    with pytest.raises(PipelineRunError) as caught:
        run(load("raises"), value=3)
    assert type(caught.value.error) is ValueError
    assert str(caught.value.error) == "cannot handle 3"


def test_an_exception_in_run_api_async_comes_out_as_pipeline_run_error(pipelines_dir, load):
    write_wrapper(pipelines_dir, "adder", ASYNC)
    adder = load("adder")
    unvalidated = adder.request_model.model_construct(numbers=[1, None])  # makes sum() raise inside the wrapper
    with pytest.raises(PipelineRunError) as caught:
        asyncio.run(adder.run(dict(unvalidated), None))
    assert isinstance(caught.value.error, TypeError)


def test_a_wrapper_that_only_answers_the_responses_api_loads_without_a_run_route(pipelines_dir, load):
    """As published: chat-only wrappers are valid, they just have no ``/NAME/run``."""
    write_wrapper(pipelines_dir, "reader", FILE_READER)
    reader = load("reader")
    assert reader.run is None and reader.request_model is None and reader.response is not None
    assert asyncio.run(reader.response({"model": "reader", "input_items": [], "body": {}}, None)) == ""


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (IMPORT_ERROR, "Failed to import pipeline_wrapper.py of 'broken': ModuleNotFoundError"),
        (SYNTAX_ERROR, "Failed to import pipeline_wrapper.py of 'broken': SyntaxError"),
        (SETUP_FAILS, "setup() of 'broken' failed: RuntimeError: no index available"),
        (NO_RUN_METHOD, "implements none of run_api, run_chat_completion and run_response"),
        (NO_WRAPPER_CLASS, "must define class PipelineWrapper(BasePipelineWrapper)"),
        (NOT_A_SUBCLASS, "must define class PipelineWrapper(BasePipelineWrapper)"),
    ],
)
def test_a_broken_wrapper_raises_pipeline_load_error_and_leaves_no_modules(pipelines_dir, load, code, message):
    write_wrapper(pipelines_dir, "broken", code, files={})
    with pytest.raises(PipelineLoadError) as caught:
        load("broken")
    assert message in str(caught.value)
    assert private_modules("broken") == set()


def test_a_load_error_message_does_not_reveal_server_paths(pipelines_dir, load):
    write_wrapper(pipelines_dir, "broken", SYNTAX_ERROR, files={})
    with pytest.raises(PipelineLoadError) as caught:
        load("broken")
    assert str(pipelines_dir) not in str(caught.value)


def test_a_folder_without_pipeline_wrapper_py_is_a_load_error(pipelines_dir, load):
    (pipelines_dir / "empty").mkdir()
    (pipelines_dir / "empty" / "helpers.py").write_text("")
    with pytest.raises(PipelineLoadError, match="'empty' has no pipeline_wrapper.py"):
        load("empty")


def test_two_revisions_of_one_pipeline_do_not_share_module_state(tmp_path):
    """Each revision imports its own copy of a sibling module with mutable state."""
    revisions = []
    for tag in ("first", "second"):
        folder = tmp_path / tag / "counter"
        write_wrapper(
            folder.parent, "counter", textwrap.dedent(STATEFUL.format(tag=tag)), files={"state.py": "calls = []\n"}
        )
        entry = Entry(name="counter", kind="files", path=folder, revision=tag)
        revisions.append(load_entry(entry))
    first, second = revisions
    assert [run(first), run(first)] == [1, 2]
    assert run(second) == 1
    assert set(first.modules).isdisjoint(second.modules)


def test_absolutely_imported_siblings_of_two_revisions_stay_apart(tmp_path):
    """``import helpers`` in revision b must not get revision a's ``helpers``."""
    loaded = []
    for value in ("a", "b"):
        folder = write_wrapper(tmp_path / value, "abs", ABSOLUTE_SIBLING, files={"helpers.py": f"VALUE = {value!r}\n"})
        loaded.append(load_entry(Entry(name="abs", kind="files", path=folder, revision=value)))
    assert [run(pipeline) for pipeline in loaded] == ["a", "b"]
    assert "helpers" not in sys.modules


def test_the_same_code_in_two_revisions_runs_its_own_version(tmp_path):
    one = load_entry(Entry("v", "files", write_wrapper(tmp_path / "1", "v", versioned("1")), "r1"))
    two = load_entry(Entry("v", "files", write_wrapper(tmp_path / "2", "v", versioned("2")), "r2"))
    assert run(one)["version"] == "1"
    assert run(two)["version"] == "2"


def test_two_loads_of_one_revision_do_not_share_modules(tmp_path):
    """A deploy validates an identical copy of the served revision, then unloads it: the served one stays whole."""
    folder = write_wrapper(tmp_path / "1", "greet", GREET)
    served = load_entry(Entry("greet", "files", folder, "r1"))
    staged = load_entry(Entry("greet", "files", folder, "r1"))
    assert set(served.modules).isdisjoint(staged.modules)
    staged.unload()
    assert set(served.modules) <= set(sys.modules)
    served.unload()


def test_unload_removes_the_revision_modules_and_only_those(tmp_path):
    one = load_entry(Entry("greet", "files", write_wrapper(tmp_path / "1", "greet", GREET), "r1"))
    two = load_entry(Entry("greet", "files", write_wrapper(tmp_path / "2", "greet", GREET), "r2"))
    assert {module.rsplit(".", 1)[-1] for module in one.modules} >= {"pipeline_wrapper", "helpers"}
    assert all(module.startswith("hayhooks_pipelines.greet_r1_") for module in one.modules)
    assert set(one.modules) <= set(sys.modules)
    one.unload()
    assert set(one.modules).isdisjoint(sys.modules)
    assert set(two.modules) <= set(sys.modules)
    assert run(one, name="Ada") == "Hello, Ada."  # a request still holding it keeps working


def test_a_pipeline_name_with_dashes_loads(pipelines_dir, load):
    write_wrapper(pipelines_dir, "my-greet", GREET)
    assert run(load("my-greet"), name="Bo") == "Hello, Bo."


def test_a_yaml_pipeline_loads_and_runs_answering_haystacks_result_by_default(pipelines_dir, load):
    write_yaml(pipelines_dir, "prompt", PROMPT_YAML)
    prompt = load("prompt")
    assert (prompt.kind, prompt.description) == ("yaml", "Fill a prompt template.")
    assert set(prompt.request_model.model_json_schema()["properties"]) == {"query", "topic"}
    assert run(prompt, query="why?", topic="sky") == {"builder": {"prompt": "Question about sky: why?"}}


def test_a_yaml_pipeline_answers_its_named_outputs_when_asked(pipelines_dir):
    write_yaml(pipelines_dir, "prompt", PROMPT_YAML)
    prompt = load_entry(Entry("prompt", "yaml", pipelines_dir / "prompt.yml", "r1"), yaml_result="outputs")
    assert set(prompt.result_type.model_json_schema()["properties"]) == {"prompt"}
    assert run(prompt, query="why?", topic="sky") == {"prompt": "Question about sky: why?"}


def test_a_yaml_with_an_unknown_component_type_is_a_load_error(pipelines_dir, load):
    write_yaml(pipelines_dir, "prompt", PROMPT_YAML.replace("prompt_builder.PromptBuilder", "nowhere.Nothing"))
    with pytest.raises(PipelineLoadError, match="Cannot build pipeline 'prompt'"):
        load("prompt")


@pytest.mark.parametrize(
    ("replace", "by", "message"),
    [
        ("query: builder.query", "query: missing.query", "has no component 'missing'"),
        ("query: builder.query", "query: builder.nope", "is not an input socket"),
        ("prompt: builder.prompt", "prompt: builder.nope", "is not an output socket"),
    ],
)
def test_a_yaml_naming_a_missing_socket_is_a_load_error(pipelines_dir, load, replace, by, message):
    write_yaml(pipelines_dir, "prompt", PROMPT_YAML.replace(replace, by))
    with pytest.raises(PipelineLoadError, match=message):
        load("prompt")


def test_parse_yaml_definition_splits_hayhooks_keys_from_the_pipeline():
    definition = parse_yaml_definition("prompt", PROMPT_YAML)
    assert definition.inputs == {"query": ["builder.query"], "topic": ["builder.topic"]}
    assert definition.outputs == {"prompt": "builder.prompt"}
    assert definition.description == "Fill a prompt template."
    assert set(definition.pipeline) == {"components", "connections"}


@pytest.mark.parametrize(
    ("source_code", "message"),
    [
        ("components: [", "Invalid YAML"),
        ("- a list\n", "must be a mapping"),
        ("components: {}\n", "at least one of 'inputs' or 'outputs'"),
        ("inputs: [a]\n", "must map names to 'component.socket'"),
        ("inputs:\n  q: nodot\n", "'q' of 'p' must be 'component.socket'"),
        ("outputs:\n  r: []\n", "'r' of 'p' must be 'component.socket'"),
    ],
)
def test_parse_yaml_definition_rejects_bad_shapes(source_code, message):
    with pytest.raises(PipelineLoadError, match=message):
        parse_yaml_definition("p", source_code)
