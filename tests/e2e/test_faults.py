"""Faults inflicted on real multi-worker gunicorn servers, and what each one must leave intact.

Every server here runs with bytecode caches on (``PYTHONDONTWRITEBYTECODE`` cleared), as in
production: a developer shell or CI that sets it would otherwise hide the faults that come from
``__pycache__`` folders appearing inside the pipelines directory.
"""

import contextlib
import hashlib
import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from hayhooks.pipelines.source import hash_entry
from tests.helpers import pipelines as samples
from tests.helpers.metrics import runs_in_flight
from tests.helpers.support import Server, cluster, every_worker_serves, no_worker_serves, start_gunicorn, wait_until

SLOW = {"delay": 0.05}  # keeps workers busy, so concurrent calls spread over all of them
CONVERGE = 15.0  # seconds
PRODUCTION = {"PYTHONDONTWRITEBYTECODE": ""}  # empty: Python writes .pyc files, as it does in production
INOTIFY_INSTANCES = Path("/proc/sys/fs/inotify/max_user_instances")


@pytest.fixture
def directory(pipelines_dir: Path) -> Path:
    samples.write_wrapper(pipelines_dir, "ver", samples.versioned("v1"), files={})
    samples.write_yaml(pipelines_dir, "prompt", samples.PROMPT_YAML)
    return pipelines_dir


@contextlib.contextmanager
def gunicorn(directory: Path, tmp_path: Path, workers: int, **env: str) -> Iterator[Server]:
    """A gunicorn server whose ``workers`` workers have all loaded the directory."""
    server = start_gunicorn(directory, tmp_path, workers=workers, **{**PRODUCTION, **env})
    try:
        server.wait_ready()
        wait_until(lambda: all_ready(server, workers), CONVERGE, message=f"{workers} ready workers")
        yield server
    finally:
        server.stop()


def all_ready(server: Server, workers: int) -> bool:
    view = cluster(server)
    pids = {worker["pid"] for worker in view["workers"] if worker["ready"]}
    return len(pids) == workers and pids == server.worker_pids()


def disk_revision(directory: Path, name: str) -> str | None:
    """The revision the directory holds for ``name`` (``None``: no entry)."""
    if (directory / name).is_dir():
        return hash_entry(directory / name, "files")
    for suffix in (".yml", ".yaml"):
        if (directory / f"{name}{suffix}").is_file():
            return hash_entry(directory / f"{name}{suffix}", "yaml")
    return None


def every_worker_status(server: Server, check: Callable[[dict], bool], timeout: float = CONVERGE) -> dict[int, dict]:
    """Each live worker's own ``GET /status``, by pid, once every one of them satisfies ``check``.

    Status answers are quick, so they are asked for in parallel over fresh connections until every
    worker the OS lists has answered; the latest answer of each worker counts.
    """
    latest: dict[int, dict] = {}

    def ask(_: int) -> dict:
        return httpx.get(f"{server.url}/status", timeout=5).json()

    def all_satisfy() -> dict[int, dict] | None:
        with ThreadPoolExecutor(12) as pool:
            for answer in pool.map(ask, range(24)):
                latest[answer["worker"]["pid"]] = answer
        workers = server.worker_pids()
        if not workers <= latest.keys():
            return None
        mine = {pid: latest[pid] for pid in workers}
        return mine if all(check(answer) for answer in mine.values()) else None

    return wait_until(all_satisfy, timeout, 0.1, "every worker's /status to satisfy the check")


def versions_by_worker(server: Server, name: str) -> dict[int, set[str]]:
    """The ``version`` each worker's answers report, from concurrent calls spread over the workers."""

    def call(_: int) -> tuple[int, str]:
        result = httpx.post(f"{server.url}/{name}/run", json={"delay": 0.1}, timeout=30).json()["result"]
        return result["pid"], result["version"]

    seen: dict[int, set[str]] = {}
    with ThreadPoolExecutor(12) as pool:
        for pid, version in pool.map(call, range(36)):
            seen.setdefault(pid, set()).add(version)
    return seen


def details(answer: dict, name: str) -> dict:
    return next((d for d in answer["details"] if d["name"] == name), {})


# --- a worker killed under load ------------------------------------------------------------------


