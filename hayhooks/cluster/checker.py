"""Try a runtime deploy's load in a disposable process, where what it does cannot hurt a worker.

A deployed pipeline's import and ``setup()`` are arbitrary code: ``os._exit()`` at import, a crash in
a C extension, a hang, a 20 GiB allocation. One checker process per server (``python -m
hayhooks.cluster.checker RUNTIME_DIR``) has imported Haystack once and listens on a local socket
named after the runtime folder. Each check forks a child of it that loads the staged files under a
memory limit and reports; the child is killed at the load timeout, or as soon as the asking worker
hangs up. The checker has no threads, so forking it is safe, where forking a worker (with its
threads and their locks) is not.

The first worker to need the checker binds its socket and hands it to the checker it starts (the
bind decides a race between workers, so no other worker starts one); the checker outlives that
worker if need be, and ends once no worker of the board is alive. A preloading gunicorn master
forks the checker itself before its workers start (:func:`fork_checker`), so it shares the master's
imports. A
request is one JSON line, its answer one JSON line (``{"error": null}`` when the pipeline loaded).
fd 1 of the checker points at stderr, so a ``print()`` in pipeline code goes to the log, not into
an answer.
"""

import asyncio
import contextlib
import ctypes
import json
import logging
import os
import resource
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NoReturn

from hayhooks.cluster.board import WorkerBoard
from hayhooks.cluster.runtime import connect_local, from_this_user, local_address
from hayhooks.pipelines.loader import (
    PipelineLoadError,
    YamlResult,
    import_haystack_core,
    load_entry,
    overran_timeout,
)
from hayhooks.pipelines.source import Entry

logger = logging.getLogger("hayhooks.checker")

_START_SECONDS = 30.0  # how long a checker just started may take to listen
_ANSWER_GRACE_SECONDS = 60.0  # on top of the load timeout: a fresh checker imports Haystack first
_EXIT_GRACE_SECONDS = 1.0  # how long a child that closed its answer pipe gets to exit before it is killed
_ORPHAN_CHECKS = 3  # a checker ends after this many one-second looks find no live worker
_MAX_REQUEST = 16 * 1024 * 1024
_PR_SET_PDEATHSIG = 1
_PR_SET_NAME = 15
PROCESS_NAME = b"hayhooks-check"  # /proc/PID/comm of a forked checker, whose command line is the master's


class LoadChecker:
    """A worker's client of the server's checker: starts it when none listens."""

    def __init__(self, runtime_dir: Path, *, timeout: float, memory_mb: int, yaml_result: YamlResult) -> None:
        self.runtime_dir = runtime_dir
        self.address = local_address(runtime_dir, "checker")
        self.timeout = timeout
        self.memory_mb = memory_mb
        self.yaml_result = yaml_result
        self._starting = asyncio.Lock()
        self._process: subprocess.Popen[bytes] | None = None  # the last checker this worker started

    async def check(self, entry: Entry) -> None:
        """Load ``entry`` in a child process; raise :class:`PipelineLoadError` saying what went wrong."""
        request = {
            "name": entry.name,
            "kind": entry.kind,
            "path": str(entry.path),
            "revision": entry.revision,
            "yaml_result": self.yaml_result,
            "timeout": self.timeout,
            "memory_mb": self.memory_mb,
            "sys_path": sys.path,
        }
        reader, writer = await asyncio.open_unix_connection(sock=await self._connected())
        try:
            writer.write(json.dumps(request).encode() + b"\n")
            await writer.drain()
            line = await asyncio.wait_for(reader.readline(), self.timeout + _ANSWER_GRACE_SECONDS)
        except (OSError, TimeoutError) as error:
            raise PipelineLoadError(f"The deploy checker did not answer for '{entry.name}': {error}") from error
        finally:
            writer.close()
        if not line:
            raise PipelineLoadError(f"The deploy checker ended while checking '{entry.name}'")
        error = json.loads(line)["error"]
        if error is not None:
            raise PipelineLoadError(error)

    async def warm_up(self) -> None:
        """Have a checker running and done importing Haystack, so the first deploy does not wait for it:
        its socket accepts from the moment a worker binds it, so wait for an answer, not a connection."""
        with contextlib.suppress(OSError, TimeoutError):
            reader, writer = await asyncio.open_unix_connection(sock=await self._connected())
            try:
                writer.write(json.dumps({"ping": True}).encode() + b"\n")
                await writer.drain()
                await asyncio.wait_for(reader.readline(), _START_SECONDS + _ANSWER_GRACE_SECONDS)
            finally:
                writer.close()

    async def _connected(self) -> socket.socket:
        """A connection to the server's checker, started first if none listens."""
        with contextlib.suppress(OSError):
            return connect_local(self.address, 2.0)
        async with self._starting:  # one start per worker; across workers binding the address decides
            deadline = time.monotonic() + _START_SECONDS
            while True:
                try:
                    return connect_local(self.address, 2.0)
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    self._start_unless_claimed()
                await asyncio.sleep(0.02)
                if self._process is not None:
                    self._process.poll()  # reaps a checker of ours that ended

    def _start_unless_claimed(self) -> None:
        """Bind the checker's address here and hand the listening socket to a new checker; when the
        bind fails, another worker's checker has it (listening, or still importing Haystack): only
        one checker process starts, not one per worker starting at the same moment."""
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            listener.bind(self.address)
        except OSError:
            listener.close()
            return
        try:
            listener.listen(64)  # the first checks wait in the backlog while the checker imports Haystack
            self._start(listener)
        finally:
            listener.close()  # the checker holds its own copy

    def _start(self, listener: socket.socket) -> None:
        """Start a checker on ``listener``. Kept on the worker so it stays in the server's process
        tree (and its memory in the totals)."""
        command = [sys.executable, "-m", __name__, str(self.runtime_dir), str(listener.fileno())]
        environment = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, sys.path))}
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, env=environment, pass_fds=(listener.fileno(),)
        )
        logger.info("started the deploy checker (pid %s)", self._process.pid)


