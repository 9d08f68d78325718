"""What may be called what in a pipelines directory: the one owner of every naming rule.

Pipeline names, the files an entry is made of, what is debris, and the private names hayhooks
itself uses beside the entries (staging and trash folders, the deploy lock). The source, the
watcher, the deployer, the routes and the benchmarks all read the rules from here.
"""

import re
from pathlib import PurePosixPath

NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
NAME_RULE = "1 to 64 of A-Z a-z 0-9 _ -"
YAML_SUFFIXES = (".yml", ".yaml")
WRAPPER_FILE = "pipeline_wrapper.py"

STAGING_PREFIX = ".staging-"  # a deploy being written, published by one rename
TRASH_PREFIX = ".trash-"  # a removed or replaced folder, renamed out of sight before deletion
LOCK_FILE = ".hayhooks-deploy.lock"
FILE_STORE_DIR = ".hayhooks-files"  # the default file store of /v1/files: never an entry, never watched
PRIVATE_PREFIXES = (STAGING_PREFIX, TRASH_PREFIX, ".hayhooks-")

_NAME_RE = re.compile(NAME_PATTERN)
_IGNORED_SUFFIXES = (".pyc", ".pyo", "~", ".swp", ".swx", ".tmp")
_IGNORED_NAMES = {"__pycache__"}
_MAX_NAME_BYTES = 255  # NAME_MAX of Linux filesystems


class InvalidName(ValueError):
    """A pipeline or file name that breaks a rule; the message says which."""


def is_valid_name(name: str) -> bool:
    return isinstance(name, str) and _NAME_RE.fullmatch(name) is not None


def check_name(name: str) -> str:
    """Reject a pipeline name that is not a plain ``[A-Za-z0-9_-]{1,64}`` word."""
    if not is_valid_name(name):
        raise InvalidName(f"Invalid pipeline name {name!r}: use {NAME_RULE}")
    return name


def is_ignored(name: str) -> bool:
    """Editor and build debris, hidden files and our own staging folders never count."""
    return name.startswith(".") or name in _IGNORED_NAMES or name.endswith(_IGNORED_SUFFIXES)


def check_file_names(files: dict[str, object]) -> None:
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
            raise InvalidName(f"Invalid file name {file_name!r}: use a relative path inside the pipeline folder")
        if any(is_ignored(part) for part in path.parts):
            raise InvalidName(f"Invalid file name {file_name!r}: hidden files and build debris are not served")
        if any(len(part.encode("utf-8", "replace")) > _MAX_NAME_BYTES for part in path.parts):
            raise InvalidName(f"Invalid file name {file_name!r}: each part must be 1 to 255 bytes")
        if not file_name.isprintable():  # control characters, lone surrogates
            raise InvalidName(f"Invalid file name {file_name!r}: use printable characters")
        if any("/".join(path.parts[:depth]) in files for depth in range(1, len(path.parts))):
            raise InvalidName(f"Invalid file name {file_name!r}: a file of the same name is in its way")
