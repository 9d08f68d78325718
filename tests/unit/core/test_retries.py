"""Self-healing loads: which failures are retried, the backoff schedule, and retries in the reconciler."""

import asyncio

import pytest

from hayhooks.pipelines.loader import PipelineLoadError
from hayhooks.pipelines.reconciler import Reconciler
from hayhooks.pipelines.registry import PipelineRegistry
from hayhooks.pipelines.retries import Backoff
from tests.helpers.pipelines import (
    IMPORT_ERROR,
    PROMPT_YAML,
    SETUP_FAILS,
    SPINS_IN_SETUP,
    SYNTAX_ERROR,
    flaky_setup,
    versioned,
    write_wrapper,
    write_yaml,
)
from tests.unit.core.test_reconciler import SLEEPS_IN_SETUP, until

QUICK = Backoff(first=0.05, cap=0.1)

# setup() fails at once on its first load; its second (the retry) waits for ``gate`` (5 s at most), then fails.
SLOW_RETRY = """
import os
import time
from pathlib import Path

from hayhooks import BasePipelineWrapper

MARKS = Path({marks!r})


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        with MARKS.open("a") as marks:
            marks.write("x")
        deadline = time.monotonic() + 5
        while MARKS.stat().st_size > 1 and not os.path.exists({gate!r}) and time.monotonic() < deadline:
            time.sleep(0.01)
        raise ConnectionError("index not reachable yet")

    def run_api(self) -> str:
        return "never"
"""

# --- which failures may pass on a retry ----------------------------------------------------------------

OWN_MODULE_MISSING = "from .nowhere import thing\n"
OWN_NAME_MISSING = "from .helpers import nothing_of_the_sort\n"
SIBLING_NAME_MISSING = "from helpers import nothing_of_the_sort\n"
INDENTATION_ERROR = "def f():\nreturn 1\n"
NULL_BYTES = "x = 1\0\n"
RAISES_AT_IMPORT = "raise ConnectionError('database not up yet')\n"


@pytest.mark.parametrize(
    ("code", "files", "retryable"),
    [
        (SYNTAX_ERROR, {}, False),
        (INDENTATION_ERROR, {}, False),
        (NULL_BYTES, {}, False),
        (OWN_MODULE_MISSING, {}, False),
        (OWN_NAME_MISSING, {"helpers.py": "x = 1\n"}, False),
        (SIBLING_NAME_MISSING, {"helpers.py": "x = 1\n"}, False),
        (IMPORT_ERROR, {}, True),  # a module outside the folder: a package not installed yet
        (RAISES_AT_IMPORT, {}, True),
        (SETUP_FAILS, {}, True),
    ],
    ids=[
        "syntax-error",
        "indentation-error",
        "null-bytes",
        "own-module-missing",
        "own-name-missing",
        "sibling-name-missing",
        "outside-module-missing",
        "raises-at-import",
        "setup-raises",
    ],
)
def test_a_wrapper_load_error_says_whether_the_same_files_may_load_later(pipelines_dir, load, code, files, retryable):
    write_wrapper(pipelines_dir, "broken", code, files=files)
    with pytest.raises(PipelineLoadError) as caught:
        load("broken")
    assert caught.value.retryable is retryable, str(caught.value)


def test_a_syntax_error_in_a_shared_module_outside_the_folder_is_retried(pipelines_dir, tmp_path, load, monkeypatch):
    """Fixing a module on the Python path changes no pipeline file: only a retry can pick the fix up."""
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "broken_shared_helpers.py").write_text("def f(:\n")
    monkeypatch.syspath_prepend(str(shared))
    write_wrapper(pipelines_dir, "user", "import broken_shared_helpers\n", files={})
    with pytest.raises(PipelineLoadError, match="SyntaxError") as caught:
        load("user")
    assert caught.value.retryable