@dataclass
class Load:
    """Clients posting continuously: some over one keep-alive connection whose worker they know,
    some over a fresh connection per request (so a new worker gets its share as soon as it accepts)."""

    url: str
    calls: list[tuple[str, dict]]
    kept: int = 6
    fresh: int = 3
    stop: threading.Event = field(default_factory=threading.Event)
    connection_pid: dict[int, int | None] = field(default_factory=dict)  # kept client -> its worker
    served: Counter = field(default_factory=Counter)  # worker pid -> 200 answers
    lost: list[tuple[int | None, str]] = field(default_factory=list)  # kept: (worker of the connection, error)
    lost_fresh: list[tuple[float, str]] = field(default_factory=list)  # fresh: (when it was sent, error)
    wrong: list[str] = field(default_factory=list)  # answers other than 200
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> "Load":
        self.threads = [threading.Thread(target=self._kept, args=(i,)) for i in range(self.kept)]
        self.threads += [threading.Thread(target=self._fresh, args=(i,)) for i in range(self.fresh)]
        for thread in self.threads:
            thread.start()
        return self

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(60)

    def _kept(self, index: int) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        with httpx.Client(base_url=self.url, timeout=30, limits=limits) as client:
            self.connection_pid[index] = None
            sent = 0
            while not self.stop.is_set():
                path, body = self.calls[(index + sent) % len(self.calls)]
                sent += 1
                try:
                    response = client.post(path, json=body)
                except httpx.TransportError as error:
                    # httpx drops the broken connection; the next request opens a new one
                    self.lost.append((self.connection_pid[index], f"{type(error).__name__}: {error}"))
                    self.connection_pid[index] = None
                    continue
                self.connection_pid[index] = self._note(path, response)

    def _fresh(self, index: int) -> None:
        sent = 0
        while not self.stop.is_set():
            path, body = self.calls[(index + sent) % len(self.calls)]
            sent += 1
            started = time.monotonic()
            try:
                response = httpx.post(f"{self.url}{path}", json=body, timeout=30)
            except httpx.TransportError as error:
                self.lost_fresh.append((started, f"{type(error).__name__}: {error}"))
                continue
            self._note(path, response)

    def _note(self, path: str, response: httpx.Response) -> int:
        pid = int(response.headers.get("x-hayhooks-worker", 0))
        if response.status_code == 200:
            self.served[pid] += 1
        else:
            self.wrong.append(f"{path} -> {response.status_code} from {pid}: {response.text[:200]}")
        return pid


def test_a_worker_killed_under_load_is_replaced_and_only_its_in_flight_requests_fail(directory: Path, tmp_path: Path):
    """SIGKILL one of three workers while nine clients post continuously.

    Proves: the master replaces the worker; the replacement serves every pipeline, including one
    deployed through the API before the kill (it loads from the directory, not from a peer's
    memory), and starts accepting only once it loaded them (no 404 from it under load); nothing
    deployed is lost. A dead worker's in-flight requests are lost: the only failures allowed are
    connection errors of requests on the killed worker's keep-alive connections (at most one per
    connection) and of fresh-connection requests already sent when it died; every request sent
    after the kill, and every other one, answers 200.
    """
    with gunicorn(directory, tmp_path, workers=3) as server:
        files = samples.wrapper_files(samples.versioned("runtime"), files={})
        deployed = httpx.post(f"{server.url}/deploy_files", json={"name": "runtime", "files": files, "wait": True})
        assert deployed.status_code == 200 and deployed.json()["converged"] is True, deployed.text
        expected = {name: disk_revision(directory, name) for name in ("ver", "prompt", "runtime")}
        assert expected["runtime"] == deployed.json()["revision"]
        calls = [("/ver/run", SLOW), ("/runtime/run", SLOW), ("/prompt/run", {"query": "q", "topic": "t"})]

        load = Load(server.url, calls).start()
        try:
            wait_until(lambda: all(load.connection_pid.get(i) for i in range(load.kept)), 20)
            before = server.worker_pids()
            victim, connections = Counter(load.connection_pid.values()).most_common(1)[0]
            killed_at = time.monotonic()
            os.kill(victim, signal.SIGKILL)
            wait_until(lambda: victim not in server.worker_pids() and len(server.worker_pids()) == 3, 30)
            (replacement,) = server.worker_pids() - before
            wait_until(lambda: load.wrong or load.served[replacement] >= 10, CONVERGE, message="the new worker's load")
            since = Counter(load.served)
            wait_until(
                lambda: load.wrong or all(load.served[pid] > since[pid] for pid in server.worker_pids()),
                CONVERGE,
                message="every worker to serve on alongside the new one",
            )
        finally:
            load.finish()

        assert load.wrong == [], load.wrong
        assert all(pid == victim for pid, _ in load.lost), f"failures off the killed worker {victim}: {load.lost}"
        assert len(load.lost) <= connections, load.lost
        assert all(sent < killed_at for sent, _ in load.lost_fresh), f"failed after the kill: {load.lost_fresh}"
        assert len(load.lost_fresh) <= load.fresh, load.lost_fresh
        assert sum(load.served.values()) > 100
        for name, revision in expected.items():
            body = SLOW if name != "prompt" else {"query": "q", "topic": "t"}
            assert wait_until(lambda n=name, b=body, r=revision: every_worker_serves(server, n, b, r), CONVERGE)
            assert disk_revision(directory, name) == revision
        wait_until(lambda: cluster(server)["converged"] and len(cluster(server)["workers"]) == 3, CONVERGE)
        view = cluster(server)
        assert {w["pid"] for w in view["workers"]} == server.worker_pids()
        assert all(w["pipelines"][n]["revision"] == r for w in view["workers"] for n, r in expected.items())


