"""Many instances, one directory, one load balancer: two gunicorn masters (2 workers each, own ports,
own runtime folders) over one pipelines directory, with a real nginx in front of them, configured by
deploy/nginx/hayhooks.conf. Needs nginx (scripts/ensure-nginx.sh; `make test` runs it)."""

import subprocess
import threading
import time

import httpx
import pytest

from hayhooks.cli.status import compare_instances
from hayhooks.pipelines.source import hash_entry
from tests.helpers import pipelines as samples
from tests.helpers.loadbalancer import WORKERS_PER_INSTANCE, Cluster, nginx_binary, served_by_all
from tests.helpers.support import BIN, REPO, Server, wait_until

pytestmark = pytest.mark.skipif(nginx_binary() is None, reason="nginx not installed (scripts/ensure-nginx.sh)")

SLOW = {"delay": 0.05}  # keeps workers busy, so concurrent calls spread over all of them
CONVERGE = 10.0


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("cluster")
    directory = work / "pipelines"
    samples.write_wrapper(directory, "ver", samples.versioned("v1"), files={})
    samples.write_yaml(directory, "prompt", samples.PROMPT_YAML)
    started = Cluster.start(directory, work)
    try:
        yield started
    finally:
        started.stop()


def every_worker_of_every_instance_serves(cluster: Cluster, name: str, revision: str | None) -> bool:
    """Each instance's every worker answers ``revision`` on its own port, and through nginx the
    answers come from every worker of both instances, all with ``revision`` (None: nobody serves it)."""
    for instance in cluster.instances:
        if not served_by_all(instance.url, instance.worker_pids(), name, SLOW, revision):
            return False
    return served_by_all(cluster.url, cluster.all_worker_pids(), name, SLOW, revision)


def statuses(cluster: Cluster) -> list[dict]:
    return [httpx.get(f"{instance.url}/status", timeout=5).json() for instance in cluster.instances]


def test_each_instance_has_its_own_workers_and_cluster_view(cluster: Cluster):
    def all_workers_up() -> bool:
        return all(
            status["cluster"]["converged"] and len(status["cluster"]["workers"]) == WORKERS_PER_INSTANCE
            for status in statuses(cluster)
        )

    assert wait_until(all_workers_up, CONVERGE, message="both instances' workers to be up and agree")
    pids = [instance.worker_pids() for instance in cluster.instances]
    assert all(len(workers) == WORKERS_PER_INSTANCE for workers in pids)
    assert not pids[0] & pids[1]
    for instance, workers, status in zip(cluster.instances, pids, statuses(cluster), strict=True):
        view = status["cluster"]
        assert {worker["pid"] for worker in view["workers"]} == workers  # its own, none of the other's
        assert {worker["port"] for worker in view["workers"]} == {instance.port}
        assert status["worker"]["port"] == instance.port and status["worker"]["pid"] in workers
        assert status["worker"]["host"]


