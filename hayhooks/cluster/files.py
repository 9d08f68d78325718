"""The file store of ``/v1/files``: one folder every worker (and every instance mounting it) shares.

Each file is a folder ``<root>/<id>/`` holding ``content`` and ``meta.json`` (its OpenAI file
object). A file is written under a hidden staging name and published by one rename, and removed
by renaming it out of sight first, so a worker never reads a half-written or half-deleted file.
Ids are ``file-`` and 32 random hex digits, checked by one strict pattern before any path is
built from them: an id can only ever name a folder directly under the root.
"""

import dataclasses
import json
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Any, BinaryIO, Literal

from hayhooks.pipelines.names import FILE_STORE_DIR
from hayhooks.settings import Settings

_ID = re.compile(r"file-[0-9a-f]{32}")
_STAGING = ".staging-"
_TRASH = ".trash-"
_CONTENT = "content"
_META = "meta.json"
_COPY_CHUNK = 1024 * 1024
_STALE_SECONDS = 3600  # staging or trash this old was left by a worker that died mid-write
FIXED_FIELDS = frozenset({"id", "object", "bytes", "created_at"})  # what only the store decides


class FileStoreUnavailable(OSError):
    """The store's folder cannot be created or written (a read-only volume, say); the message says where."""


@dataclasses.dataclass(frozen=True)
class StoredFile:
    """One stored file: its OpenAI file object (``wire``) and where its content lives."""

    id: str
    bytes: int
    created_at: int
    filename: str
    purpose: str
    content_type: str | None
    content: Path
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)  # fields a wrapper's run_file_upload added
    created_ns: int = 0  # orders files made within one second

    def wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            **self.extra,
        }


def is_file_id(value: str) -> bool:
    return isinstance(value, str) and _ID.fullmatch(value) is not None