# --- graceful shutdown ----------------------------------------------------------------------------


def test_sigterm_lets_in_flight_requests_finish_then_exits_0(directory: Path, tmp_path: Path):
    """SIGTERM to the master while four 2-second requests run.

    Proves: shutdown is graceful: every in-flight request completes with 200 well within
    HAYHOOKS_GRACEFUL_TIMEOUT, the master exits 0, and the port refuses new connections afterwards.
    (With HAYHOOKS_GRACEFUL_TIMEOUT=0, or workers that stop without draining, the requests fail.)
    """
    graceful = 10
    server = start_gunicorn(directory, tmp_path, workers=2, HAYHOOKS_GRACEFUL_TIMEOUT=str(graceful), **PRODUCTION)
    try:
        server.wait_ready()
        answers: list[httpx.Response | Exception] = []

        def slow_call() -> None:
            try:
                answers.append(httpx.post(f"{server.url}/ver/run", json={"delay": 2}, timeout=30))
            except httpx.HTTPError as error:
                answers.append(error)

        callers = [threading.Thread(target=slow_call) for _ in range(4)]
        for caller in callers:
            caller.start()

        wait_until(lambda: runs_in_flight(server, "ver") == 4, 5, message="four runs in flight")
        signalled = time.monotonic()
        os.kill(server.pid, signal.SIGTERM)
        for caller in callers:
            caller.join(graceful + 5)
        finished = time.monotonic() - signalled
        assert server.process.wait(graceful + 5) == 0, server.output()
        exited = time.monotonic() - signalled

        assert [a.status_code if isinstance(a, httpx.Response) else repr(a) for a in answers] == [200] * 4
        assert {a.json()["result"]["version"] for a in answers} == {"v1"}
        assert finished < graceful and exited < graceful
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{server.url}/health", timeout=2)
    finally:
        server.stop()


# --- a folder copied in file by file ------------------------------------------------------------------

BIG_WRAPPER = '''
import hashlib
import time
from pathlib import Path

from hayhooks import BasePipelineWrapper

from .late import MARK


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        time.sleep(1.0)  # a slow load: the copy goes on, and ends, while a partial copy loads
        data = sorted((Path(__file__).parent / "data").glob("*.txt"))
        self.count = len(data)
        self.digest = hashlib.sha256(b"".join(path.read_bytes() for path in data)).hexdigest()[:12]

    def run_api(self, delay: float = 0.0) -> dict:
        """What this revision loaded: its data files and the mark of its late sibling module."""
        time.sleep(delay)
        return {"count": self.count, "digest": self.digest, "mark": MARK}
'''
# A first half of the wrapper that still compiles: a partial copy can load, and must not stay served.
BIG_WRAPPER_HEAD = BIG_WRAPPER.split("    def run_api")[0]
DATA_FILES = 198  # + pipeline_wrapper.py + late.py = 200 files


