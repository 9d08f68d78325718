"""Running in containers and on Kubernetes, against real servers: the Dockerfile's HEALTHCHECK, and the two
ways pods get pipelines without the deploy API — a ConfigMap-style ``..data`` swap and git-sync's worktree
link — against a real gunicorn with 2 workers."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hayhooks.pipelines.source import hash_entry
from tests.helpers import pipelines as samples
from tests.helpers.dockerfile import healthcheck_code
from tests.helpers.loadbalancer import served_by_all
from tests.helpers.support import Server, free_port, start_gunicorn, start_hayhooks, wait_until

SLOW = {"delay": 0.05}
CONVERGE = 10.0


# --- the Dockerfile's HEALTHCHECK ------------------------------------------------------------------


def test_the_healthcheck_command_reports_a_live_server(pipelines_dir: Path, tmp_path: Path):
    """Run the HEALTHCHECK's python -c code as Docker would: exit 0 while the server answers, else not."""
    code = healthcheck_code()
    server = start_hayhooks(pipelines_dir, tmp_path)
    try:
        server.wait_ready()
        env = {**os.environ, "HAYHOOKS_PORT": str(server.port)}
        assert subprocess.run([sys.executable, "-c", code], env=env, timeout=30).returncode == 0
    finally:
        server.stop()
    env = {**os.environ, "HAYHOOKS_PORT": str(free_port())}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=30).returncode != 0


# --- publishing the way Kubernetes volumes do ------------------------------------------------------


def write_configmap_revision(root: Path, stamp: str, entries: dict[str, str]) -> Path:
    """A timestamped folder as the kubelet writes one: ``..STAMP/NAME/pipeline_wrapper.py`` per
    wrapper (entries map name -> version) and ``..STAMP/prompt.yml``."""
    folder = root / f"..{stamp}"
    for name, version in entries.items():
        samples.write_wrapper(folder, name, samples.versioned(version), files={})
    samples.write_yaml(folder, "prompt", samples.PROMPT_YAML)
    return folder


@pytest.mark.parametrize("watch", ["inotify", "polling"])
def test_a_configmap_style_data_swap_is_followed(tmp_path: Path, watch: str):
    """The kubelet's atomic writer: ``..data -> ..STAMP``, one ``NAME -> ..data/NAME`` link per entry;
    an update writes ``..NEWSTAMP``, renames a new link over ``..data``, adds links for new entries,
    removes those of dropped ones, then deletes the old folder. (A dropped entry whose link is left
    behind dangles; it must disappear too.)"""
    root = tmp_path / "pipelines"
    root.mkdir()
    old = write_configmap_revision(root, "2026_11_27_10_00_00.000000001", {"ver": "v1", "gone": "g1", "stale": "s1"})
    (root / "..data").symlink_to(old.name)
    for name in ("ver", "gone", "stale", "prompt.yml"):
        (root / name).symlink_to(f"..data/{name}")
    env = {"HAYHOOKS_RESCAN_INTERVAL": "60"}  # the watcher must notice, not the periodic rescan
    if watch == "polling":
        env["HAYHOOKS_WATCH_POLL"] = "true"
    server = start_gunicorn(root, tmp_path, workers=2, **env)
    try:
        server.wait_ready()
        for name in ("ver", "gone", "stale"):
            assert wait_until_serves(server, name, hash_entry(old / name, "files"))
        new = write_configmap_revision(root, "2026_11_27_10_05_00.000000002", {"ver": "v2", "added": "a1"})
        (root / "..data_tmp").symlink_to(new.name)
        os.rename(root / "..data_tmp", root / "..data")  # the one atomic step
        (root / "added").symlink_to("..data/added")
        (root / "gone").unlink()
        shutil.rmtree(old)

        assert wait_until_serves(server, "ver", hash_entry(new / "ver", "files"))
        assert wait_until_serves(server, "added", hash_entry(new / "added", "files"))
        for name in ("gone", "stale"):
            assert wait_until_serves(server, name, None), name
        prompt = hash_entry(new / "prompt.yml", "yaml")
        assert served_by_all(server.url, server.worker_pids(), "prompt", {"query": "q", "topic": "t"}, prompt)
    finally:
        server.stop()


def test_a_git_sync_worktree_swap_below_the_link_is_followed(tmp_path: Path):
    """git-sync v4 as the overlay runs it: ``ROOT/current -> .worktrees/SHA``, hayhooks serving
    ``ROOT/current/pipelines``; a new commit is a new worktree, the link is renamed over, and the
    old worktree is deleted right away."""
    root = tmp_path / "git" / "root"
    first = root / ".worktrees" / "1111111"
    samples.write_wrapper(first / "pipelines", "ver", samples.versioned("v1"), files={})
    (first / "README.md").parent.mkdir(parents=True, exist_ok=True)
    (first / "README.md").write_text("not a pipeline\n")
    (root / "current").symlink_to(".worktrees/1111111")
    server = start_gunicorn(root / "current" / "pipelines", tmp_path, workers=2, HAYHOOKS_RESCAN_INTERVAL="60")
    try:
        server.wait_ready()
        assert wait_until_serves(server, "ver", hash_entry(first / "pipelines" / "ver", "files"))
        second = root / ".worktrees" / "2222222"
        samples.write_wrapper(second / "pipelines", "ver", samples.versioned("v2"), files={})
        samples.write_wrapper(second / "pipelines", "added", samples.versioned("a1"), files={})
        (root / "current.tmp").symlink_to(".worktrees/2222222")
        os.rename(root / "current.tmp", root / "current")
        shutil.rmtree(first)
        assert wait_until_serves(server, "ver", hash_entry(second / "pipelines" / "ver", "files"))
        assert wait_until_serves(server, "added", hash_entry(second / "pipelines" / "added", "files"))
    finally:
        server.stop()


def wait_until_serves(server: Server, name: str, revision: str | None) -> bool:
    """Every worker answers ``name`` with ``revision`` (None: none serves it), within CONVERGE seconds."""
    return wait_until(
        lambda: served_by_all(server.url, server.worker_pids(), name, SLOW, revision),
        CONVERGE,
        message=f"{name}@{revision}",
    )