class FileStore:
    """Files by id under ``root``, created on first write."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def add(self, source: BinaryIO, *, filename: str, content_type: str | None, purpose: str) -> StoredFile:
        """Copy ``source`` into the store (in chunks: a large upload never sits in memory) and publish it."""
        file_id = f"file-{secrets.token_hex(16)}"
        staging = self._writable_root() / f"{_STAGING}{file_id}"
        try:
            staging.mkdir()
            with open(staging / _CONTENT, "wb") as out:
                shutil.copyfileobj(source, out, _COPY_CHUNK)
                size = out.tell()
            now = time.time_ns()
            record = {
                "id": file_id,
                "bytes": size,
                "created_at": now // 1_000_000_000,
                "created_ns": now,
                "filename": filename,
                "purpose": purpose,
                "content_type": content_type,
                "extra": {},
            }
            (staging / _META).write_text(json.dumps(record))
            os.rename(staging, self.root / file_id)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self._from_record(record)

    def annotate(self, file_id: str, extra: dict[str, Any]) -> StoredFile:
        """Add fields to a file's object (what ``run_file_upload`` answered); the store's own fields stay."""
        stored = self.get(file_id)
        if stored is None:
            raise FileNotFoundError(f"No stored file with id {file_id!r}")
        kept = {key: value for key, value in extra.items() if key not in FIXED_FIELDS}
        record = self._record(stored)
        for key in ("filename", "purpose"):  # the object's own fields, when the wrapper renames or reclassifies
            if isinstance(kept.get(key), str):
                record[key] = kept.pop(key)
        record["extra"] = {**stored.extra, **kept}
        folder = self.root / file_id
        temporary = folder / f".{_META}.{secrets.token_hex(4)}"
        temporary.write_text(json.dumps(record))
        os.replace(temporary, folder / _META)
        return self._from_record(record)

    def get(self, file_id: str) -> StoredFile | None:
        """The file of ``file_id``; ``None`` for an unknown, removed or malformed id."""
        if not is_file_id(file_id):
            return None
        try:
            record = json.loads((self.root / file_id / _META).read_text())
        except (OSError, ValueError):
            return None
        return self._from_record(record)

    def list(
        self,
        *,
        purpose: str | None = None,
        limit: int = 10_000,
        order: Literal["asc", "desc"] = "desc",
        after: str | None = None,
    ) -> tuple[list[StoredFile], bool]:
        """Up to ``limit`` files by creation time (after the one ``after`` names), and whether more follow."""
        try:
            names = [entry.name for entry in os.scandir(self.root) if is_file_id(entry.name)]
        except FileNotFoundError:
            return [], False
        files = [stored for stored in map(self.get, names) if stored is not None]
        if purpose is not None:
            files = [stored for stored in files if stored.purpose == purpose]
        files.sort(key=lambda stored: (stored.created_ns, stored.id), reverse=order == "desc")
        if after is not None:
            position = next((index for index, stored in enumerate(files) if stored.id == after), None)
            files = files[position + 1 :] if position is not None else []
        return files[:limit], len(files) > limit

    def delete(self, file_id: str) -> bool:
        """Remove a file; ``False`` if there was none. Readers that opened it keep reading it."""
        if not is_file_id(file_id):
            return False
        trash = self.root / f"{_TRASH}{file_id}-{secrets.token_hex(4)}"
        try:
            os.rename(self.root / file_id, trash)
        except FileNotFoundError:
            return False
        shutil.rmtree(trash, ignore_errors=True)
        return True

    def sweep(self) -> None:
        """Remove what workers that died mid-write or mid-delete left behind (older than an hour)."""
        try:
            entries = list(os.scandir(self.root))
        except OSError:
            return
        cutoff = time.time() - _STALE_SECONDS
        for entry in entries:
            if entry.name.startswith((_STAGING, _TRASH)):
                try:
                    if entry.stat().st_mtime < cutoff:
                        shutil.rmtree(entry.path, ignore_errors=True)
                except OSError:
                    continue

    def _writable_root(self) -> Path:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise FileStoreUnavailable(f"cannot create the file store {self.root}: {error.strerror}") from None
        if not os.access(self.root, os.W_OK | os.X_OK):
            raise FileStoreUnavailable(f"the file store {self.root} is not writable")
        return self.root

    def _record(self, stored: StoredFile) -> dict[str, Any]:
        return {key: value for key, value in dataclasses.asdict(stored).items() if key != "content"}

    def _from_record(self, record: dict[str, Any]) -> StoredFile:
        return StoredFile(
            id=record["id"],
            bytes=record["bytes"],
            created_at=record["created_at"],
            created_ns=record.get("created_ns", record["created_at"] * 1_000_000_000),
            filename=record["filename"],
            purpose=record["purpose"],
            content_type=record.get("content_type"),
            content=self.root / record["id"] / _CONTENT,
            extra=record.get("extra") or {},
        )


def files_dir(settings: Settings) -> Path:
    """HAYHOOKS_FILES_DIR, else a hidden folder inside the pipelines directory (on the same volume)."""
    if settings.files_dir:
        return Path(settings.files_dir).absolute()
    return Path(settings.pipelines_dir).absolute() / FILE_STORE_DIR


_configured: FileStore | None = None


def configure_file_store(store: FileStore) -> None:
    """Make ``store`` the one :func:`open_file` and :func:`file_path` read (done by each worker)."""
    global _configured
    _configured = store


def _store() -> FileStore:
    global _configured
    if _configured is None:  # a wrapper used outside a server: the settings of the environment
        _configured = FileStore(files_dir(Settings()))
    return _configured


def file_path(file_id: str) -> Path:
    """Where the content of a file uploaded through ``/v1/files`` (by any worker) is; FileNotFoundError if none."""
    stored = _store().get(file_id)
    if stored is None:
        raise FileNotFoundError(f"No stored file with id {file_id!r}")
    return stored.content


def open_file(file_id: str) -> BinaryIO:
    """Open the content of a file uploaded through ``/v1/files`` (by any worker) for reading, in binary."""
    return open(file_path(file_id), "rb")