def copy_file_by_file(folder: Path, *, wrapper_first: bool) -> None:
    """Copy a 200-file pipeline the way ``cp -r`` over a slow link does: file after file, each in two
    writes, the sibling module ``late.py`` 60 files in, the wrapper first or last."""
    data = [(f"data/d{i:03}.txt", f"line {i}\n" * 40) for i in range(DATA_FILES)]
    files = [*data[:60], ("late.py", "MARK = 'complete'\n"), *data[60:]]
    wrapper = ("pipeline_wrapper.py", samples.wrapper_code(BIG_WRAPPER))
    files = [wrapper, *files] if wrapper_first else [*files, wrapper]
    (folder / "data").mkdir(parents=True)
    for relative, content in files:
        half = len(content) // 2
        if relative == "pipeline_wrapper.py":
            half = len(samples.wrapper_code(BIG_WRAPPER_HEAD))
        # the sleeps are the slow link, not waits for the server: they pace the copy so that watchers
        # see half-written files and partial folders, as they would during a real copy
        with open(folder / relative, "w") as target:
            target.write(content[:half])
            target.flush()
            time.sleep(0.003)
            target.write(content[half:])
        time.sleep(0.002)


@pytest.mark.parametrize("wrapper_first", [True, False], ids=["wrapper-first", "wrapper-last"])
def test_a_folder_copied_file_by_file_converges_on_the_whole_revision(
    directory: Path, tmp_path: Path, wrapper_first: bool
):
    """A 200-file pipeline copied into the directory non-atomically, with periodic rescans off.

    Workers may load a partial copy for a moment (it is what the directory held then, named by its
    own hash), but the last file written triggers a reload: proves every worker ends on the
    revision hash of the whole folder, that what it runs is the whole folder's code and data (not a
    half-copied file read under the whole one's name), and that it stays there.
    """
    with gunicorn(directory, tmp_path, workers=3, HAYHOOKS_RESCAN_INTERVAL="0") as server:
        folder = directory / "big"
        copy_file_by_file(folder, wrapper_first=wrapper_first)
        whole = disk_revision(directory, "big")
        assert wait_until(lambda: every_worker_serves(server, "big", SLOW, whole), CONVERGE)
        answer = httpx.post(f"{server.url}/big/run", json={}).json()["result"]
        data = b"".join(path.read_bytes() for path in sorted((folder / "data").glob("*.txt")))
        assert answer["count"] == DATA_FILES and answer["mark"] == "complete"
        assert answer["digest"] == hashlib.sha256(data).hexdigest()[:12]
        # and it stays there: once every worker has rescanned the directory since (an entry added now is
        # ready in each), none of them serves or loads any other revision of it
        samples.write_wrapper(directory, "later", samples.versioned("l1"), files={})
        answers = every_worker_status(server, lambda answer: details(answer, "later").get("state") == "ready")
        for answer in answers.values():
            big = details(answer, "big")
            assert (big["state"], big["revision"], big["target_revision"]) == ("ready", whole, whole), big
        assert every_worker_serves(server, "big", SLOW, whole)
        view = cluster(server)
        assert view["converged"] and all(w["pipelines"]["big"]["state"] == "ready" for w in view["workers"])


# --- broken edits -------------------------------------------------------------------------------------

IMPORT_HANGS = "import time\n\ntime.sleep(3600)\n"

BROKEN = {
    "syntax-error": (samples.SYNTAX_ERROR, "SyntaxError"),
    "import-error": (samples.IMPORT_ERROR, "module_that_does_not_exist"),
    "setup-raises": (samples.SETUP_FAILS, "no index available"),
    "setup-hangs": (samples.SETUP_HANGS, "HAYHOOKS_LOAD_TIMEOUT"),
    "import-hangs": (IMPORT_HANGS, "HAYHOOKS_LOAD_TIMEOUT"),
}


