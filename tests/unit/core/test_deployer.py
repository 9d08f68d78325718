"""Deploys: check, validate by loading, publish, and settle this worker before answering."""

import asyncio
import sys
from pathlib import Path

import pytest

from hayhooks.pipelines.deployer import Deployer, DeployRejected
from hayhooks.pipelines.names import LOCK_FILE
from hayhooks.pipelines.reconciler import Reconciler
from hayhooks.pipelines.registry import PipelineRegistry
from tests.helpers.pipelines import (
    GREET,
    IMPORT_ERROR,
    PROMPT_YAML,
    SETUP_FAILS,
    SYNTAX_ERROR,
    versioned,
    wrapper_files,
    write_wrapper,
)
from tests.unit.core.conftest import private_modules


def deployer_for(source) -> Deployer:
    """A deployer whose trial load runs in this process: the disposable child is tests/unit/core/test_checker.py's."""
    reconciler = Reconciler(source, PipelineRegistry(), load_timeout=10, load_threads=2)

    async def trial_load(entry) -> None:
        (await reconciler.load(entry)).unload()

    return Deployer(source, reconciler, trial_load)


def directory(root) -> list[str]:
    """What the directory holds besides the deploy lock file."""
    return sorted(p.name for p in root.iterdir() if p.name != LOCK_FILE)


def deploy_files(source, name, files, *, overwrite=False):
    deployer = deployer_for(source)
    revision = asyncio.run(deployer.deploy_files(name, files, overwrite=overwrite))
    return deployer, revision


def rejection(coroutine) -> DeployRejected:
    with pytest.raises(DeployRejected) as caught:
        asyncio.run(coroutine)
    return caught.value


def test_a_valid_wrapper_deploy_is_published_and_served_when_the_call_returns(source, pipelines_dir):
    deployer = deployer_for(source)

    async def scenario():
        revision = await deployer.deploy_files("greet", wrapper_files(GREET), overwrite=False)
        served = deployer.reconciler.registry.get("greet")
        assert served is not None and served.revision == revision
        assert await served.run(dict(served.request_model(name="Ada")), None) == "Hello, Ada."
        return revision

    revision = asyncio.run(scenario())
    assert directory(pipelines_dir) == ["greet"]
    assert source.scan_one("greet")[0].revision == revision
    (wrapper_module,) = [
        m for m in deployer.reconciler.registry.get("greet").modules if m.endswith(".pipeline_wrapper")
    ]
    assert Path(sys.modules[wrapper_module].__file__).parent == pipelines_dir / "greet"  # not the staged copy


def test_the_validation_load_of_the_staged_copy_leaves_no_modules(source, pipelines_dir):
    deployer, _ = deploy_files(source, "greet", wrapper_files(GREET))
    assert private_modules("greet") == set(deployer.reconciler.registry.get("greet").modules)


def test_a_yaml_deploy_is_published_with_its_description(source, pipelines_dir):
    deployer = deployer_for(source)

    async def scenario():
        await deployer.deploy_yaml("prompt", PROMPT_YAML, overwrite=False, description="Ask away.")
        served = deployer.reconciler.registry.get("prompt")
        assert served.description == "Ask away."
        return await served.run(dict(served.request_model(query="q", topic="t")), None)

    assert asyncio.run(scenario()) == {"builder": {"prompt": "Question about t: q"}}
    assert directory(pipelines_dir) == ["prompt.yml"]
    assert "Ask away." in (pipelines_dir / "prompt.yml").read_text()


def test_an_overwrite_serves_the_new_revision(source, pipelines_dir):
    write_wrapper(pipelines_dir, "v", versioned("1"))
    deployer = deployer_for(source)

    async def scenario():
        await deployer.reconciler.reconcile()
        old = deployer.reconciler.registry.get("v")
        revision = await deployer.deploy_files("v", {"pipeline_wrapper.py": versioned("2")}, overwrite=True)
        new = deployer.reconciler.registry.get("v")
        assert new.revision == revision != old.revision
        assert (await new.run(dict(new.request_model()), None))["version"] == "2"

    asyncio.run(scenario())
    assert directory(pipelines_dir) == ["v"]


