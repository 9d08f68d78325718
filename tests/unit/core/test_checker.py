"""The deploy check: a load tried in a disposable child; whatever the pipeline does, this process is untouched."""

import asyncio
import contextlib
import json
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hayhooks.cluster.board import WorkerBoard
from hayhooks.cluster.checker import LoadChecker
from hayhooks.cluster.runtime import connect_local
from hayhooks.pipelines.loader import PipelineLoadError
from hayhooks.pipelines.source import Entry
from tests.helpers import pipelines as samples

TIMEOUT = 2.0


@pytest.fixture(scope="module")
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as loop:
        yield loop


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A runtime folder whose board lists this process as a worker: the checker lives while it does."""
    folder = tmp_path_factory.mktemp("runtime")
    board = WorkerBoard(folder)
    board.publish({}, ready=True)
    yield folder
    board.withdraw()


@pytest.fixture(scope="module")
def checker(runtime: Path) -> LoadChecker:
    return LoadChecker(runtime, timeout=TIMEOUT, memory_mb=512, yaml_result="raw")


def checker_pids(runtime: Path) -> list[int]:
    """The checker processes serving ``runtime``."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if cmdline.read_bytes().split(b"\0")[1:4] == [b"-m", b"hayhooks.cluster.checker", str(runtime).encode()]:
                found.append(int(cmdline.parent.name))
    return found


def wrapper_entry(root: Path, name: str, code: str) -> Entry:
    return Entry(name=name, kind="files", path=samples.write_wrapper(root, name, code), revision="r1")


def outcome(runner: asyncio.Runner, checker: LoadChecker, entry: Entry) -> str | None:
    try:
        runner.run(checker.check(entry))
    except PipelineLoadError as error:
        return str(error)
    return None