@pytest.mark.parametrize(
    ("replace", "by", "retryable"),
    [
        ("components:", "components: [", False),  # does not parse
        ("prompt_builder.PromptBuilder", "nowhere.Nothing", False),  # a module that is not allowed
        ("prompt_builder.PromptBuilder", "prompt_builder.NoSuchBuilder", False),  # an unknown type
        ("init_parameters:", "init_parameters:\n      no_such_argument: 1", False),
        ('template: "Question', 'template: "{% if %}Question', True),  # the component's init raised
        ("query: builder.query", "query: missing.query", False),
    ],
    ids=["invalid-yaml", "not-allowed", "unknown-type", "wrong-argument", "init-raises", "missing-socket"],
)
def test_a_yaml_load_error_says_whether_the_same_file_may_load_later(pipelines_dir, load, replace, by, retryable):
    write_yaml(pipelines_dir, "prompt", PROMPT_YAML.replace(replace, by, 1))
    with pytest.raises(PipelineLoadError) as caught:
        load("prompt")
    assert caught.value.retryable is retryable, str(caught.value)


# --- the backoff schedule ------------------------------------------------------------------------------


def test_the_backoff_doubles_from_the_first_delay_up_to_the_cap():
    backoff = Backoff(first=1.0, cap=300.0)
    middle = [backoff.delay(attempts, spread=0.5) for attempts in range(1, 12)]
    assert middle == [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300]
    assert backoff.delay(10_000, spread=0.5) == 300  # no overflow however long it fails


def test_each_delay_is_spread_fifty_percent_either_way():
    backoff = Backoff(first=2.0, cap=10.0)
    assert backoff.delay(1, spread=0.0) == 1.0 and backoff.delay(3, spread=0.0) == 4.0
    assert backoff.delay(1, spread=0.999) == pytest.approx(2.998)
    drawn = [backoff.delay(2) for _ in range(200)]
    assert all(2.0 <= delay < 6.0 for delay in drawn) and len(set(drawn)) > 100


# --- retries in the reconciler -------------------------------------------------------------------------


def reconciler_for(source, retry: Backoff | None = QUICK, load_timeout: float = 10.0) -> Reconciler:
    return Reconciler(source, PipelineRegistry(), load_timeout=load_timeout, load_threads=2, retry=retry)


def test_a_setup_that_fails_twice_is_retried_until_it_serves_without_a_file_change(source, pipelines_dir, tmp_path):
    write_wrapper(pipelines_dir, "flaky", flaky_setup(tmp_path / "counts", failures=2))
    revision = source.scan_one("flaky")[0].revision

    async def scenario():
        reconciler = reconciler_for(source)
        registry = reconciler.registry
        await reconciler.reconcile()
        first = registry.status("flaky")
        assert (first.state, first.attempts) == ("failed", 1) and "index not reachable yet" in first.error
        assert 0 < first.next_retry_at - first.updated_at <= 0.1  # QUICK: 0.05 s, spread ±50%
        await until(lambda: registry.status("flaky").state == "ready")
        ready = registry.status("flaky")
        assert (ready.revision, ready.target, ready.attempts, ready.next_retry_at, ready.error) == (
            revision,
            revision,
            3,
            None,
            None,
        )
        assert await registry.get("flaky").run({}, None) == 3
        await reconciler.stop()

    asyncio.run(scenario())


def test_a_syntax_error_is_not_retried(source, pipelines_dir):
    write_wrapper(pipelines_dir, "broken", SYNTAX_ERROR, files={})
    write_wrapper(pipelines_dir, "down", SETUP_FAILS, files={})

    async def scenario():
        reconciler = reconciler_for(source)
        registry = reconciler.registry
        await reconciler.reconcile()
        before = registry.status("broken")
        assert (before.state, before.attempts, before.next_retry_at) == ("failed", 1, None)
        await until(lambda: registry.status("down").attempts >= 4)  # retries do run meanwhile
        assert registry.status("broken") == before
        await reconciler.stop()

    asyncio.run(scenario())


