"""Redeploys give their memory back on a real gunicorn: no worker keeps an old revision alive, and
the server's total PSS stays flat however many revisions came and went."""

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

from hayhooks.bench.server import read_memory
from tests.helpers import pipelines as samples
from tests.helpers.metrics import scrape
from tests.helpers.support import Server, start_gunicorn, wait_until

BLOB_BYTES = 4_000_000  # per revision: large enough that a kept revision or unreturned heap shows in PSS
WARM_UP = 10  # redeploys before the first measurement: imports, caches and arenas settle
REDEPLOYS = 40  # before the fix, total PSS grew by about half over these
SLOW = {"delay": 0.05}  # keeps workers busy, so concurrent calls spread over all of them


def deploy(server: Server, version: int) -> None:
    code = samples.wrapper_code(samples.TRACKED, version=str(version), blob_bytes=str(BLOB_BYTES))
    body = {"name": "tracked", "files": {"pipeline_wrapper.py": code}, "overwrite": True, "wait": True}
    answer = httpx.post(f"{server.url}/deploy_files", json=body, timeout=60)
    assert answer.status_code == 200 and answer.json()["converged"], answer.text


def total_pss(server: Server) -> int:
    """PSS summed over the master, its workers and what they started (the deploy checker)."""
    return sum(memory.pss for memory in map(read_memory, server.tree()) if memory is not None)


def alive_by_worker(server: Server) -> dict[int, list[str]]:
    """The versions each worker still holds a marker of, once every worker answered."""
    seen: dict[int, list[str]] = {}

    def answered_by_all() -> bool:
        with ThreadPoolExecutor(8) as pool:
            answers = pool.map(lambda _: httpx.post(f"{server.url}/tracked/run", json=SLOW, timeout=30), range(16))
            for answer in answers:
                result = answer.json()["result"]
                seen[result["pid"]] = result["alive"]
        return set(seen) == server.worker_pids()

    wait_until(answered_by_all, 30, message="every worker to answer")
    return seen


def test_redeploys_release_old_revisions_and_keep_pss_flat(pipelines_dir: Path, tmp_path: Path):
    server = start_gunicorn(pipelines_dir, tmp_path, workers=2)
    try:
        server.wait_ready()
        for version in range(WARM_UP):
            deploy(server, version)
        before = total_pss(server)
        for version in range(WARM_UP, WARM_UP + REDEPLOYS):
            if version == WARM_UP + REDEPLOYS // 2:  # undeploy and re-add once on the way
                assert httpx.post(f"{server.url}/undeploy/tracked?wait=true", timeout=60).json()["converged"]
            deploy(server, version)
        after = total_pss(server)
        alive = alive_by_worker(server)
        workers = server.worker_pids()
        loaded_rows = [labels for (name, labels), _ in scrape(server).items() if name == "hayhooks_pipeline_loaded"]
    finally:
        server.stop()
    last = str(WARM_UP + REDEPLOYS - 1)
    assert alive == {pid: [last] for pid in workers}  # not even the first load (Haystack imported in it)
    assert len(loaded_rows) == len(workers), loaded_rows  # the current revision once per worker, no history
    assert after < before * 1.10, f"total PSS {before / 2**20:.0f} MiB -> {after / 2**20:.0f} MiB"
