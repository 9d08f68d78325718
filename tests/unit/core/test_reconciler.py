"""The reconciler keeps a registry in line with the directory: loads, swaps, failures, removals, timeouts."""

import asyncio
import shutil
import threading
import time

from hayhooks.pipelines.reconciler import Reconciler
from hayhooks.pipelines.registry import PipelineRegistry
from tests.helpers.pipelines import GREET, PROMPT_YAML, SYNTAX_ERROR, versioned, write_wrapper, write_yaml
from tests.unit.core.conftest import gated, private_modules

# setup() sleeps in one C call for longer than the load timeout and the 2 s of trying to stop it.
SLEEPS_IN_SETUP = """
import time

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        time.sleep(3.5)

    def run_api(self) -> str:
        return "awake"
"""


def reconciler_for(source, *, load_timeout: float = 10.0, load_threads: int = 2) -> Reconciler:
    return Reconciler(source, PipelineRegistry(), load_timeout=load_timeout, load_threads=load_threads)


async def until(predicate, timeout: float = 5.0) -> None:
    """Let the loop run until ``predicate()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.01)


async def version_of(registry: PipelineRegistry, name: str) -> str:
    served = registry.get(name)
    return (await served.run(dict(served.request_model()), None))["version"]


def test_first_pass_loads_every_entry_and_becomes_ready(source, pipelines_dir):
    write_wrapper(pipelines_dir, "greet", GREET)
    write_yaml(pipelines_dir, "prompt", PROMPT_YAML)
    write_wrapper(pipelines_dir, "broken", SYNTAX_ERROR, files={})

    async def scenario():
        reconciler = reconciler_for(source)
        assert not reconciler.ready
        await reconciler.reconcile()
        assert reconciler.ready
        registry = reconciler.registry
        assert set(registry.serving()) == {"greet", "prompt"}
        assert {s.name: s.state for s in registry.statuses()} == {
            "broken": "failed",
            "greet": "ready",
            "prompt": "ready",
        }
        greet = registry.get("greet")
        assert await greet.run(dict(greet.request_model(name="Ada")), None) == "Hello, Ada."

    asyncio.run(scenario())


def test_an_unchanged_entry_is_not_loaded_again(source, pipelines_dir):
    write_wrapper(pipelines_dir, "v", versioned("1"))

    async def scenario():
        reconciler = reconciler_for(source)
        await reconciler.reconcile()
        first = reconciler.registry.get("v")
        await reconciler.reconcile()
        await reconciler.reconcile_one("v")
        assert reconciler.registry.get("v") is first

    asyncio.run(scenario())


def test_an_edit_swaps_in_the_new_revision_and_unloads_the_old(source, pipelines_dir):
    write_wrapper(pipelines_dir, "v", versioned("1"))

    async def scenario():
        reconciler = reconciler_for(source)
        registry = reconciler.registry
        await reconciler.reconcile()
        old = registry.get("v")
        assert await version_of(registry, "v") == "1"

        write_wrapper(pipelines_dir, "v", versioned("2"))
        await reconciler.reconcile()
        new = registry.get("v")
        assert new.revision != old.revision
        assert new.revision == source.scan_one("v")[0].revision
        assert await version_of(registry, "v") == "2"
        assert set(old.modules).isdisjoint(private_modules("v"))
        assert set(new.modules) <= private_modules("v")

    asyncio.run(scenario())


def test_a_broken_edit_keeps_the_last_good_revision_serving(source, pipelines_dir):
    write_wrapper(pipelines_dir, "v", versioned("1"))

    async def scenario():
        reconciler = reconciler_for(source)
        registry = reconciler.registry
        await reconciler.reconcile()
        good = registry.get("v")

        write_wrapper(pipelines_dir, "v", SYNTAX_ERROR)
        broken_revision = source.scan_one("v")[0].revision
        await reconciler.reconcile()
        assert registry.get("v") is good
        assert await version_of(registry, "v") == "1"
        status = registry.status("v")
        assert (status.state, status.revision, status.target) == ("failed", good.revision, broken_revision)
        assert "SyntaxError" in status.error

        await reconciler.reconcile()  # the same broken revision is not retried over and over
        assert registry.status("v") == status

        write_wrapper(pipelines_dir, "v", versioned("3"))
        await reconciler.reconcile()
        assert registry.status("v").state == "ready"
        assert await version_of(registry, "v") == "3"

    asyncio.run(scenario())


def test_a_removed_entry_is_unserved_and_unloaded(source, pipelines_dir):
    write_wrapper(pipelines_dir, "v", versioned("1"))
    write_yaml(pipelines_dir, "prompt", PROMPT_YAML)

    async def scenario():
        reconciler = reconciler_for(source)
        registry = reconciler.registry
        await reconciler.reconcile()
        assert private_modules("v")

        shutil.rmtree(pipelines_dir / "v")
        (pipelines_dir / "prompt.yml").unlink()
        await reconciler.reconcile()
        assert registry.serving() == {}
        assert registry.statuses() == []
        assert private_modules("v") == set()

    asyncio.run(scenario())


def test_an_invalid_name_is_a_failed_status_until_it_goes_away(source, pipelines_dir):
    write_wrapper(pipelines_dir, "bad name", versioned("1"))

    async def scenario():
        reconciler = reconciler_for(source)
        registry = reconciler.registry
        await reconciler.reconcile()
        status = registry.status("bad name")
        assert status.state == "failed"
        assert "not a valid pipeline name" in status.error
        assert registry.get("bad name") is None

        shutil.rmtree(pipelines_dir / "bad name")
        await reconciler.reconcile()
        assert registry.status("bad name") is None

    asyncio.run(scenario())


def test_reconcile_one_settles_only_its_own_name(source, pipelines_dir):
    write_wrapper(pipelines_dir, "a", versioned("1"))
    write_wrapper(pipelines_dir, "b", versioned("1"))

    async def scenario():
        reconciler = reconciler_for(source)
        await reconciler.reconcile_one("a")
        assert set(reconciler.registry.serving()) == {"a"}
        assert reconciler.registry.status("b") is None
        assert not reconciler.ready  # only a full pass makes the worker ready

        shutil.rmtree(pipelines_dir / "a")
        await reconciler.reconcile_one("a")
        assert reconciler.registry.serving() == {}

    asyncio.run(scenario())


def test_reconcile_one_does_not_wait_for_another_entry_whose_load_hangs(source, pipelines_dir, tmp_path):
    """A deploy settling its own entry is not held up by a full pass stuck on another entry's setup()."""
    gate = tmp_path / "release-slow"
    write_wrapper(pipelines_dir, "slow", gated(gate, seconds=3))

    async def scenario():
        reconciler = reconciler_for(source)
        registry = reconciler.registry
        full_pass = asyncio.create_task(reconciler.reconcile())
        try:
            await until(lambda: getattr(registry.status("slow"), "state", None) == "loading")
            write_wrapper(pipelines_dir, "quick", versioned("1"))

            started = time.perf_counter()
            await reconciler.reconcile_one("quick")
            elapsed = time.perf_counter() - started

            assert not full_pass.done()  # the hang was real while reconcile_one ran
            assert not reconciler.ready
            assert registry.status("quick").state == "ready"
            assert await version_of(registry, "quick") == "1"
            assert elapsed < 1.5
        finally:
            gate.touch()
            await full_pass
        assert reconciler.ready
        assert registry.status("slow").state == "ready"

    asyncio.run(scenario())