# --- the checker process -------------------------------------------------------------------------


def main() -> None:
    """Serve checks on the listening socket ``sys.argv[2]`` (a file descriptor the starting worker
    bound) for the server whose runtime folder is ``sys.argv[1]``, while any of its workers lives."""
    _serve_checks(socket.socket(fileno=int(sys.argv[2])), Path(sys.argv[1]))


def fork_checker(runtime_dir: Path, inherited: Iterable[socket.socket]) -> int | None:
    """Start the server's checker as a fork of this process, a preloading gunicorn master: it has no
    threads and has imported Haystack, so the checker shares those pages instead of importing its own
    copy (about 50 MiB of PSS less). ``inherited``: the master's listening sockets, closed in the
    checker. Returns its pid, or None when a checker already holds the address (workers start one
    as usual if this one ends)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(local_address(runtime_dir, "checker"))
        listener.listen(64)
    except OSError:
        listener.close()
        return None
    pid = os.fork()
    if pid:
        listener.close()
        return pid
    try:  # the checker: nothing of the master but its memory
        for inherited_socket in inherited:
            inherited_socket.close()
        for number in (signal.SIGHUP, signal.SIGQUIT, signal.SIGTERM, signal.SIGCHLD, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(number, signal.SIG_DFL)  # gunicorn's handlers would act as if this were the master
        signal.set_wakeup_fd(-1)
        _prctl(_PR_SET_NAME, ctypes.c_char_p(PROCESS_NAME))
        _die_with_parent()
        _serve_checks(listener, runtime_dir)
    finally:
        os._exit(0)


def _serve_checks(listener: socket.socket, runtime_dir: Path) -> None:
    os.dup2(2, 1)  # what pipeline code prints goes to the log
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # a Ctrl-C for the server ends the checker quietly
    import_haystack_core()
    asyncio.run(_serve(listener, WorkerBoard(runtime_dir)))


async def _serve(listener: socket.socket, board: WorkerBoard) -> None:
    """Answer checks until no worker of the board lives: looks begin once a worker was seen or asked
    (a checker forked by the master starts before its workers), or after _START_SECONDS without any."""
    asked = False

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal asked
        asked = True
        await _answer(reader, writer)

    server = await asyncio.start_unix_server(answer, sock=listener, limit=_MAX_REQUEST)
    async with server:
        idle_looks = 0
        seen = False
        started = time.monotonic()
        while idle_looks < _ORPHAN_CHECKS:
            await asyncio.sleep(1.0)
            alive = bool(board.workers())
            seen = seen or alive or asked
            if seen or time.monotonic() - started > _START_SECONDS:
                idle_looks = 0 if alive else idle_looks + 1


async def _answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    if not from_this_user(writer):  # a check runs the code at the path it names: only for our workers
        writer.close()
        return
    try:
        request = json.loads(await reader.readline())
        if isinstance(request, dict) and request.get("ping"):  # a warm-up: answered once Haystack is imported
            writer.write(json.dumps({"error": None}).encode() + b"\n")
            await writer.drain()
            return
        check = asyncio.create_task(_check_in_child(request))
        hang_up = asyncio.create_task(reader.read(1))  # the asking worker gave up: so does its check
        await asyncio.wait({check, hang_up}, return_when=asyncio.FIRST_COMPLETED)
        hang_up.cancel()
        if not check.done():
            check.cancel()
            return
        writer.write(json.dumps({"error": check.result()}).encode() + b"\n")
        await writer.drain()
    except (OSError, ValueError, KeyError):
        pass  # the worker went away, or sent what no worker sends
    finally:
        writer.close()


async def _check_in_child(request: dict[str, Any]) -> str | None:
    """Fork a child that loads the pipeline: its error, what ended it, or None when it loaded."""
    name, timeout = request["name"], request["timeout"]
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_end)
        _load_in_child(request, write_end)
    os.close(write_end)
    try:
        report = await asyncio.wait_for(_read_to_end(read_end), timeout)
    except TimeoutError:
        _kill(pid)
        return overran_timeout(name, timeout)
    except asyncio.CancelledError:
        _kill(pid)
        raise
    finally:
        os.close(read_end)
    status = await _exit_status(pid)
    if report:
        return json.loads(report)["error"]
    if status is None:
        return f"Loading '{name}' closed the deploy check's answer pipe and kept running (killed)"
    return f"Loading '{name}' ended its process ({_exit_reason(status)}) during import or setup()"


def _load_in_child(request: dict[str, Any], answer_fd: int) -> NoReturn:
    """In the forked child: load under the memory limit, write the outcome, exit without cleanup."""
    name, memory_mb = request["name"], request["memory_mb"]
    try:
        _die_with_parent()
        if memory_mb:
            _limit_memory(memory_mb)
        sys.path[:] = request["sys_path"]
        entry = Entry(name=name, kind=request["kind"], path=Path(request["path"]), revision=request["revision"])
        load_entry(entry, yaml_result=request["yaml_result"])
        error = None
    except PipelineLoadError as failure:
        error = str(failure)
        if memory_mb and _caused_by(failure, MemoryError):
            error += f" (the deploy check allows {memory_mb} MiB: HAYHOOKS_DEPLOY_CHECK_MEMORY_MB)"
    except MemoryError:
        error = f"Loading '{name}' needed more than {memory_mb} MiB (HAYHOOKS_DEPLOY_CHECK_MEMORY_MB)"
    except BaseException as failure:  # a bug of ours: still an answer rather than a silent child
        error = f"Loading '{name}' failed in the deploy check: {type(failure).__name__}: {failure}"
    try:
        os.write(answer_fd, json.dumps({"error": error}).encode())
    finally:
        os._exit(0)


async def _read_to_end(fd: int) -> bytes:
    """Everything written to the pipe ``fd`` until its writer closes it."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    chunks: list[bytes] = []
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        if chunk:
            chunks.append(chunk)
        elif not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
    return b"".join(chunks)


