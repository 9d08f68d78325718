"""The pipelines directory: scans, revisions, atomic publish and removal."""

import os
import shutil
import threading

import pytest

from hayhooks.pipelines import source as source_module
from hayhooks.pipelines.source import (
    PipelineExists,
    PipelineMissing,
    PipelineSource,
    hash_entry,
    hash_files,
    read_folder,
)
from tests.helpers.pipelines import GREET, PROMPT_YAML, versioned, write_wrapper, write_yaml


def leftovers(root) -> list[str]:
    """Hidden items hayhooks left in the directory (staging, trash)."""
    return sorted(p.name for p in root.iterdir() if p.name.startswith((".staging-", ".trash-")))


def set_mtime(path, seconds):
    os.utime(path, (seconds, seconds))


# --- scanning ---


def test_scan_finds_folders_and_both_yaml_suffixes(source, pipelines_dir):
    write_wrapper(pipelines_dir, "greet", GREET)
    write_yaml(pipelines_dir, "prompt", PROMPT_YAML)
    (pipelines_dir / "other.yaml").write_text(PROMPT_YAML)
    entries, errors = source.scan()
    assert errors == {}
    assert {name: entry.kind for name, entry in entries.items()} == {
        "greet": "files",
        "prompt": "yaml",
        "other": "yaml",
    }
    assert entries["greet"].path == pipelines_dir / "greet"
    assert entries["other"].path == pipelines_dir / "other.yaml"


def test_scan_of_a_missing_root_is_empty(tmp_path):
    assert PipelineSource(tmp_path / "nowhere").scan() == ({}, {})


def test_scan_reports_invalid_names_as_errors(source, pipelines_dir):
    write_wrapper(pipelines_dir, "bad name", versioned("1"))
    write_yaml(pipelines_dir, "has.dot", PROMPT_YAML)
    write_wrapper(pipelines_dir, "good", versioned("1"))
    entries, errors = source.scan()
    assert set(entries) == {"good"}
    assert set(errors) == {"bad name", "has.dot"}
    assert "not a valid pipeline name" in errors["bad name"]


def test_scan_ignores_debris_staging_trash_and_plain_files(source, pipelines_dir):
    for hidden in (".staging-greet-1", ".trash-greet-2", "__pycache__", ".git"):
        write_wrapper(pipelines_dir, hidden, versioned("1"))
    (pipelines_dir / ".staging-prompt-3.yml").write_text(PROMPT_YAML)
    (pipelines_dir / "prompt.yml~").write_text(PROMPT_YAML)
    (pipelines_dir / "prompt.yml.swp").write_text("")
    (pipelines_dir / "README.md").write_text("not a pipeline")
    (pipelines_dir / ".hayhooks-deploy.lock").write_text("")
    assert source.scan() == ({}, {})


def test_revision_is_a_content_hash(tmp_path):
    """The same bytes in two directories name the same revision; an edit names a new one."""
    first, second = PipelineSource(tmp_path / "a"), PipelineSource(tmp_path / "b")
    write_wrapper(first.root, "greet", GREET)
    write_wrapper(second.root, "greet", GREET)
    revision = first.scan()[0]["greet"].revision
    assert second.scan()[0]["greet"].revision == revision
    assert len(revision) == 12

    (first.root / "greet" / "greeting.txt").write_text("Hi\n")
    assert first.scan()[0]["greet"].revision != revision


def test_revision_changes_when_a_file_is_added_or_renamed(source, pipelines_dir):
    folder = write_wrapper(pipelines_dir, "v", versioned("1"))
    original = source.scan()[0]["v"].revision
    (folder / "notes.txt").write_text("x")
    added = source.scan()[0]["v"].revision
    (folder / "notes.txt").rename(folder / "notes.md")
    assert len({original, added, source.scan()[0]["v"].revision}) == 3


def test_debris_inside_a_folder_does_not_change_its_revision(source, pipelines_dir):
    folder = write_wrapper(pipelines_dir, "v", versioned("1"))
    revision = source.scan()[0]["v"].revision
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "pipeline_wrapper.cpython-311.pyc").write_bytes(b"\0")
    (folder / ".pipeline_wrapper.py.swp").write_bytes(b"\0")
    (folder / "pipeline_wrapper.py~").write_text("old")
    assert source.scan()[0]["v"].revision == revision