def test_a_deploy_through_the_load_balancer_reaches_every_worker_of_every_instance(cluster: Cluster):
    files = samples.wrapper_files(samples.versioned("lb"), files={})
    answer = httpx.post(f"{cluster.url}/deploy_files", json={"name": "fresh", "files": files, "wait": True}, timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["revision"] == hash_entry(cluster.directory / "fresh", "files")
    # `wait` covers the instance that took the deploy; the other one follows the directory
    assert body["converged"] is True and body["lagging"] == []
    assert any(set(body["workers"]) == instance.worker_pids() for instance in cluster.instances)
    assert wait_until(lambda: every_worker_of_every_instance_serves(cluster, "fresh", body["revision"]), CONVERGE)

    # the status of each instance names which of its workers serves which revision
    for instance, status in zip(cluster.instances, statuses(cluster), strict=True):
        served = {(w["pid"], w["port"]): w["pipelines"]["fresh"]["revision"] for w in status["cluster"]["workers"]}
        assert served == {(pid, instance.port): body["revision"] for pid in instance.worker_pids()}

    answer = httpx.post(f"{cluster.url}/undeploy/fresh", params={"wait": True}, timeout=60)
    assert answer.status_code == 200 and answer.json()["converged"] is True
    assert not (cluster.directory / "fresh").exists()
    assert wait_until(lambda: every_worker_of_every_instance_serves(cluster, "fresh", None), CONVERGE)
    assert all("fresh" not in w["pipelines"] for status in statuses(cluster) for w in status["cluster"]["workers"])


def test_status_through_the_load_balancer_reaches_both_instances(cluster: Cluster):
    ports: set[int] = set()
    pids: set[int] = set()

    def both_answered() -> bool:
        status = httpx.get(f"{cluster.url}/status", timeout=5).json()
        ports.add(status["worker"]["port"])
        pids.add(status["worker"]["pid"])
        return ports == {instance.port for instance in cluster.instances}

    assert wait_until(both_answered, 10, 0.01)
    assert pids <= cluster.all_worker_pids()


def test_the_cli_compares_instances(cluster: Cluster):
    urls = [instance.url for instance in cluster.instances]
    result = subprocess.run([str(BIN / "hayhooks"), "status", *urls], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith(f"all 2 instances ({2 * WORKERS_PER_INSTANCE} workers) agree")
    assert all(f"hayhooks at {url}: Up!" in result.stdout for url in urls)

    unreachable = "http://127.0.0.1:9"
    result = subprocess.run(
        [str(BIN / "hayhooks"), "status", *urls, unreachable], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 1
    assert result.stdout.strip().endswith(f"instances disagree: no answer from {unreachable}")
    assert "cannot reach hayhooks at http://127.0.0.1:9" in result.stderr


def test_killing_an_instance_loses_no_request_and_no_pipeline(cluster: Cluster):
    """SIGKILL one instance's process group while clients call through nginx: nginx retries what
    was in flight there on the other instance, which serves every pipeline; the killed instance,
    restarted on its port, serves everything in the directory again and gets traffic back."""
    files = samples.wrapper_files(samples.versioned("runtime"), files={})
    deployed = httpx.post(f"{cluster.url}/deploy_files", json={"name": "runtime", "files": files, "wait": True})
    assert deployed.status_code == 200, deployed.text
    revisions = {
        "ver": hash_entry(cluster.directory / "ver", "files"),
        "runtime": deployed.json()["revision"],
    }
    assert wait_until(lambda: every_worker_of_every_instance_serves(cluster, "runtime", revisions["runtime"]), CONVERGE)

    results: list[tuple[float, int, int]] = []  # (time, status or 0 for a transport error, worker pid)
    stop = threading.Event()

    def client() -> None:
        with httpx.Client(timeout=30) as session:
            while not stop.is_set():
                try:
                    response = session.post(f"{cluster.url}/ver/run", json=SLOW)
                    results.append((time.monotonic(), response.status_code, int(response.headers["x-hayhooks-worker"])))
                except (httpx.HTTPError, KeyError, ValueError):
                    results.append((time.monotonic(), 0, 0))

    def serves_traffic(instance: Server) -> bool:
        return any(pid in instance.worker_pids() for _, _, pid in results[-40:])

    def retried() -> list[str]:
        """nginx's access lines of requests it sent to the killed instance first, then to the other one."""
        killed_address = f"127.0.0.1:{cluster.instances[0].port}"
        return [line for line in cluster.nginx.access_lines() if f"upstream={killed_address}, " in line]  # type: ignore[union-attr]

    clients = [threading.Thread(target=client) for _ in range(8)]
    for thread in clients:
        thread.start()
    try:
        wait_until(lambda: all(map(serves_traffic, cluster.instances)), 20, message="traffic through both instances")
        killed = cluster.kill(0)
        killed_at = time.monotonic()
        survivor = cluster.instances[1]

        # the survivor serves every pipeline, the runtime deploy included, with every worker
        for name, revision in revisions.items():
            assert served_by_all(survivor.url, survivor.worker_pids(), name, SLOW, revision), name
        assert httpx.post(f"{cluster.url}/prompt/run", json={"query": "q", "topic": "t"}).status_code == 200
        wait_until(retried, 20, message="nginx to retry requests of the killed instance on the survivor")

        restarted = cluster.restart(0)
        assert not restarted.worker_pids() & killed

        def restarted_serves_everything() -> bool:
            pids = restarted.worker_pids()
            return all(served_by_all(restarted.url, pids, name, SLOW, rev) for name, rev in revisions.items())

        assert wait_until(restarted_serves_everything, CONVERGE, message="the restarted instance to serve everything")

        assert wait_until(
            lambda: serves_traffic(restarted), 20, message="nginx to send requests to the restarted instance"
        )
    finally:
        stop.set()
        for thread in clients:
            thread.join()

    failed = [result for result in results if result[1] != 200]
    assert failed == [], f"{len(failed)} of {len(results)} calls failed: {failed[:5]}\n{cluster.logs()}"
    after_kill = [pid for at, _, pid in results if at > killed_at + 0.5]
    assert not set(after_kill) & killed, "a killed worker answered"
    # nginx really did retry: some requests went to the killed instance first, then to the survivor
    assert retried() and all(line.startswith("200 ") for line in retried()), retried()[:5]
    assert len(results) > 100
    # and the cluster view of both instances agrees again
    assert wait_until(lambda: all(status["cluster"]["converged"] for status in statuses(cluster)), CONVERGE)
    urls = [instance.url for instance in cluster.instances]
    agree, summary = compare_instances(dict(zip(urls, statuses(cluster), strict=True)))
    assert agree, summary


def test_the_nginx_site_file_is_what_ran(cluster: Cluster):
    """The running config differs from deploy/nginx/hayhooks.conf only in the three addresses."""
    assert cluster.nginx is not None
    ran = (cluster.nginx.prefix / "hayhooks.conf").read_text().splitlines()
    shipped = (REPO / "deploy" / "nginx" / "hayhooks.conf").read_text().splitlines()
    changed = [(a, b) for a, b in zip(shipped, ran, strict=True) if a != b]
    assert len(changed) == 3
    assert all("127.0.0.1:" in a and "127.0.0.1:" in b for a, b in changed)