@pytest.mark.parametrize("fault", list(BROKEN))
def test_a_broken_edit_keeps_the_last_good_revision_in_every_worker(directory: Path, tmp_path: Path, fault: str):
    """Edit a serving pipeline into one that fails to load: a syntax error, an import error, a
    setup() that raises, a setup() or a module that hangs (bounded by HAYHOOKS_LOAD_TIMEOUT=2).

    Proves, in each of three workers: the last good revision keeps serving; the worker's own
    /status says failed, with the error text and the broken revision as target; and later good
    edits of the same and of another pipeline are picked up: a hung load is given up on, and
    blocks no later load.
    """
    samples.write_wrapper(directory, "other", samples.versioned("o1"), files={})
    with gunicorn(directory, tmp_path, workers=3, HAYHOOKS_LOAD_TIMEOUT="2") as server:
        good = disk_revision(directory, "ver")
        code, error_text = BROKEN[fault]
        (directory / "ver" / "pipeline_wrapper.py").write_text(samples.wrapper_code(code))
        broken = disk_revision(directory, "ver")

        def failed_on_the_good_one(answer: dict) -> bool:
            ver = details(answer, "ver")
            return ver.get("state") == "failed" and ver.get("target_revision") == broken

        answers = every_worker_status(server, failed_on_the_good_one)
        for answer in answers.values():
            ver = details(answer, "ver")
            assert ver["revision"] == good and error_text in ver["error"], ver
            assert "ver" in answer["pipelines"]
            assert str(directory) not in ver["error"]
        assert every_worker_serves(server, "ver", SLOW, good)

        (directory / "other" / "pipeline_wrapper.py").write_text(samples.versioned("o2"))
        (directory / "ver" / "pipeline_wrapper.py").write_text(samples.versioned("v2"))
        for name, version in (("other", "o2"), ("ver", "v2")):
            revision = disk_revision(directory, name)
            assert wait_until(lambda n=name, r=revision: every_worker_serves(server, n, SLOW, r), CONVERGE)
            assert httpx.post(f"{server.url}/{name}/run", json={}).json()["result"]["version"] == version
        every_worker_status(server, lambda answer: details(answer, "ver").get("state") == "ready")


def test_a_same_size_edit_within_one_second_runs_the_new_code(directory: Path, tmp_path: Path):
    """Two saves of a wrapper within one second, of the same size (v1 -> v2).

    Python trusts a cached ``__pycache__/*.pyc`` when its source's mtime, in whole seconds, and
    size match: proves the loader compiles pipeline code from source, so the revision every
    worker names is the code it runs (without that, workers answer v1 under v2's revision hash).
    """
    wrapper = directory / "ver" / "pipeline_wrapper.py"
    second = int(time.time()) * 10**9
    os.utime(wrapper, ns=(second + 100_000_000, second + 100_000_000))
    with gunicorn(directory, tmp_path, workers=2) as server:
        assert httpx.post(f"{server.url}/ver/run", json={}).json()["result"]["version"] == "v1"
        wrapper.write_text(samples.versioned("v2"))
        os.utime(wrapper, ns=(second + 900_000_000, second + 900_000_000))  # the same second, later
        edited = disk_revision(directory, "ver")
        assert wait_until(lambda: every_worker_serves(server, "ver", SLOW, edited), CONVERGE)
        assert versions_by_worker(server, "ver") == {pid: {"v2"} for pid in server.worker_pids()}


# --- self-healing loads ------------------------------------------------------------------------------

QUICK_RETRIES = {"HAYHOOKS_LOAD_RETRY_DELAY": "0.3", "HAYHOOKS_LOAD_RETRY_MAX_DELAY": "0.6"}


def test_a_setup_that_fails_twice_ends_ready_in_every_worker_without_a_file_change(directory: Path, tmp_path: Path):
    """A setup() whose service answers only from its third call in each process: every worker retries on
    its own, with backoff, and ends serving that very revision; its /status says it took 3 tries."""
    counts = tmp_path / "counts"  # outside the pipelines directory: the marks change no revision
    with gunicorn(directory, tmp_path, workers=3, **QUICK_RETRIES) as server:
        samples.write_wrapper(directory, "flaky", samples.flaky_setup(counts, failures=2), files={})
        revision = disk_revision(directory, "flaky")

        def ready_on_its_third_try(answer: dict) -> bool:
            flaky = details(answer, "flaky")
            return (flaky.get("state"), flaky.get("target_revision"), flaky.get("attempts")) == ("ready", revision, 3)

        answers = every_worker_status(server, ready_on_its_third_try)
        for answer in answers.values():
            flaky = details(answer, "flaky")
            assert (flaky["revision"], flaky["error"], flaky["next_retry_at"]) == (revision, None, None), flaky
        assert disk_revision(directory, "flaky") == revision
        assert every_worker_serves(server, "flaky", {}, revision)
        tries = {int(marks.name): marks.stat().st_size for marks in counts.iterdir()}
        assert tries == dict.fromkeys(server.worker_pids(), 3), tries  # two failed loads and one good, per worker
        assert all(w["pipelines"]["flaky"]["attempts"] == 3 for w in cluster(server)["workers"])