def test_yaml_revision_does_not_depend_on_the_file_name(tmp_path):
    """A staged YAML and the published file hash alike."""
    staged, published = tmp_path / ".staging-p-1.yml", tmp_path / "p.yaml"
    staged.write_text(PROMPT_YAML)
    published.write_text(PROMPT_YAML)
    assert hash_entry(staged, "yaml") == hash_entry(published, "yaml")


def test_hash_files_depends_on_paths_and_bytes():
    base = hash_files({"a.py": b"x", "b.py": b"y"})
    assert hash_files({"b.py": b"y", "a.py": b"x"}) == base  # order of the dict does not matter
    assert hash_files({"a.py": b"y", "b.py": b"x"}) != base
    assert hash_files({"a.py": b"xb.py", "": b"y"}) != hash_files({"a.py": b"x", "b.py": b"y"})


def test_read_folder_keys_files_by_posix_relative_path(pipelines_dir):
    folder = write_wrapper(pipelines_dir, "g", GREET)
    (folder / "data").mkdir()
    (folder / "data" / "x.txt").write_bytes(b"\x00\x01")
    files = read_folder(folder)
    assert set(files) == {"pipeline_wrapper.py", "helpers.py", "greeting.txt", "data/x.txt"}
    assert files["data/x.txt"] == b"\x00\x01"


@pytest.mark.parametrize("newer", ["files", "yaml"])
def test_folder_and_yaml_of_one_name_the_newer_wins(source, pipelines_dir, newer):
    folder = write_wrapper(pipelines_dir, "twin", versioned("1"))
    yaml_file = write_yaml(pipelines_dir, "twin", PROMPT_YAML)
    set_mtime(folder, 1_000_000 if newer == "yaml" else 2_000_000)
    set_mtime(yaml_file, 2_000_000 if newer == "yaml" else 1_000_000)
    entries, errors = source.scan()
    assert errors == {}
    assert entries["twin"].kind == newer
    assert source.scan_one("twin")[0].kind == newer


def test_scan_one_sees_only_its_name(source, pipelines_dir):
    write_wrapper(pipelines_dir, "greet", GREET)
    write_yaml(pipelines_dir, "prompt", PROMPT_YAML)
    entry, error = source.scan_one("prompt")
    assert (entry.name, entry.kind, error) == ("prompt", "yaml", None)
    assert entry.revision == source.scan()[0]["prompt"].revision
    assert source.scan_one("absent") == (None, None)


def test_scan_one_reports_why_an_entry_cannot_be_read(source, pipelines_dir):
    write_wrapper(pipelines_dir, "bad name", versioned("1"))
    entry, error = source.scan_one("bad name")
    assert entry is None
    assert "not a valid pipeline name" in error


def test_exists_sees_every_form_of_a_name(source, pipelines_dir):
    assert not source.exists("p")
    (pipelines_dir / "p.yaml").write_text(PROMPT_YAML)
    assert source.exists("p")


# --- writing ---


def test_publish_a_new_folder(source, pipelines_dir):
    staged = source.stage_files("greet", {"pipeline_wrapper.py": versioned("1"), "sub/data.bin": b"\xff"})
    assert staged.parent == pipelines_dir and staged.name.startswith(".staging-greet-")
    source.publish("greet", staged, overwrite=False)
    assert (pipelines_dir / "greet" / "sub" / "data.bin").read_bytes() == b"\xff"
    assert not staged.exists()
    assert source.scan()[0]["greet"].kind == "files"


def test_publish_without_overwrite_refuses_an_existing_name(source, pipelines_dir):
    write_yaml(pipelines_dir, "greet", PROMPT_YAML)
    staged = source.stage_files("greet", {"pipeline_wrapper.py": versioned("1")})
    with pytest.raises(PipelineExists):
        source.publish("greet", staged, overwrite=False)
    assert (pipelines_dir / "greet.yml").read_text() == PROMPT_YAML
    assert not (pipelines_dir / "greet").exists()


def test_publish_replaces_an_existing_folder_in_one_move(source, pipelines_dir):
    """The staged folder itself (same inode) becomes the entry, and the old revision is gone."""
    write_wrapper(pipelines_dir, "v", versioned("1"), files={"old_only.txt": "x"})
    staged = source.stage_files("v", {"pipeline_wrapper.py": versioned("2")})
    staged_inode = staged.stat().st_ino
    source.publish("v", staged, overwrite=True)
    assert (pipelines_dir / "v").stat().st_ino == staged_inode
    assert sorted(read_folder(pipelines_dir / "v")) == ["pipeline_wrapper.py"]
    assert "'2'" in (pipelines_dir / "v" / "pipeline_wrapper.py").read_text()
    assert leftovers(pipelines_dir) == []


