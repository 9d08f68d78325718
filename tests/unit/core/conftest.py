"""Fixtures for the pipelines core: a source over a temp directory, loads that clean up after themselves."""

import os

os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"

import sys  # noqa: E402
import textwrap  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

from hayhooks.pipelines.loader import LoadedPipeline, load_entry  # noqa: E402
from hayhooks.pipelines.source import PipelineSource  # noqa: E402

PRIVATE_PACKAGE = "hayhooks_pipelines."

# setup() waits until a gate file exists (at most ``seconds``): a load that hangs until the test releases it.
GATED = '''
import os
import time

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        deadline = time.monotonic() + {seconds}
        while not os.path.exists({gate!r}) and time.monotonic() < deadline:
            time.sleep(0.01)

    def run_api(self) -> str:
        """Say that the gate opened."""
        return "released"
'''


def gated(gate: Path, seconds: float = 3.0) -> str:
    """Wrapper code whose setup() blocks until ``gate`` exists, or ``seconds`` passed."""
    return textwrap.dedent(GATED.format(gate=str(gate), seconds=seconds)).lstrip()


def private_modules(name: str) -> set[str]:
    """The per-revision modules of pipeline ``name`` now in ``sys.modules``."""
    prefix = f"{PRIVATE_PACKAGE}{name.replace('-', '_')}_"
    return {module for module in sys.modules if module.startswith(prefix)}


@pytest.fixture(autouse=True)
def _forget_loaded_pipelines() -> Iterator[None]:
    """What a test loaded and did not unload must not show up in the next test's private_modules()."""
    yield
    for module in [m for m in sys.modules if m.startswith(PRIVATE_PACKAGE)]:
        sys.modules.pop(module, None)


@pytest.fixture
def source(pipelines_dir: Path) -> PipelineSource:
    return PipelineSource(pipelines_dir)


@pytest.fixture
def load(source: PipelineSource) -> Iterator[Callable[[str], LoadedPipeline]]:
    """Load entry ``name`` of the pipelines directory as it is now; unloaded after the test."""
    loaded: list[LoadedPipeline] = []

    def load_named(name: str) -> LoadedPipeline:
        entry, error = source.scan_one(name)
        assert entry is not None, error
        pipeline = load_entry(entry)
        loaded.append(pipeline)
        return pipeline

    yield load_named
    for pipeline in loaded:
        pipeline.unload()
