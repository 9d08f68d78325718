"""The pipelines directory: list its entries, name their revisions, publish and remove atomically.

An entry is either a folder ``NAME/`` (a pipeline wrapper and its sibling files) or a file
``NAME.yml``/``NAME.yaml`` at the top level. Its revision is a hash of the files it is made of, so
two workers that read the same bytes agree on the same name for what they serve.
"""

import ctypes
import errno
import hashlib
import os
import shutil
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hayhooks.pipelines.names import (
    LOCK_FILE,
    NAME_RULE,
    STAGING_PREFIX,
    TRASH_PREFIX,
    YAML_SUFFIXES,
    is_ignored,
    is_valid_name,
)
from hayhooks.system import file_lock

EntryKind = Literal["files", "yaml"]


class SourceError(Exception):
    """A publish or removal that the directory refused; the message says why."""


class PipelineExists(SourceError):
    pass


class PipelineMissing(SourceError):
    pass


@dataclass(frozen=True)
class Entry:
    """One pipeline as the directory holds it now."""

    name: str
    kind: EntryKind
    path: Path
    revision: str


def _walk_files(folder: Path) -> Iterator[Path]:
    """The files of a pipeline folder that make up its revision, in a stable order."""
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not is_ignored(d))
        for file_name in sorted(filenames):
            if not is_ignored(file_name):
                yield Path(dirpath, file_name)


def hash_files(files: dict[str, bytes]) -> str:
    """The revision name of a set of files: a short SHA-256 over their relative paths and bytes."""
    digest = hashlib.sha256()
    for relative in sorted(files):
        content = files[relative]
        digest.update(relative.encode())
        digest.update(b"\0")
        digest.update(len(content).to_bytes(8, "big"))
        digest.update(content)
    return digest.hexdigest()[:12]


def read_folder(folder: Path) -> dict[str, bytes]:
    """Every served file of a pipeline folder, keyed by its POSIX path relative to the folder."""
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in _walk_files(folder)}


def hash_entry(path: Path, kind: EntryKind) -> str:
    if kind == "yaml":  # the content alone: a staged copy and the published file hash alike
        return hash_files({"pipeline.yml": path.read_bytes()})
    return hash_files(read_folder(path))


