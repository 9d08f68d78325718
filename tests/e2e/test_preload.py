"""HAYHOOKS_PRELOAD on a real gunicorn master: what the master imports ahead, and what only workers run."""

import os
from pathlib import Path

import httpx

from hayhooks.bench.server import children, cmdline
from tests.helpers import pipelines as samples
from tests.helpers.support import REPO, start_gunicorn, wait_until

# Each module appends the pid of the process importing (or running) it to RECORDS/NAME (a folder
# outside the pipelines directory: a write inside it would be a new revision).
RECORD = """
import os

with open(os.path.join(RECORDS, NAME), "a") as record:
    record.write(f"{os.getpid()}\\n")
"""

LIBRARY = RECORD.replace("NAME", "'library.pids'")  # a library installed outside the pipelines directory
COMPONENT = (
    RECORD.replace("NAME", "'component.pids'")
    + """
from haystack import component


@component
class Shout:
    @component.output_types(text=str)
    def run(self, text: str) -> dict:
        return {"text": text.upper()}
"""
)
HELPER = RECORD.replace("NAME", "'helper.pids'") + "SUFFIX = '!'\n"  # pipeline code: the wrapper's sibling

WRAPPER = """
import os

import aheadlib

from hayhooks import BasePipelineWrapper

from .helper import SUFFIX


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        with open(os.path.join(RECORDS, "setup.pids"), "a") as record:
            record.write(f"{os.getpid()}\\n")

    def run_api(self, text: str) -> str:
        return text + SUFFIX
"""

SHOUT_YAML = """
components:
  shout:
    type: aheadcomp.Shout
    init_parameters: {}
connections: []
inputs:
  text: shout.text
outputs:
  text: shout.text
"""


def pids(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()] if path.exists() else []


def test_preload_imports_the_libraries_pipelines_import_in_the_master_and_runs_their_code_in_workers(
    pipelines_dir: Path, tmp_path: Path
):
    """A wrapper importing a library and a sibling module, and a YAML naming a component of another
    library, served by 2 preloading workers.

    Proves: both libraries are imported once, in the master (the workers share them, so they do not
    import them again at start); the wrapper's own module, its sibling and ``setup()`` run in each
    worker and never in the master; both pipelines answer from every worker.
    """
    libraries, records = tmp_path / "libraries", tmp_path / "records"
    libraries.mkdir()
    records.mkdir()

    def recording(code: str) -> str:
        return code.replace("RECORDS", repr(str(records)))

    (libraries / "aheadlib.py").write_text(recording(LIBRARY))
    (libraries / "aheadcomp.py").write_text(recording(COMPONENT))
    files = {"helper.py": recording(HELPER)}
    samples.write_wrapper(pipelines_dir, "suffix", recording(WRAPPER), files=files)
    samples.write_yaml(pipelines_dir, "shout", SHOUT_YAML)
    python_path = os.pathsep.join([str(REPO), str(libraries), os.environ.get("PYTHONPATH", "")])

    settings = {
        "HAYHOOKS_PRELOAD": "true",
        "PYTHONPATH": python_path,
        "HAYSTACK_DESERIALIZATION_ALLOWLIST": "aheadcomp",
    }
    server = start_gunicorn(pipelines_dir, tmp_path, workers=2, **settings)  # started: stopped below
    try:
        server.wait_ready()
        workers = server.worker_pids()
        assert len(workers) == 2
        for _ in range(8):
            assert httpx.post(f"{server.url}/suffix/run", json={"text": "hi"}).json()["result"] == "hi!"
            shout = httpx.post(f"{server.url}/shout/run", json={"text": "hi"}).json()
            assert shout.get("result") == {"shout": {"text": "HI"}}
        assert pids(records / "library.pids") == [server.pid]
        assert pids(records / "component.pids") == [server.pid]
        assert sorted(pids(records / "helper.pids")) == sorted(workers)
        assert sorted(pids(records / "setup.pids")) == sorted(workers)
    finally:
        server.stop()


def test_a_preloading_master_forks_the_deploy_checker_which_still_contains_hostile_deploys(
    pipelines_dir: Path, tmp_path: Path
):
    """With preload the checker is a fork of the master (sharing its imports), not a fresh interpreter
    a worker starts: its pid is the master's child beside the workers; a deploy that ends its
    process or crashes still answers 422 with every worker alive; a good deploy reaches both
    workers; stopping the master ends the checker too."""
    server = start_gunicorn(pipelines_dir, tmp_path, workers=2, HAYHOOKS_PRELOAD="true")
    try:
        server.wait_ready()
        workers = server.worker_pids()
        (checker,) = [pid for pid in children(server.pid) if pid not in workers]
        assert Path(f"/proc/{checker}/comm").read_text().strip() == "hayhooks-check"
        assert "hayhooks.cluster.checker" not in cmdline(checker)  # not started as a fresh interpreter
        for code, message in [
            (samples.EXITS_ON_IMPORT, "ended its process (exit code 1)"),
            (samples.CRASHES_IN_SETUP, "killed by SIGSEGV"),
        ]:
            body = {"name": "hostile", "files": samples.wrapper_files(code)}
            answer = httpx.post(f"{server.url}/deploy_files", json=body, timeout=60)
            assert answer.status_code == 422 and message in answer.json()["detail"], answer.text
        good = {"name": "after", "files": samples.wrapper_files(samples.GREET), "wait": True}
        answer = httpx.post(f"{server.url}/deploy_files", json=good, timeout=30)
        assert answer.status_code == 200 and answer.json()["converged"], answer.text
        assert server.worker_pids() == workers
        assert [pid for pid in children(server.pid) if pid not in workers] == [checker]  # no second checker
    finally:
        server.stop()
    wait_until(lambda: not Path(f"/proc/{checker}").exists(), 10, message="the checker to end with the master")