def test_a_load_slower_than_load_timeout_in_python_code_is_stopped_and_leaves_nothing(source, pipelines_dir, tmp_path):
    write_wrapper(pipelines_dir, "slow", gated(tmp_path / "never-opened", seconds=60))

    async def scenario():
        reconciler = reconciler_for(source, load_timeout=0.3)
        registry = reconciler.registry
        started = time.perf_counter()
        await reconciler.reconcile()
        assert time.perf_counter() - started < 2.5
        status = registry.status("slow")
        assert status.state == "failed" and status.error.endswith(
            "took longer than 0.3s (HAYHOOKS_LOAD_TIMEOUT); stopped"
        )
        assert registry.get("slow") is None and reconciler.ready
        assert not private_modules("slow") and reconciler.abandoned.look() == []
        assert not [thread for thread in threading.enumerate() if thread.name == "hayhooks-load"]

    asyncio.run(scenario())


def test_a_load_blocked_outside_python_is_kept_as_abandoned_until_it_wakes_and_ends(source, pipelines_dir):
    write_wrapper(pipelines_dir, "asleep", SLEEPS_IN_SETUP)

    async def scenario():
        reconciler = reconciler_for(source, load_timeout=0.3)
        await reconciler.reconcile()  # 0.3 s, then 2 s of trying to stop it
        status = reconciler.registry.status("asleep")
        assert "could not be stopped (blocked outside Python code)" in status.error, status.error
        (abandoned,) = reconciler.abandoned.look()
        assert (abandoned.name, abandoned.burning) == ("asleep", False)  # asleep: it holds no core
        await until(lambda: not reconciler.abandoned.look(), timeout=5)  # woke, met LoadAbandoned, ended
        assert not private_modules("asleep")

    asyncio.run(scenario())


