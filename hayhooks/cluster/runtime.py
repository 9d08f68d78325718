"""The runtime folder: where the workers of one server meet (the worker board, the metrics files,
the local sockets named after it)."""

import asyncio
import hashlib
import json
import os
import socket
import struct
import tempfile
from pathlib import Path

from hayhooks.settings import Settings

RUNTIME_DIR_ENV = "HAYHOOKS_RUNTIME_DIR"
# Not a setting: how the process that starts the workers tells them what it resolved.
SERVER_ENV = "_HAYHOOKS_SERVER"


def runtime_dir(settings: Settings) -> Path:
    """HAYHOOKS_RUNTIME_DIR (set by the operator, or by our master for its workers), else a folder
    named after the parent process, which every worker forked by one supervisor (e.g.
    ``uvicorn --workers``) shares."""
    if settings.runtime_dir:
        return Path(settings.runtime_dir)
    return Path(tempfile.gettempdir()) / f"hayhooks-{os.getppid()}"


def claim_runtime_dir(settings: Settings) -> tuple[Settings, Path | None]:
    """For a process that starts workers: the settings with a runtime folder of their own.

    Without a configured folder, a fresh one is made; the second value is that folder, for the
    caller to remove at exit (``None`` when the folder was configured).
    """
    if settings.runtime_dir:
        return settings, None
    made = Path(tempfile.mkdtemp(prefix="hayhooks-"))
    # Workers read their settings from the environment when they start: they inherit the folder.
    os.environ[RUNTIME_DIR_ENV] = str(made)
    return settings.model_copy(update={"runtime_dir": made}), made


def announce_server(workers: int, source: str) -> None:
    """Tell the workers this process starts (they inherit its environment) how many of them it runs
    and where that number came from, for ``/status`` to show."""
    os.environ[SERVER_ENV] = json.dumps({"workers": workers, "workers_source": source})


def announced_server() -> dict:
    """What the process that started this worker announced; empty when something else started it."""
    try:
        announced = json.loads(os.environ.get(SERVER_ENV, "{}"))
    except ValueError:
        return {}
    return announced if isinstance(announced, dict) else {}


def local_address(runtime_dir: Path, role: str) -> str:
    """A Unix socket name in Linux's abstract namespace for ``role`` of the server of ``runtime_dir``:
    no path length limit, nothing to clean up, gone with the process that listens."""
    server = hashlib.sha256(str(runtime_dir.absolute()).encode()).hexdigest()[:16]
    return f"\0hayhooks-{role}-{server}"


def connect_local(address: str, timeout: float) -> socket.socket:
    """A non-blocking socket connected to ``address``: connected here, not by the event loop, because
    uvloop refuses abstract addresses on connect (EINVAL). A local connect is immediate or refused."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def from_this_user(writer: asyncio.StreamWriter) -> bool:
    """Whether the peer of a local connection runs as this process's user. Abstract sockets have no
    file permissions: without this check any local account could talk to a server's workers."""
    sock = writer.get_extra_info("socket")
    try:
        credentials = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except (AttributeError, OSError):  # no SO_PEERCRED on this platform: no abstract sockets either
        return False
    _pid, uid, _gid = struct.unpack("3i", credentials)
    return uid == os.getuid()