@pytest.mark.parametrize(
    ("name", "files", "message"),
    [
        ("bad name", wrapper_files(GREET), "Invalid pipeline name"),
        (".staging-x", wrapper_files(GREET), "Invalid pipeline name"),
        ("greet", {**wrapper_files(GREET), "../escape.py": ""}, "Invalid file name"),
        ("greet", {**wrapper_files(GREET), "/abs.py": ""}, "Invalid file name"),
        ("greet", {**wrapper_files(GREET), ".env": "SECRET=1"}, "hidden files"),
        ("greet", {"helpers.py": ""}, "Missing required file: pipeline_wrapper.py"),
        ("greet", {"pipeline_wrapper.py": SYNTAX_ERROR}, "SyntaxError"),
        ("greet", {"pipeline_wrapper.py": IMPORT_ERROR}, "ModuleNotFoundError"),
        ("greet", {"pipeline_wrapper.py": SETUP_FAILS}, "setup() of 'greet' failed"),
        ("greet", {"pipeline_wrapper.py": "x = 1\n"}, "must define class PipelineWrapper"),
        ("greet", {"pipeline_wrapper.py": "x = '\ud800'\n"}, "not valid UTF-8"),
    ],
)
def test_an_invalid_deploy_is_rejected_and_leaves_nothing_behind(source, pipelines_dir, name, files, message):
    deployer = deployer_for(source)
    rejected = rejection(deployer.deploy_files(name, files, overwrite=False))
    assert rejected.reason == "invalid"
    assert message in str(rejected)
    assert directory(pipelines_dir) == []
    assert deployer.reconciler.registry.statuses() == []
    assert private_modules(name) == set()


def test_a_rejected_load_message_does_not_reveal_the_staging_path(source, pipelines_dir):
    rejected = rejection(deployer_for(source).deploy_files("g", {"pipeline_wrapper.py": SYNTAX_ERROR}, overwrite=False))
    assert ".staging-" not in str(rejected)
    assert str(pipelines_dir) not in str(rejected)


@pytest.mark.parametrize(
    ("source_code", "message"),
    [("components: [", "Invalid YAML"), ("components: {}\n", "at least one of 'inputs' or 'outputs'")],
)
def test_an_invalid_yaml_deploy_is_rejected_and_leaves_nothing_behind(source, pipelines_dir, source_code, message):
    rejected = rejection(deployer_for(source).deploy_yaml("p", source_code, overwrite=False, description=None))
    assert (rejected.reason, message in str(rejected)) == ("invalid", True)
    assert directory(pipelines_dir) == []


def test_a_yaml_that_cannot_be_built_is_rejected_and_leaves_nothing_behind(source, pipelines_dir):
    broken = PROMPT_YAML.replace("prompt_builder.PromptBuilder", "nowhere.Nothing")
    rejected = rejection(deployer_for(source).deploy_yaml("p", broken, overwrite=False, description=None))
    assert rejected.reason == "invalid"
    assert directory(pipelines_dir) == []


def test_a_broken_overwrite_is_rejected_and_keeps_the_old_revision(source, pipelines_dir):
    write_wrapper(pipelines_dir, "v", versioned("1"))
    before = source.scan_one("v")[0].revision
    rejected = rejection(deployer_for(source).deploy_files("v", {"pipeline_wrapper.py": SYNTAX_ERROR}, overwrite=True))
    assert rejected.reason == "invalid"
    assert directory(pipelines_dir) == ["v"]
    assert source.scan_one("v")[0].revision == before


@pytest.mark.parametrize("existing", ["folder", "yaml"])
def test_deploying_an_existing_name_without_overwrite_is_a_conflict(source, pipelines_dir, existing):
    if existing == "folder":
        write_wrapper(pipelines_dir, "p", versioned("1"))
    else:
        (pipelines_dir / "p.yaml").write_text(PROMPT_YAML)
    before = directory(pipelines_dir)
    deployer = deployer_for(source)
    assert rejection(deployer.deploy_files("p", wrapper_files(GREET), overwrite=False)).reason == "conflict"
    assert rejection(deployer.deploy_yaml("p", PROMPT_YAML, overwrite=False, description=None)).reason == "conflict"
    assert directory(pipelines_dir) == before


def test_undeploy_removes_the_entry_and_unserves_it(source, pipelines_dir):
    deployer = deployer_for(source)

    async def scenario():
        await deployer.deploy_files("greet", wrapper_files(GREET), overwrite=False)
        await deployer.undeploy("greet")

    asyncio.run(scenario())
    assert directory(pipelines_dir) == []
    assert deployer.reconciler.registry.get("greet") is None
    assert deployer.reconciler.registry.status("greet") is None


@pytest.mark.parametrize(("name", "reason"), [("absent", "missing"), ("bad name", "invalid")])
def test_undeploy_of_a_missing_or_invalid_name_is_rejected(source, name, reason):
    assert rejection(deployer_for(source).undeploy(name)).reason == reason