def test_run_forever_reconciles_when_requested(source, pipelines_dir):
    async def scenario():
        reconciler = reconciler_for(source)
        loop_task = asyncio.create_task(reconciler.run_forever())
        try:
            reconciler.request()
            await until(lambda: reconciler.ready)
            assert reconciler.registry.serving() == {}

            write_wrapper(pipelines_dir, "v", versioned("1"))
            reconciler.request()
            reconciler.request()  # coalesces with the one before
            await until(lambda: reconciler.registry.get("v") is not None)
        finally:
            loop_task.cancel()

    asyncio.run(scenario())


def test_run_forever_survives_a_failing_scan(source, pipelines_dir, monkeypatch):
    async def scenario():
        reconciler = reconciler_for(source)
        real_scan, calls = source.scan, []

        def scan_failing_once():
            calls.append(1)
            if len(calls) == 1:
                raise PermissionError("unreadable")
            return real_scan()

        monkeypatch.setattr(source, "scan", scan_failing_once)
        write_wrapper(pipelines_dir, "v", versioned("1"))
        loop_task = asyncio.create_task(reconciler.run_forever())
        try:
            reconciler.request()
            await until(lambda: len(calls) == 1)
            reconciler.request()
            await until(lambda: reconciler.registry.get("v") is not None)
        finally:
            loop_task.cancel()

    asyncio.run(scenario())


def test_unsettled_lists_the_entries_not_yet_served_at_their_directory_revision(source, pipelines_dir, tmp_path):
    """What keeps /ready at 503: a changed entry while it loads (with what it serves meanwhile); not a
    failed one, which was given up on, nor one removed from the directory."""
    write_wrapper(pipelines_dir, "ver", versioned("1"))
    write_wrapper(pipelines_dir, "Bad Name", versioned("1"))

    async def scenario():
        reconciler = reconciler_for(source)
        registry = reconciler.registry
        await reconciler.reconcile()
        assert reconciler.unsettled() == []  # the invalid name failed: given up on, not pending
        old = registry.get("ver").revision

        gate = tmp_path / "gate"
        write_wrapper(pipelines_dir, "ver", gated(gate, seconds=10))
        full_pass = asyncio.create_task(reconciler.reconcile())
        try:
            await until(lambda: getattr(registry.status("ver"), "state", None) == "loading")
            (pending,) = reconciler.unsettled()
            assert pending == {"name": "ver", "revision": registry.target("ver"), "serving": old}
            assert pending["revision"] != old
        finally:
            gate.touch()
            await full_pass
        assert reconciler.unsettled() == []

        write_wrapper(pipelines_dir, "ver", SYNTAX_ERROR, files={})
        await reconciler.reconcile_one("ver")
        assert registry.status("ver").state == "failed" and reconciler.unsettled() == []
        shutil.rmtree(pipelines_dir / "ver")
        await reconciler.reconcile_one("ver")
        assert reconciler.unsettled() == []

    asyncio.run(scenario())