def test_publish_exchange_fallback_without_renameat2(source, pipelines_dir, monkeypatch):
    """Where renameat2 is missing, two renames swap the folders and leave no trash."""
    monkeypatch.setattr(source_module, "_libc", object())
    write_wrapper(pipelines_dir, "v", versioned("1"))
    staged = source.stage_files("v", {"pipeline_wrapper.py": versioned("2")})
    source.publish("v", staged, overwrite=True)
    assert "'2'" in (pipelines_dir / "v" / "pipeline_wrapper.py").read_text()
    assert leftovers(pipelines_dir) == []


def test_publishing_a_folder_removes_the_yaml_of_that_name(source, pipelines_dir):
    write_yaml(pipelines_dir, "p", PROMPT_YAML)
    (pipelines_dir / "p.yaml").write_text(PROMPT_YAML)
    source.publish("p", source.stage_files("p", {"pipeline_wrapper.py": versioned("1")}), overwrite=True)
    assert sorted(p.name for p in pipelines_dir.iterdir()) == ["p"]


def test_publishing_a_yaml_removes_the_folder_and_other_suffix(source, pipelines_dir):
    write_wrapper(pipelines_dir, "p", versioned("1"))
    (pipelines_dir / "p.yaml").write_text("old")
    staged = source.stage_yaml("p", PROMPT_YAML)
    assert staged.name.startswith(".staging-p-") and staged.suffix == ".yml"
    source.publish("p", staged, overwrite=True)
    assert sorted(p.name for p in pipelines_dir.iterdir()) == ["p.yml"]
    assert (pipelines_dir / "p.yml").read_text() == PROMPT_YAML


def test_remove_deletes_every_form_of_the_name(source, pipelines_dir):
    write_wrapper(pipelines_dir, "p", versioned("1"))
    write_yaml(pipelines_dir, "p", PROMPT_YAML)
    write_yaml(pipelines_dir, "keep", PROMPT_YAML)
    source.remove("p")
    assert sorted(p.name for p in pipelines_dir.iterdir()) == ["keep.yml"]


def test_remove_of_a_missing_name_raises(source):
    with pytest.raises(PipelineMissing):
        source.remove("absent")


@pytest.mark.parametrize("kind", ["files", "yaml"])
def test_discard_leaves_nothing_behind(source, pipelines_dir, kind):
    if kind == "files":
        staged = source.stage_files("p", {"pipeline_wrapper.py": "x", "a/b.txt": "y"})
    else:
        staged = source.stage_yaml("p", PROMPT_YAML)
    assert staged.exists()
    source.discard(staged)
    assert list(pipelines_dir.iterdir()) == []


def test_a_failed_staging_removes_its_partial_folder(source, pipelines_dir):
    with pytest.raises(OSError):
        source.stage_files("p", {"a": "file", "a/b": "needs a folder named a"})
    assert list(pipelines_dir.iterdir()) == []


def test_staging_creates_a_missing_root(tmp_path):
    source = PipelineSource(tmp_path / "new" / "pipelines")
    staged = source.stage_yaml("p", PROMPT_YAML)
    assert staged.parent == source.root


def test_deploy_lock_is_exclusive_across_threads(source):
    held, acquired, release = threading.Event(), threading.Event(), threading.Event()

    def holder():
        with source.deploy_lock():
            held.set()
            release.wait(5)

    def contender():
        with source.deploy_lock():
            acquired.set()

    threads = [threading.Thread(target=holder), threading.Thread(target=contender)]
    threads[0].start()
    assert held.wait(5)
    threads[1].start()
    assert not acquired.wait(0.2)
    release.set()
    assert acquired.wait(5)
    for thread in threads:
        thread.join(5)


def test_a_symlinked_folder_is_an_entry(source, pipelines_dir, tmp_path):
    """ConfigMap and git-sync layouts link folders into the directory."""
    real = write_wrapper(tmp_path / "elsewhere", "real", versioned("1"))
    (pipelines_dir / "linked").symlink_to(real, target_is_directory=True)
    entry = source.scan()[0]["linked"]
    assert entry.kind == "files"
    shutil.rmtree(real)
    assert source.scan() == ({}, {})