async def _exit_status(pid: int) -> int | None:
    """Reap the child: its exit code, or None for one that closed its pipe but kept running (killed)."""
    deadline = time.monotonic() + _EXIT_GRACE_SECONDS
    while time.monotonic() < deadline:
        reaped, status = os.waitpid(pid, os.WNOHANG)
        if reaped:
            return os.waitstatus_to_exitcode(status)
        await asyncio.sleep(0.005)
    _kill(pid)
    return None


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)


def _exit_reason(code: int) -> str:
    """``exit code 3`` or ``killed by SIGSEGV``, from an exit code as :func:`os.waitstatus_to_exitcode` gives it."""
    if code >= 0:
        return f"exit code {code}"
    name = signal.Signals(-code).name
    return f"killed by {name}{', likely out of memory' if name == 'SIGKILL' else ''}"


def _limit_memory(megabytes: int) -> None:
    """Let the child's data (heap and private mappings) grow by at most ``megabytes`` beyond what it has."""
    _, hard = resource.getrlimit(resource.RLIMIT_DATA)
    limit = _vm_data_bytes() + megabytes * 1024 * 1024
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_DATA, (limit, hard))


def _vm_data_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmData:"):
                return int(line.split()[1]) * 1024
    return 0


def _die_with_parent() -> None:
    """This process is killed when its parent dies: a check with its checker, a checker forked by the
    master with the master."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _prctl(option: int, argument: object) -> None:
    """prctl(2) for this process (Linux; elsewhere a no-op)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(option, argument)


def _caused_by(error: BaseException, kind: type[BaseException]) -> bool:
    """Whether ``kind`` is in the chain of causes of ``error`` (the loader wraps what pipeline code raised)."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, kind):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


if __name__ == "__main__":
    main()
