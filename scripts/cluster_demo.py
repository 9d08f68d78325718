"""`make cluster-demo`: two hayhooks instances over one pipelines directory, nginx in front, step by step.

Run as ``python -m scripts.cluster_demo`` (needs nginx: scripts/ensure-nginx.sh). Everything listens on
127.0.0.1 on free ports and is stopped at the end. Exits non-zero, with the logs, on the first step
that does not hold. tests/e2e/test_cluster.py checks the same things in more detail.
"""

import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"

import httpx  # noqa: E402

from hayhooks.pipelines.source import hash_entry  # noqa: E402
from tests.helpers import pipelines as samples  # noqa: E402
from tests.helpers.loadbalancer import Cluster, served_by_all  # noqa: E402
from tests.helpers.support import BIN, REPO, wait_until  # noqa: E402

SLOW = {"delay": 0.05}


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def who_serves(cluster: Cluster, name: str) -> None:
    """One line per worker of every instance, from each instance's own /status."""
    for index, instance in enumerate(cluster.instances):
        status = httpx.get(f"{instance.url}/status", timeout=5).json()
        for worker in status["cluster"]["workers"]:
            entry = worker["pipelines"].get(name) or {}
            where = f"{worker['host']}:{worker['port']}"
            print(f"  instance {'AB'[index]} ({where}) worker {worker['pid']}: {name} = {entry.get('revision', '-')}")


def everywhere(cluster: Cluster, name: str, revision: str | None) -> bool:
    """Every worker of every instance, asked directly and through nginx, answers ``revision``."""
    for instance in cluster.instances:
        if not served_by_all(instance.url, instance.worker_pids(), name, SLOW, revision):
            return False
    return served_by_all(cluster.url, cluster.all_worker_pids(), name, SLOW, revision)


def answering(results: list[tuple[int, int]]) -> set[int]:
    """The worker pids that answered 200 to any of ``results`` (status, pid)."""
    return {pid for status, pid in results if status == 200}


def instances_answering(cluster: Cluster, results: list[tuple[int, int]]) -> set[int | None]:
    """Which instances (by index) answered any of ``results``."""
    return {cluster.instance_of(pid) for pid in answering(results)}


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="hayhooks-cluster-"))
    directory = work / "pipelines"
    samples.write_wrapper(directory, "ver", samples.versioned("v1"), files={})
    step("1. two instances (gunicorn, 2 workers each) over one pipelines directory, nginx in front")
    cluster = Cluster.start(directory, work)
    try:
        for index, instance in enumerate(cluster.instances):
            runtime = cluster.runtime_dirs[index] or "claimed by its master"
            print(
                f"  instance {'AB'[index]}: {instance.url}, workers {sorted(instance.worker_pids())}, runtime {runtime}"
            )
        print(f"  nginx: {cluster.url} (deploy/nginx/hayhooks.conf, running copy {cluster.nginx.prefix}/hayhooks.conf)")
        print(f"  pipelines directory: {directory}")

        step("2. deploy through the load balancer (POST /deploy_files, wait=true)")
        files = samples.wrapper_files(samples.versioned("demo"), files={})
        answer = httpx.post(f"{cluster.url}/deploy_files", json={"name": "demo", "files": files, "wait": True})
        answer.raise_for_status()
        body = answer.json()
        print(f"  answer: revision {body['revision']}, converged {body['converged']} on workers {body['workers']}")
        print("  (wait covers the instance that took the deploy; the other follows the directory)")
        wait_until(lambda: everywhere(cluster, "demo", body["revision"]), 10, message="every worker to serve demo")
        print("  every worker of both instances answers with it, directly and through nginx:")
        who_serves(cluster, "demo")

        step("3. `hayhooks status URL URL`: does every instance agree?")
        urls = [instance.url for instance in cluster.instances]
        result = subprocess.run([str(BIN / "hayhooks"), "status", *urls], capture_output=True, text=True, timeout=60)
        print("  " + result.stdout.strip().replace("\n", "\n  "))
        assert result.returncode == 0, result.stderr

        step("4. /status through nginx reaches both instances")
        answered = Counter(httpx.get(f"{cluster.url}/status", timeout=5).json()["worker"]["port"] for _ in range(20))
        print(f"  20 calls answered by port: {dict(answered)}")
        assert set(answered) == {instance.port for instance in cluster.instances}

        step("5. SIGKILL instance A (master and workers) while 8 clients call through nginx")
        results: list[tuple[int, int]] = []
        stop = threading.Event()

        def client() -> None:
            with httpx.Client(timeout=30) as session:
                while not stop.is_set():
                    try:
                        response = session.post(f"{cluster.url}/demo/run", json=SLOW)
                        results.append((response.status_code, int(response.headers.get("x-hayhooks-worker", 0))))
                    except httpx.HTTPError:
                        results.append((0, 0))

        clients = [threading.Thread(target=client) for _ in range(8)]
        for thread in clients:
            thread.start()
        try:
            wait_until(lambda: instances_answering(cluster, results) == {0, 1}, 10, message="both instances answering")
            killed = cluster.kill(0)
            since_kill = len(results)
            print(f"  killed pids {sorted(killed)}")
            survivor = cluster.instances[1]
            for name, revision in (("demo", body["revision"]), ("ver", hash_entry(directory / "ver", "files"))):
                assert served_by_all(survivor.url, survivor.worker_pids(), name, SLOW, revision), name
            print("  instance B serves every pipeline with every worker")
            wait_until(
                lambda: answering(results[since_kill:]) >= survivor.worker_pids(),
                10,
                message="calls through nginx answered by every worker of B while A is down",
            )

            step("6. restart instance A on its port: it loads everything from the directory")
            restarted = cluster.restart(0)
            print(f"  instance A: {restarted.url}, new workers {sorted(restarted.worker_pids())}")
            wait_until(lambda: everywhere(cluster, "demo", body["revision"]), 10, message="A to serve demo again")
            wait_until(lambda: any(pid in restarted.worker_pids() for _, pid in results[-40:]), 20, message="traffic")
            print("  nginx sends it traffic again")
        finally:
            stop.set()
            for thread in clients:
                thread.join()
        statuses = Counter(status for status, _ in results)
        retried = [line for line in cluster.nginx.access_lines() if f":{cluster.instances[0].port}, " in line]
        print(f"  calls during steps 5-6: {sum(statuses.values())}, answers by status: {dict(statuses)}")
        print(f"  calls nginx retried on instance B after A died mid-request: {len(retried)}")
        assert set(statuses) == {200}, "some calls failed"
        who_serves(cluster, "demo")

        step("7. undeploy through the load balancer: gone from every worker of every instance")
        httpx.post(f"{cluster.url}/undeploy/demo", params={"wait": True}).raise_for_status()
        wait_until(lambda: everywhere(cluster, "demo", None), 10, message="demo to be gone everywhere")
        who_serves(cluster, "demo")
        print("\ncluster demo: passed")
        return 0
    except Exception as error:  # show what an operator would need, then fail
        print(f"\ncluster demo: FAILED: {error!r}\n{cluster.logs()}", file=sys.stderr)
        return 1
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