class PipelineSource:
    """Reads and writes one pipelines directory; every write is a single atomic rename.

    The writing methods take names and file names already checked against :mod:`names` rules
    (the deployer checks them once, before anything is staged).
    """

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure_exists(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    # --- reading ---

    def scan(self) -> tuple[dict[str, Entry], dict[str, str]]:
        """All entries by name, and the entries that could not be read, with why."""
        try:
            items = sorted(os.scandir(self.root), key=lambda item: item.name)
        except FileNotFoundError:
            return {}, {}
        return _read_entries(Path(item.path) for item in items if not is_ignored(item.name))

    def scan_one(self, name: str) -> tuple[Entry | None, str | None]:
        """Entry ``name`` as the directory holds it now (``None``: absent), or why it cannot be read."""
        entries, errors = _read_entries(self._paths(name))
        return entries.get(name), errors.get(name)

    def exists(self, name: str) -> bool:
        return any(path.exists() for path in self._paths(name))

    def _paths(self, name: str) -> list[Path]:
        return [self.root / name, *(self.root / f"{name}{suffix}" for suffix in YAML_SUFFIXES)]

    # --- writing ---

    @contextmanager
    def deploy_lock(self) -> Iterator[None]:
        """Serialise publishes across every worker (and process) sharing this directory."""
        self.ensure_exists()
        with file_lock(self.root / LOCK_FILE):
            yield

    def stage_files(self, name: str, files: dict[str, str | bytes]) -> Path:
        """Write a pipeline folder under a hidden staging name, ready to be published in one rename."""
        self.ensure_exists()
        staging = self.root / f"{STAGING_PREFIX}{name}-{uuid.uuid4().hex}"
        staging.mkdir()
        try:
            for file_name, content in files.items():
                target = staging / file_name
                target.parent.mkdir(parents=True, exist_ok=True)
                data = content.encode() if isinstance(content, str) else content
                target.write_bytes(data)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return staging

    def stage_yaml(self, name: str, source_code: str) -> Path:
        """Write a YAML pipeline under a hidden staging name."""
        self.ensure_exists()
        staging = self.root / f"{STAGING_PREFIX}{name}-{uuid.uuid4().hex}.yml"
        staging.write_text(source_code)
        return staging

    def discard(self, staged: Path) -> None:
        if staged.is_dir():
            shutil.rmtree(staged, ignore_errors=True)
        else:
            staged.unlink(missing_ok=True)

    def publish(self, name: str, staged: Path, *, overwrite: bool) -> None:
        """Make a staged folder or YAML file the entry ``name``; other forms of the name go away.

        Callers hold :meth:`deploy_lock`. A replaced folder is exchanged with the staged one in a
        single ``renameat2(RENAME_EXCHANGE)``, so a reader sees either the old or the new whole.
        """
        if not overwrite and self.exists(name):
            raise PipelineExists(f"Pipeline '{name}' already exists; pass overwrite to replace it")
        target = self.root / (f"{name}.yml" if staged.is_file() else name)
        try:
            if staged.is_file():
                os.replace(staged, target)
            elif target.is_dir() and not target.is_symlink():
                _exchange(staged, target)
                shutil.rmtree(staged, ignore_errors=True)  # now holds the previous revision
            else:
                target.unlink(missing_ok=True)
                os.rename(staged, target)
        except BaseException:
            self.discard(staged)
            raise
        for other in self._paths(name):
            if other != target:
                self._remove_path(other)

    def remove(self, name: str) -> None:
        """Delete every form of entry ``name``; raise :class:`PipelineMissing` if there is none."""
        if not self.exists(name):
            raise PipelineMissing(f"Pipeline '{name}' not found")
        for path in self._paths(name):
            self._remove_path(path)

    def _remove_path(self, path: Path) -> None:
        """Remove a folder by renaming it out of sight first, so no reader sees it half-deleted."""
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        elif path.is_dir():
            trash = self.root / f"{TRASH_PREFIX}{path.name}-{uuid.uuid4().hex}"
            os.rename(path, trash)
            shutil.rmtree(trash, ignore_errors=True)


def _read_entries(paths: Iterable[Path]) -> tuple[dict[str, Entry], dict[str, str]]:
    """The entries among top-level ``paths`` of the directory, and those that could not be read."""
    entries: dict[str, Entry] = {}
    errors: dict[str, str] = {}
    for path in paths:
        found = _classify(path)
        if found is None:
            continue
        name, kind = found
        if not is_valid_name(name):
            errors[name] = f"{path.name!r} is not a valid pipeline name ({NAME_RULE})"
            continue
        try:
            revision = hash_entry(path, kind)
        except OSError as error:  # vanished or unreadable mid-scan: the next scan settles it
            errors[name] = f"cannot read {path.name!r}: {error.strerror or error}"
            continue
        previous = entries.get(name)
        # A folder and a YAML file of one name: the newer one wins, as after a deploy that
        # replaced one form by the other and is about to remove the old one.
        if previous is not None and _mtime(previous.path) >= _mtime(path):
            continue
        entries[name] = Entry(name=name, kind=kind, path=path, revision=revision)
    for name in entries:
        errors.pop(name, None)
    return entries, errors


def _classify(path: Path) -> tuple[str, EntryKind] | None:
    """``(name, kind)`` of a top-level item that is an entry; ``None`` for anything else or absent."""
    try:
        if path.is_dir():  # follows symlinks: ConfigMap and git-sync layouts link folders
            return path.name, "files"
        if path.is_file() and path.name.endswith(YAML_SUFFIXES):
            return path.name.rsplit(".", 1)[0], "yaml"
    except OSError:
        return None
    return None


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True)


def _exchange(first: Path, second: Path) -> None:
    """Swap two paths atomically (Linux ``renameat2``); fall back to two renames where unsupported."""
    renameat2 = getattr(_libc, "renameat2", None)
    if renameat2 is not None:
        result = renameat2(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE)
        if result == 0:
            return
        code = ctypes.get_errno()
        if code not in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
            raise OSError(code, os.strerror(code), str(second))
    # Without an exchange the entry is briefly absent; watchers confirm an absence before undeploying.
    parked = second.with_name(f"{TRASH_PREFIX}{second.name}-{uuid.uuid4().hex}")
    os.rename(second, parked)
    os.rename(first, second)
    os.rename(parked, first)
