"""The pipelines directory: list its entries, name their revisions, publish and remove atomically.

An entry is either a folder ``NAME/`` (a pipeline wrapper and its sibling files) or a file
``NAME.yml``/``NAME.yaml`` at the top level. Its revision is a hash of the files it is made of, so
two workers that read the same bytes agree on the same name for what they serve.
"""

import ctypes
import errno
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal

from hayhooks.system import file_lock

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
YAML_SUFFIXES = (".yml", ".yaml")
WRAPPER_FILE = "pipeline_wrapper.py"
_NAME_RE = re.compile(NAME_PATTERN)
_IGNORED_SUFFIXES = (".pyc", ".pyo", "~", ".swp", ".swx", ".tmp")
_IGNORED_NAMES = {"__pycache__"}
_LOCK_FILE = ".hayhooks-deploy.lock"
_MAX_NAME_BYTES = 255  # NAME_MAX of Linux filesystems

EntryKind = Literal["files", "yaml"]


class SourceError(Exception):
    """A publish or removal that the directory refused; the message says why."""


class InvalidPipelineName(SourceError):
    pass


class InvalidFileName(SourceError):
    pass


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


def is_ignored(name: str) -> bool:
    """Editor and build debris, hidden files and our own staging folders never count."""
    return name.startswith(".") or name in _IGNORED_NAMES or name.endswith(_IGNORED_SUFFIXES)


def check_name(name: str) -> str:
    """Reject a pipeline name that is not a plain ``[A-Za-z0-9_-]{1,64}`` word."""
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidPipelineName(f"Invalid pipeline name {name!r}: use 1 to 64 of A-Z a-z 0-9 _ -")
    return name


def check_file_names(files: dict[str, str]) -> None:
    """Each file name must be a relative path that stays inside the pipeline's folder, that the
    filesystem can store, and that no other file name uses as a folder."""
    for file_name in files:
        path = PurePosixPath(file_name)
        if (
            not file_name
            or "\\" in file_name
            or "\0" in file_name
            or path.is_absolute()
            or any(part in {"", ".", ".."} for part in file_name.split("/"))
        ):
            raise InvalidFileName(f"Invalid file name {file_name!r}: use a relative path inside the pipeline folder")
        if any(is_ignored(part) for part in path.parts):
            raise InvalidFileName(f"Invalid file name {file_name!r}: hidden files and build debris are not served")
        if any(len(part.encode("utf-8", "replace")) > _MAX_NAME_BYTES for part in path.parts):
            raise InvalidFileName(f"Invalid file name {file_name!r}: each part must be 1 to 255 bytes")
        if not file_name.isprintable():  # control characters, lone surrogates
            raise InvalidFileName(f"Invalid file name {file_name!r}: use printable characters")
        if any("/".join(path.parts[:depth]) in files for depth in range(1, len(path.parts))):
            raise InvalidFileName(f"Invalid file name {file_name!r}: a file of the same name is in its way")


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
    """Reads and writes one pipelines directory; every write is a single atomic rename."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def ensure_exists(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    # --- reading ---

    def scan(self) -> tuple[dict[str, Entry], dict[str, str]]:
        """All entries by name, and the entries that could not be read, with why."""
        entries: dict[str, Entry] = {}
        errors: dict[str, str] = {}
        try:
            candidates = sorted(os.scandir(self.root), key=lambda item: item.name)
        except FileNotFoundError:
            return entries, errors
        for item in candidates:
            if is_ignored(item.name):
                continue
            found = self._classify(item)
            if found is None:
                continue
            name, kind = found
            path = Path(item.path)
            if not _NAME_RE.fullmatch(name):
                errors[name] = f"{item.name!r} is not a valid pipeline name (1 to 64 of A-Z a-z 0-9 _ -)"
                continue
            try:
                revision = hash_entry(path, kind)
            except OSError as error:  # vanished or unreadable mid-scan: the next scan settles it
                errors[name] = f"cannot read {item.name!r}: {error.strerror or error}"
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

    @staticmethod
    def _classify(item: os.DirEntry) -> tuple[str, EntryKind] | None:
        try:
            if item.is_dir():  # follows symlinks: ConfigMap and git-sync layouts link folders
                return item.name, "files"
            if item.is_file() and item.name.endswith(YAML_SUFFIXES):
                return item.name.rsplit(".", 1)[0], "yaml"
        except OSError:
            return None
        return None

    def exists(self, name: str) -> bool:
        return any(path.exists() for path in self._paths(name))

    def _paths(self, name: str) -> list[Path]:
        return [self.root / name, *(self.root / f"{name}{suffix}" for suffix in YAML_SUFFIXES)]

    # --- writing ---

    @contextmanager
    def deploy_lock(self) -> Iterator[None]:
        """Serialise publishes across every worker (and process) sharing this directory."""
        self.ensure_exists()
        with file_lock(self.root / _LOCK_FILE):
            yield

    def stage_files(self, name: str, files: dict[str, str | bytes]) -> Path:
        """Write a pipeline folder under a hidden staging name, ready to be published in one rename."""
        check_name(name)
        check_file_names(files)
        self.ensure_exists()
        staging = self.root / f".staging-{name}-{uuid.uuid4().hex}"
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
        check_name(name)
        self.ensure_exists()
        staging = self.root / f".staging-{name}-{uuid.uuid4().hex}.yml"
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
        check_name(name)
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
        check_name(name)
        if not self.exists(name):
            raise PipelineMissing(f"Pipeline '{name}' not found")
        for path in self._paths(name):
            self._remove_path(path)

    def _remove_path(self, path: Path) -> None:
        """Remove a folder by renaming it out of sight first, so no reader sees it half-deleted."""
        if path.is_symlink() or path.is_file():
            path.unlink(missing_ok=True)
        elif path.is_dir():
            trash = self.root / f".trash-{path.name}-{uuid.uuid4().hex}"
            os.rename(path, trash)
            shutil.rmtree(trash, ignore_errors=True)


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
    parked = second.with_name(f".trash-{second.name}-{uuid.uuid4().hex}")
    os.rename(second, parked)
    os.rename(first, second)
    os.rename(parked, first)
