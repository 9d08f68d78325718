"""The directory watcher: real filesystem events (inotify and polling) wake it; our own staging does not."""

import asyncio
import threading
import time
from collections.abc import Iterator

import pytest
import watchfiles

from hayhooks.pipelines.names import LOCK_FILE
from hayhooks.pipelines.watcher import DirectoryWatcher, _PipelinesFilter, rescan_periodically


@pytest.fixture(params=[False, True], ids=["inotify", "polling"])
def watch(request, pipelines_dir) -> Iterator[tuple[DirectoryWatcher, threading.Event]]:
    changed = threading.Event()
    watcher = DirectoryWatcher(
        pipelines_dir, changed.set, quiet_ms=20, force_polling=request.param, poll_interval_ms=20
    )
    watcher.start()
    yield watcher, changed
    watcher.stop()
    watcher._thread.join(5)


def fires_after_writes(path, changed: threading.Event, timeout: float = 10.0) -> bool:
    """Write ``path`` until ``changed`` is set (the watcher may still be starting); whether it was."""
    deadline = time.monotonic() + timeout
    count = 0
    while time.monotonic() < deadline:
        count += 1
        path.write_text(f"write {count}")
        if changed.wait(0.2):
            return True
    return False


def settle(changed: threading.Event, quiet: float = 0.3, timeout: float = 5.0) -> None:
    """Wait until the watcher has been quiet for ``quiet`` seconds, then clear ``changed``."""
    deadline = time.monotonic() + timeout
    while changed.wait(quiet):
        changed.clear()
        assert time.monotonic() < deadline, "the watcher never went quiet"


def test_a_file_write_fires_on_change(watch, pipelines_dir):
    _, changed = watch
    assert fires_after_writes(pipelines_dir / "prompt.yml", changed)


def test_a_write_inside_a_pipeline_folder_fires_on_change(watch, pipelines_dir):
    _, changed = watch
    (pipelines_dir / "greet").mkdir()
    assert fires_after_writes(pipelines_dir / "greet" / "pipeline_wrapper.py", changed)


def test_writes_inside_a_staging_folder_alone_do_not_fire(watch, pipelines_dir):
    _, changed = watch
    staging = pipelines_dir / ".staging-greet-0123"
    staging.mkdir()
    assert fires_after_writes(pipelines_dir / "probe.yml", changed)  # the watcher is live
    settle(changed)
    (staging / "pipeline_wrapper.py").write_text("print('staged')")
    (staging / "helpers.py").write_text("")
    assert not changed.wait(1.0)


def test_stop_ends_the_watcher_thread(watch, pipelines_dir):
    watcher, changed = watch
    assert fires_after_writes(pipelines_dir / "probe.yml", changed)
    watcher.stop()
    watcher._thread.join(5)
    assert not watcher._thread.is_alive()


def test_the_filter_drops_private_names_and_keeps_entries(tmp_path):
    keep = _PipelinesFilter(str(tmp_path))
    assert not keep(watchfiles.Change.added, str(tmp_path / ".staging-greet-0123"))
    assert not keep(watchfiles.Change.added, str(tmp_path / ".staging-greet-0123" / "pipeline_wrapper.py"))
    assert not keep(watchfiles.Change.deleted, str(tmp_path / ".trash-greet-0123" / "helpers" / "x.py"))
    assert not keep(watchfiles.Change.deleted, str(tmp_path / ".trash-greet-0123"))
    assert not keep(watchfiles.Change.modified, str(tmp_path / LOCK_FILE))
    assert not keep(watchfiles.Change.modified, str(tmp_path / "greet" / "__pycache__" / "x.pyc"))
    assert keep(watchfiles.Change.added, str(tmp_path / "greet"))
    assert keep(watchfiles.Change.modified, str(tmp_path / "greet" / "pipeline_wrapper.py"))


def test_a_watcher_on_a_missing_root_waits_and_stops(tmp_path):
    """A root that does not exist (not yet mounted) neither crashes the thread nor blocks stop()."""
    watcher = DirectoryWatcher(tmp_path / "absent", lambda: None, quiet_ms=20, force_polling=False, poll_interval_ms=20)
    watcher.start()
    assert watcher._thread.is_alive()
    watcher.stop()
    watcher._thread.join(5)
    assert not watcher._thread.is_alive()


def test_rescan_periodically_asks_for_rescans_until_cancelled():
    async def scenario():
        calls = []
        task = asyncio.create_task(rescan_periodically(lambda: calls.append(time.monotonic()), 0.02))
        deadline = time.monotonic() + 5
        while len(calls) < 3:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        count = len(calls)
        await asyncio.sleep(0.06)
        assert len(calls) == count

    asyncio.run(scenario())


def test_a_same_size_edit_within_the_same_second_fires(watch, pipelines_dir):
    """Polling compares nanosecond mtimes: an edit in the same second as the last is seen too."""
    _, changed = watch
    target = pipelines_dir / "prompt.yml"
    assert fires_after_writes(target, changed)
    settle(changed)
    target.write_text("version 1")
    assert changed.wait(2.0)
    first_second = int(target.stat().st_mtime)
    changed.clear()
    target.write_text("version 2")  # same size
    fired = changed.wait(2.0)
    if int(target.stat().st_mtime) != first_second:
        pytest.skip("the two writes fell into different seconds: nothing to prove this time")
    assert fired


def test_a_change_right_after_start_is_not_lost(pipelines_dir):
    """What changes between start() and the watch being set up still fires (the caller's first
    scan may already have run)."""
    for polling in (False, True):
        changed = threading.Event()
        watcher = DirectoryWatcher(pipelines_dir, changed.set, quiet_ms=20, force_polling=polling, poll_interval_ms=20)
        watcher.start()
        (pipelines_dir / f"right_after_{polling}.yml").write_text("x")
        try:
            assert changed.wait(5.0), f"polling={polling}"
        finally:
            watcher.stop()
            watcher._thread.join(5)