def test_a_syntax_error_is_not_retried_while_a_failing_setup_is(directory: Path, tmp_path: Path):
    """Only a change of its files can mend a syntax error: no worker loads it again, over many retry
    periods in which the same workers keep retrying a setup() that raises."""
    with gunicorn(directory, tmp_path, workers=3, **QUICK_RETRIES) as server:
        samples.write_wrapper(directory, "broken", samples.SYNTAX_ERROR, files={})
        samples.write_wrapper(directory, "down", samples.SETUP_FAILS, files={})

        def both_failed(answer: dict) -> bool:
            broken, down = details(answer, "broken"), details(answer, "down")
            return broken.get("state") == "failed" and down.get("attempts", 0) >= 2

        before = every_worker_status(server, both_failed)
        for answer in before.values():
            broken = details(answer, "broken")
            assert (broken["attempts"], broken["next_retry_at"]) == (1, None) and "SyntaxError" in broken["error"]
            assert details(answer, "down")["next_retry_at"] is not None

        def down_retried_twice_more(answer: dict) -> bool:
            earlier = details(before[answer["worker"]["pid"]], "down")["attempts"]
            return details(answer, "down")["attempts"] >= earlier + 2

        after = every_worker_status(server, down_retried_twice_more)
        for pid, answer in after.items():
            assert details(answer, "broken") == details(before[pid], "broken")  # not tried again, not even touched


# --- parallel deploys and undeploys -------------------------------------------------------------