def children_of(pid: int) -> list[int]:
    """Live (not zombie) children of ``pid``."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if Path(f"/proc/{child}/stat").read_text().split(") ")[1][0] != "Z":
                found.append(int(child))
    return found


def test_a_good_wrapper_and_a_good_yaml_pass_and_leave_nothing_in_this_process(runner, checker, tmp_path):
    before = set(sys.modules)
    assert outcome(runner, checker, wrapper_entry(tmp_path, "greet", samples.GREET)) is None
    path = samples.write_yaml(tmp_path, "prompt", samples.PROMPT_YAML)
    assert outcome(runner, checker, Entry(name="prompt", kind="yaml", path=path, revision="r1")) is None
    assert not {name for name in set(sys.modules) - before if "greet" in name}


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (samples.SETUP_FAILS, "setup() of 'hostile' failed: RuntimeError: no index available"),
        (samples.EXITS_IN_SETUP, "setup() of 'hostile' failed: SystemExit: 3"),
        (samples.EXITS_ON_IMPORT, "Loading 'hostile' ended its process (exit code 1) during import or setup()"),
        (samples.CRASHES_IN_SETUP, "Loading 'hostile' ended its process (killed by SIGSEGV) during import or setup()"),
        (samples.HOGS_MEMORY, "(the deploy check allows 512 MiB: HAYHOOKS_DEPLOY_CHECK_MEMORY_MB)"),
        (samples.SETUP_HANGS, f"Loading 'hostile' took longer than {TIMEOUT:g}s (HAYHOOKS_LOAD_TIMEOUT)"),
    ],
    ids=["raises", "sys.exit", "os._exit at import", "segfault", "64 GiB", "hangs"],
)
def test_what_would_end_a_worker_is_a_named_failure_and_no_child_is_left(
    runner, checker, runtime, tmp_path, code, expected
):
    runner.run(checker.warm_up())
    started = time.monotonic()
    error = outcome(runner, checker, wrapper_entry(tmp_path, "hostile", code))
    assert error is not None and expected in error, error
    assert time.monotonic() - started < TIMEOUT + 1.5
    (pid,) = checker_pids(runtime)
    assert children_of(pid) == []  # the hanging child was killed, the others reaped


def test_what_pipeline_code_prints_cannot_pass_for_an_answer(runner, checker, tmp_path):
    assert outcome(runner, checker, wrapper_entry(tmp_path, "printer", samples.PRINTS_ON_IMPORT)) is None
    assert outcome(runner, checker, wrapper_entry(tmp_path, "failing", samples.SETUP_FAILS)) is not None


def test_checks_run_side_by_side(runner, checker, tmp_path):
    hang = wrapper_entry(tmp_path, "hang", samples.SETUP_HANGS)
    good = wrapper_entry(tmp_path, "greet", samples.GREET)

    async def both() -> list[float]:
        async def timed(entry: Entry) -> float:
            started = time.monotonic()
            await asyncio.gather(checker.check(entry), return_exceptions=True)
            return time.monotonic() - started

        return await asyncio.gather(timed(hang), timed(good))

    hang_seconds, good_seconds = runner.run(both())
    assert good_seconds < 1 < hang_seconds  # the good one did not wait for the hanging one


def test_one_checker_serves_every_worker_of_a_server_and_ends_with_the_last(tmp_path):
    runtime = tmp_path / "runtime"
    board = WorkerBoard(runtime)
    board.publish({}, ready=True)
    entry = wrapper_entry(tmp_path, "greet", samples.GREET)

    async def two_workers_check_at_once() -> None:
        workers = [LoadChecker(runtime, timeout=TIMEOUT, memory_mb=0, yaml_result="raw") for _ in range(2)]
        await asyncio.gather(*(worker.check(entry) for worker in workers))

    asyncio.run(two_workers_check_at_once())
    (pid,) = checker_pids(runtime)
    board.withdraw()
    deadline = time.monotonic() + 10
    while checker_pids(runtime) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert checker_pids(runtime) == [], "the checker outlived the last worker"


def test_a_worker_that_hangs_up_ends_its_check_and_the_child(runner, runtime, tmp_path):
    entry = wrapper_entry(tmp_path, "hang", samples.SETUP_HANGS)
    patient = LoadChecker(runtime, timeout=600, memory_mb=0, yaml_result="raw")

    async def hang_up() -> int:
        check = asyncio.create_task(patient.check(entry))
        deadline = time.monotonic() + 10
        while not (checker_pids(runtime) and children_of(checker_pids(runtime)[0])):
            assert time.monotonic() < deadline, "no child was forked"
            await asyncio.sleep(0.02)
        (child,) = children_of(checker_pids(runtime)[0])
        check.cancel()
        await asyncio.gather(check, return_exceptions=True)
        return child

    child = runner.run(hang_up())
    deadline = time.monotonic() + 5
    while Path(f"/proc/{child}").exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not Path(f"/proc/{child}").exists()  # killed and reaped, not left to its 600 s timeout


@pytest.mark.skipif(os.getuid() != 0, reason="acting as another local user needs root")
def test_another_local_user_gets_no_check(runner, checker, tmp_path):
    """The checker's socket is abstract, without file permissions: it answers only its own user."""
    runner.run(checker.warm_up())
    path = samples.write_wrapper(tmp_path, "greet", samples.GREET)
    request = {"name": "greet", "kind": "files", "path": str(path), "revision": "r1", "yaml_result": "raw"}
    request |= {"timeout": TIMEOUT, "memory_mb": 0, "sys_path": sys.path}

    def answer() -> bytes:
        sock = connect_local(checker.address, 2.0)
        sock.setblocking(True)
        try:
            sock.sendall(json.dumps(request).encode() + b"\n")
            return sock.recv(1000)
        except ConnectionError:  # hung up on before or after the request was sent: no answer
            return b""

    pid = os.fork()
    if pid == 0:  # the child asks as this user, then as nobody
        try:
            answered = answer()
            os.setuid(65534)
            os._exit(0 if answered.startswith(b'{"error": null}') and answer() == b"" else 1)
        except BaseException as error:
            os.write(2, repr(error).encode())
            os._exit(2)
    assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0


def test_workers_warming_up_at_once_start_one_checker_process(tmp_path):
    """Workers starting together each find no checker: only the one that binds its socket starts one
    (a checker started by each would import Python and hayhooks on a CPU the starting workers need)."""
    runtime = tmp_path / "runtime"
    board = WorkerBoard(runtime)
    board.publish({}, ready=True)

    async def four_workers_warm_up() -> list[LoadChecker]:
        workers = [LoadChecker(runtime, timeout=TIMEOUT, memory_mb=0, yaml_result="raw") for _ in range(4)]
        await asyncio.gather(*(worker.warm_up() for worker in workers))
        return workers

    try:
        workers = asyncio.run(four_workers_warm_up())
        assert len(checker_pids(runtime)) == 1
        assert sum(worker._process is not None for worker in workers) == 1
    finally:
        board.withdraw()