def test_a_full_pass_does_not_wait_for_a_retry_in_flight(source, pipelines_dir, tmp_path):
    """One bad entry never delays the others: a pass that finds the revision a retry is loading leaves it be."""
    marks, gate = tmp_path / "marks", tmp_path / "gate"
    write_wrapper(pipelines_dir, "slow", SLOW_RETRY.format(marks=str(marks), gate=str(gate)), files={})

    async def scenario():
        reconciler = reconciler_for(source)
        registry = reconciler.registry
        await reconciler.reconcile()
        await until(lambda: marks.exists() and marks.stat().st_size == 2)  # the retry is in its setup()
        write_wrapper(pipelines_dir, "other", versioned("1"))
        await reconciler.reconcile()
        assert registry.status("other").state == "ready"
        assert registry.status("slow").attempts == 1  # the pass ended while the retry still waits for its gate
        gate.touch()
        await until(lambda: registry.status("slow").attempts == 2)
        await reconciler.stop()

    asyncio.run(scenario())


def test_retries_off_leave_a_failure_until_the_files_change(source, pipelines_dir):
    write_wrapper(pipelines_dir, "down", SETUP_FAILS, files={})

    async def scenario():
        reconciler = reconciler_for(source, retry=None)
        await reconciler.reconcile()
        before = reconciler.registry.status("down")
        assert (before.attempts, before.next_retry_at) == (1, None)
        await asyncio.sleep(0.3)
        assert reconciler.registry.status("down") == before

    asyncio.run(scenario())


def test_a_file_change_replaces_the_pending_retry_with_a_load_of_the_new_revision(source, pipelines_dir):
    write_wrapper(pipelines_dir, "v", SETUP_FAILS, files={})

    async def scenario():
        reconciler = reconciler_for(source, retry=Backoff(first=0.3, cap=0.3))
        registry = reconciler.registry
        await reconciler.reconcile()
        assert registry.status("v").next_retry_at is not None
        write_wrapper(pipelines_dir, "v", versioned("2"))
        await reconciler.reconcile()
        fixed = registry.status("v")
        assert (fixed.state, fixed.attempts, fixed.next_retry_at) == ("ready", 1, None)
        await asyncio.sleep(0.5)  # the old revision's retry came due and found nothing to do
        assert registry.status("v") == fixed

    asyncio.run(scenario())


def test_a_removed_entry_is_not_retried(source, pipelines_dir):
    folder = write_wrapper(pipelines_dir, "gone", SETUP_FAILS, files={})

    async def scenario():
        reconciler = reconciler_for(source, retry=Backoff(first=0.2, cap=0.2))
        await reconciler.reconcile()
        (folder / "pipeline_wrapper.py").unlink()
        folder.rmdir()
        await reconciler.reconcile()
        assert reconciler.registry.status("gone") is None
        await asyncio.sleep(0.4)
        assert reconciler.registry.status("gone") is None

    asyncio.run(scenario())


def test_a_timed_out_load_that_could_not_be_stopped_is_retried_only_once_its_thread_ended(source, pipelines_dir):
    write_wrapper(pipelines_dir, "asleep", SLEEPS_IN_SETUP)

    async def scenario():
        reconciler = reconciler_for(source, load_timeout=0.3)
        registry = reconciler.registry
        await reconciler.reconcile()  # 0.3 s, then 2 s of trying to stop it; its thread sleeps about 1 s more
        assert "could not be stopped" in registry.status("asleep").error
        assert reconciler.abandoned.holds("asleep", registry.status("asleep").target)
        await asyncio.sleep(0.3)  # several retry periods: none may start a second sleeping thread
        assert registry.status("asleep").attempts == 1
        await until(lambda: registry.status("asleep").attempts == 2, timeout=8)
        await reconciler.stop()

    asyncio.run(scenario())


def test_a_load_stopped_at_the_timeout_waits_at_least_the_timeout_before_its_retry(source, pipelines_dir):
    """A setup() that spins forever is stopped at the timeout; retried at once it would keep a load
    thread (and a core) busy all the time, so its retry waits at least as long as it ran."""
    write_wrapper(pipelines_dir, "spins", SPINS_IN_SETUP)

    async def scenario():
        reconciler = reconciler_for(source, load_timeout=0.5)
        registry = reconciler.registry
        await reconciler.reconcile()
        status = registry.status("spins")
        assert "stopped" in status.error and status.attempts == 1
        assert status.next_retry_at - status.updated_at > 0.45  # QUICK's backoff alone: at most 0.15 s
        await reconciler.stop()

    asyncio.run(scenario())