def test_parallel_deploys_and_undeploys_end_whole_and_identical_everywhere(directory: Path, tmp_path: Path):
    """Eight clients deploy (/deploy_files and /deploy-yaml) and undeploy the same and different
    names at once, then, after a barrier, undeploy two names and redeploy two others, both forms
    of one name racing.

    Proves: every call answers 200 (or 404 for an undeploy that lost the race); the end state
    holds one whole revision per name, in one form only, that an answer named; every worker serves
    exactly the directory's revision of each; the names undeployed last are absent from the
    directory and from every worker; no ``.staging-*``/``.trash-*`` entry is left behind. It fails
    if a publish or removal is not one rename, if the other form of a name survives a deploy, if
    a replaced or removed folder is left behind, or if a worker misses a change. (The windows the
    deploy lock file closes, between an existence check and a rename, are microseconds wide: HTTP
    clients racing cannot hit them reliably, so this test does not prove that lock.)
    """
    names = ["alpha", "beta", "gamma", "delta"]
    yaml_body = {"query": "q", "topic": "t"}
    errors: list[str] = []
    revisions: dict[str, set[str]] = {name: set() for name in names}
    barrier = threading.Barrier(8)

    def deploy_files(url: str, name: str, version: str) -> None:
        files = samples.wrapper_files(samples.versioned(version), files={"data.txt": version * 500})
        answer = httpx.post(f"{url}/deploy_files", json={"name": name, "files": files, "overwrite": True}, timeout=60)
        record(answer, name, "deploy_files")

    def deploy_yaml(url: str, name: str, version: str) -> None:
        source = samples.PROMPT_YAML.replace("Question about", f"Question {version} about")
        answer = httpx.post(
            f"{url}/deploy-yaml", json={"name": name, "source_code": source, "overwrite": True}, timeout=60
        )
        record(answer, name, "deploy-yaml")

    def undeploy(url: str, name: str) -> None:
        answer = httpx.post(f"{url}/undeploy/{name}", timeout=60)
        if answer.status_code not in (200, 404):
            errors.append(f"undeploy {name}: {answer.status_code} {answer.text[:300]}")

    def record(answer: httpx.Response, name: str, how: str) -> None:
        if answer.status_code != 200:
            errors.append(f"{how} {name}: {answer.status_code} {answer.text[:300]}")
        else:
            revisions[name].add(answer.json()["revision"])

    def client(url: str, index: int) -> None:
        chance = random.Random(index)
        for step in range(6):  # chaos: any operation on any name
            name, version = chance.choice(names), f"c{index}{step}"
            operation = chance.choice(["files", "yaml", "undeploy"])
            if operation == "files":
                deploy_files(url, name, version)
            elif operation == "yaml":
                deploy_yaml(url, name, version)
            else:
                undeploy(url, name)
        barrier.wait(60)
        # the last word: gamma and delta go; alpha is raced in both forms, beta as files
        if index % 4 == 0:
            undeploy(url, "gamma")
        elif index % 4 == 1:
            undeploy(url, "delta")
        elif index % 4 == 2:
            (deploy_files if index < 4 else deploy_yaml)(url, "alpha", f"last{index}")
        else:
            deploy_files(url, "beta", f"last{index}")

    with gunicorn(directory, tmp_path, workers=3) as server:
        threads = [threading.Thread(target=client, args=(server.url, i)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(180)
        assert errors == [], errors

        leftovers = [p.name for p in directory.iterdir() if p.name.startswith((".staging-", ".trash-"))]
        assert leftovers == []
        for name in ("gamma", "delta"):
            assert disk_revision(directory, name) is None
        expected = {name: disk_revision(directory, name) for name in ("alpha", "beta")}
        for name, revision in expected.items():
            forms = [p for p in (directory / name, directory / f"{name}.yml") if p.exists()]
            assert len(forms) == 1, forms
            assert revision in revisions[name]
        assert (directory / "beta").is_dir()

        def workers_match_the_directory() -> bool:
            view = cluster(server)
            return len(view["workers"]) == 3 and all(
                {n: p["revision"] for n, p in w["pipelines"].items() if n in names} == expected for w in view["workers"]
            )

        wait_until(workers_match_the_directory, CONVERGE, message="every worker to serve what the directory holds")
        body = {**SLOW, **yaml_body}
        for name, revision in expected.items():
            assert wait_until(lambda n=name, r=revision: every_worker_serves(server, n, body, r), CONVERGE)
        for name in ("gamma", "delta"):
            assert no_worker_serves(server, name)
        assert not [p.name for p in directory.iterdir() if p.name.startswith((".staging-", ".trash-"))]


# --- inotify exhausted ----------------------------------------------------------------------------


def holds_inotify(pid: int) -> bool:
    """Whether the process has an inotify instance open, as the OS says."""
    try:
        return any(os.readlink(fd) == "anon_inode:inotify" for fd in Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return False


def fallback_lines(server: Server) -> list[str]:
    return [line for line in server.output().splitlines() if "falling back to polling" in line]


@contextlib.contextmanager
def inotify_instances_exhausted() -> Iterator[None]:
    """No process of this user may create an inotify instance until the block ends (root only).

    Existing instances keep working; the old limit is restored even if the block fails. Keep the
    block short: it is machine-wide.
    """
    old = INOTIFY_INSTANCES.read_text()
    INOTIFY_INSTANCES.write_text("0\n")
    try:
        yield
    finally:
        INOTIFY_INSTANCES.write_text(old)


def _can_lower_inotify_limit() -> bool:
    return os.geteuid() == 0 and os.access(INOTIFY_INSTANCES, os.W_OK)


@pytest.mark.skipif(not _can_lower_inotify_limit(), reason="needs root to lower fs.inotify.max_user_instances")
def test_a_worker_without_inotify_falls_back_to_polling_and_follows_edits(directory: Path, tmp_path: Path):
    """A worker started while ``fs.inotify.max_user_instances`` is exhausted (lowered to 0 for the
    second it takes to replace a killed worker, then restored).

    Proves: that worker logs that it falls back to polling, and edits still reach every worker
    with periodic rescans off (so the polling watcher, not the safety net, carries them).
    """
    with gunicorn(directory, tmp_path, workers=2, HAYHOOKS_RESCAN_INTERVAL="0", HAYHOOKS_PRELOAD="true") as server:
        before = server.worker_pids()
        wait_until(lambda: all(holds_inotify(pid) for pid in before), CONVERGE, message="every watcher on inotify")
        victim = min(before)
        with inotify_instances_exhausted():
            os.kill(victim, signal.SIGKILL)
            replacement = wait_until(lambda: next(iter(server.worker_pids() - before), None), 20)
            wait_until(lambda: fallback_lines(server), 20, message="the fallback log line")
        (line,) = fallback_lines(server)
        assert f"[{replacement}]" in line and "inotify" in line and "Too many open files" in line
        assert not holds_inotify(replacement) and server.worker_pids() == before - {victim} | {replacement}
        wait_until(lambda: cluster(server)["converged"] and len(cluster(server)["workers"]) == 2, CONVERGE)

        (directory / "ver" / "pipeline_wrapper.py").write_text(samples.versioned("v2"))
        assert wait_until(lambda: every_worker_serves(server, "ver", SLOW, disk_revision(directory, "ver")), CONVERGE)
        samples.write_wrapper(directory, "added", samples.versioned("a1"), files={})
        assert wait_until(lambda: every_worker_serves(server, "added", SLOW, disk_revision(directory, "added")), 10)
