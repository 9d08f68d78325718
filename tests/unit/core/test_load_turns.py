"""Turns to load a pipeline among a server's workers: at most ``cap`` at once, freed when a holder ends."""

import asyncio
import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from hayhooks.cluster.load_turns import LoadTurns
from hayhooks.pipelines.reconciler import Reconciler
from hayhooks.pipelines.registry import PipelineRegistry
from tests.helpers.pipelines import versioned, write_wrapper


async def took_at_once(turns: LoadTurns, name: str) -> bool:
    """Whether a turn of ``name`` was free: taken and given back at once."""
    waited: list[bool] = []
    async with turns.turn(name, lambda: waited.append(True)):
        return not waited


def test_a_cap_of_two_lets_two_in_and_the_third_waits_until_one_leaves(tmp_path: Path):
    async def scenario():
        first, second, third = (LoadTurns(tmp_path, 2) for _ in range(3))  # three workers of one server
        async with first.turn("p", lambda: None), second.turn("p", lambda: None):
            waited: list[bool] = []
            third_in = asyncio.Event()

            async def third_worker():
                async with third.turn("p", lambda: waited.append(True)):
                    third_in.set()

            task = asyncio.create_task(third_worker())
            await asyncio.sleep(0.2)
            assert waited == [True] and not third_in.is_set()
            assert await took_at_once(third, "other")  # turns are per pipeline name
        await asyncio.wait_for(task, 2)
        assert third_in.is_set()

    asyncio.run(scenario())


def hold_a_turn(runtime: Path, held: "multiprocessing.synchronize.Event") -> None:
    async def hold():
        async with LoadTurns(runtime, 1).turn("p", lambda: None):
            held.set()
            await asyncio.sleep(60)

    asyncio.run(hold())


def test_a_holder_killed_mid_load_frees_its_turn(tmp_path: Path):
    context = multiprocessing.get_context("spawn")
    held = context.Event()
    holder = context.Process(target=hold_a_turn, args=(tmp_path, held))
    holder.start()
    try:
        assert held.wait(30)
        assert not asyncio.run(took_at_once(LoadTurns(tmp_path, 1), "p"))
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
        assert asyncio.run(took_at_once(LoadTurns(tmp_path, 1), "p"))
    finally:
        holder.kill()


def test_a_cap_below_one_is_refused(tmp_path: Path):
    with pytest.raises(ValueError):
        LoadTurns(tmp_path, 0)


def test_a_reload_waiting_for_its_turn_keeps_serving_the_old_revision(source, pipelines_dir, tmp_path):
    write_wrapper(pipelines_dir, "v", versioned("1"))
    runtime = tmp_path / "runtime"

    async def scenario():
        reconciler = Reconciler(
            source, PipelineRegistry(), load_timeout=10, load_threads=2, turn=LoadTurns(runtime, 1).turn
        )
        await reconciler.reconcile()
        old = reconciler.registry.get("v")
        write_wrapper(pipelines_dir, "v", versioned("2"))
        other_worker = LoadTurns(runtime, 1)
        async with other_worker.turn("v", lambda: None):
            reload = asyncio.create_task(reconciler.reconcile())
            await asyncio.sleep(0.3)
            status = reconciler.registry.status("v")
            assert (status.state, status.revision) == ("waiting", old.revision)
            assert status.target == source.scan_one("v")[0].revision
            assert reconciler.registry.get("v") is old
        await asyncio.wait_for(reload, 10)
        status = reconciler.registry.status("v")
        assert status.state == "ready" and status.revision == status.target != old.revision

    asyncio.run(scenario())
