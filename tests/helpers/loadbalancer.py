"""Several hayhooks instances behind a real nginx, for tests/e2e/test_cluster.py and `make cluster-demo`.

Each instance is its own gunicorn master (2 workers, its own port and runtime folder) over one shared
pipelines directory. nginx runs on loopback from ``deploy/nginx/hayhooks.conf``, the file the
deployment guide ships, with only its addresses replaced.
"""

import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.helpers.support import BIN, REPO, Server, free_port, server_env, wait_until

NGINX_SITE = REPO / "deploy" / "nginx" / "hayhooks.conf"
# The addresses in deploy/nginx/hayhooks.conf that a test setup replaces.
SITE_UPSTREAMS = ("server 127.0.0.1:1416 ", "server 127.0.0.1:1417 ")
SITE_LISTEN = "listen 127.0.0.1:8080;"
WORKERS_PER_INSTANCE = 2


def answers(
    url: str, name: str, body: dict, *, requests: int = 48, concurrency: int = 12
) -> dict[int, set[str | None]]:
    """Like tests.support.answers_by_worker (pid -> revisions answered; failures under pid 0), over one
    client that opens a fresh connection per call: an httpx client per call costs ~20 ms of CPU,
    which adds up when 4 workers and nginx share 2 cores."""
    seen: dict[int, set[str | None]] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=0)
    with httpx.Client(timeout=30, limits=limits) as client:

        def call(_: int) -> tuple[int, str | None]:
            try:
                response = client.post(f"{url}/{name}/run", json=body)
            except httpx.HTTPError:
                return 0, None
            if response.status_code != 200:
                return 0, None
            return int(response.headers["x-hayhooks-worker"]), response.headers["x-hayhooks-revision"]

        with ThreadPoolExecutor(concurrency) as pool:
            for pid, revision in pool.map(call, range(requests)):
                seen.setdefault(pid, set()).add(revision)
    return seen


def served_by_all(url: str, workers: set[int], name: str, body: dict, revision: str | None) -> bool:
    """Every pid of ``workers`` answered ``name`` at ``url``, all with ``revision`` (None: nobody
    serves it, every call fails)."""
    seen = answers(url, name, body, requests=16 * max(len(workers), 1), concurrency=4 * max(len(workers), 1))
    if revision is None:
        return set(seen) == {0}
    return set(seen) == workers and set().union(*seen.values()) == {revision}


def nginx_binary() -> str | None:
    """nginx from PATH, or Debian's /usr/sbin/nginx when sbin is not on a user's PATH."""
    found = shutil.which("nginx")
    if found:
        return found
    return "/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK) else None


def render_site(upstream_ports: list[int], listen_port: int) -> str:
    """deploy/nginx/hayhooks.conf with its two instance addresses and its listen address replaced."""
    text = NGINX_SITE.read_text()
    for placeholder in (*SITE_UPSTREAMS, SITE_LISTEN):
        if text.count(placeholder) != 1:
            raise ValueError(f"{NGINX_SITE} must contain {placeholder!r} exactly once")
    if len(upstream_ports) != len(SITE_UPSTREAMS):
        raise ValueError(f"the site lists {len(SITE_UPSTREAMS)} instances")
    for placeholder, port in zip(SITE_UPSTREAMS, upstream_ports, strict=True):
        text = text.replace(placeholder, f"server 127.0.0.1:{port} ")
    return text.replace(SITE_LISTEN, f"listen 127.0.0.1:{listen_port};")


class Nginx:
    """nginx in the foreground with everything (config, pid, logs, temp files) inside ``prefix``."""

    ACCESS_FORMAT = '$status "$request" upstream=$upstream_addr upstream_status=$upstream_status'

    def __init__(self, prefix: Path, upstream_ports: list[int]) -> None:
        binary = nginx_binary()
        if binary is None:
            raise RuntimeError("nginx is not installed: run scripts/ensure-nginx.sh (make test does)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.prefix = prefix
        temp = prefix / "temp"
        for folder in (prefix / "logs", temp):
            folder.mkdir(parents=True, exist_ok=True)
        self.access_log = prefix / "logs" / "access.log"
        self.error_log = prefix / "logs" / "error.log"
        site = prefix / "hayhooks.conf"
        site.write_text(render_site(upstream_ports, self.port))
        # When started as root, nginx's workers would drop to `nobody`, who cannot enter pytest's
        # private temp folders; keep them as the current user (the directive is ignored otherwise).
        user = "user root;\n" if os.geteuid() == 0 else ""
        config = prefix / "nginx.conf"
        config.write_text(
            f"daemon off;\n{user}worker_processes 1;\npid {prefix}/nginx.pid;\n"
            f"error_log {self.error_log} notice;\n"
            "events { worker_connections 1024; }\n"
            "http {\n"
            f"    log_format hayhooks '{self.ACCESS_FORMAT}';\n"
            f"    access_log {self.access_log} hayhooks;\n"
            + "".join(f"    {kind}_temp_path {temp}/{kind};\n" for kind in ("fastcgi", "uwsgi", "scgi", "proxy"))
            + f"    client_body_temp_path {temp}/body;\n"
            f"    include {site};\n"
            "}\n"
        )
        self._output = open(prefix / "logs" / "stdout.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            [binary, "-c", str(config), "-p", f"{prefix}/", "-e", str(self.error_log)],
            stdout=self._output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 20.0) -> "Nginx":
        def listening() -> bool:
            if self.process.poll() is not None:
                raise AssertionError(f"nginx exited with {self.process.returncode}:\n{self.errors()}")
            httpx.get(f"{self.url}/health", timeout=5)  # any answer, even 502, means nginx listens
            return True

        wait_until(listening, timeout, 0.1, "nginx to listen")
        return self

    def access_lines(self) -> list[str]:
        return self.access_log.read_text().splitlines() if self.access_log.exists() else []

    def errors(self) -> str:
        return self.error_log.read_text(errors="replace") if self.error_log.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGQUIT)  # graceful: finish what is in flight
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        self._output.close()


def start_instance(directory: Path, work: Path, port: int | None = None, **env: str) -> Server:
    """One gunicorn master with 2 workers on ``port`` (a free one by default). Without
    HAYHOOKS_RUNTIME_DIR in ``env`` the master claims a runtime folder of its own."""
    port = port or free_port()
    command = [str(BIN / "gunicorn"), "-c", str(REPO / "gunicorn.conf.py")]
    environment = server_env(directory, port, HAYHOOKS_WORKERS=str(WORKERS_PER_INSTANCE), **env)
    log = work / f"instance-{port}-{time.monotonic_ns()}.log"
    return Server(command, environment, port, log)


@dataclass
class Cluster:
    """Two instances over one directory, and nginx in front of them."""

    directory: Path
    work: Path
    instances: list[Server] = field(default_factory=list)
    nginx: Nginx | None = None
    # Instance 0 gets an explicit runtime folder (it survives a kill and is reused on restart);
    # instance 1 gets none, so its master claims (and removes) a temporary one.
    runtime_dirs: list[Path | None] = field(default_factory=list)

    @classmethod
    def start(cls, directory: Path, work: Path) -> "Cluster":
        cluster = cls(directory, work, runtime_dirs=[work / "runtime-a", None])
        try:
            cluster.instances = [cluster._instance(index) for index in range(2)]
            for instance in cluster.instances:
                instance.wait_ready()
            cluster.nginx = Nginx(work / "nginx", [instance.port for instance in cluster.instances]).wait_ready()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _instance(self, index: int, port: int | None = None) -> Server:
        runtime = self.runtime_dirs[index]
        env = {"HAYHOOKS_RUNTIME_DIR": str(runtime)} if runtime else {}
        return start_instance(self.directory, self.work, port, **env)

    @property
    def url(self) -> str:
        assert self.nginx is not None
        return self.nginx.url

    def kill(self, index: int) -> set[int]:
        """SIGKILL an instance's whole process group (master and workers): no shutdown hook runs."""
        victim = self.instances[index]
        pids = victim.worker_pids() | {victim.pid}
        victim.stop(signal.SIGKILL)
        return pids

    def restart(self, index: int) -> Server:
        """Start the instance again on its port (and its runtime folder, if it had one)."""
        port = self.instances[index].port
        self.instances[index] = self._instance(index, port)
        return self.instances[index].wait_ready()

    def instance_of(self, pid: int) -> int | None:
        for index, instance in enumerate(self.instances):
            if pid in instance.worker_pids():
                return index
        return None

    def all_worker_pids(self) -> set[int]:
        return set().union(*(instance.worker_pids() for instance in self.instances))

    def logs(self) -> str:
        parts = [f"--- instance on port {s.port} ---\n{s.log.read_text(errors='replace')}" for s in self.instances]
        if self.nginx is not None:
            parts.append(f"--- nginx errors ---\n{self.nginx.errors()}")
        return "\n".join(parts)

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
        for instance in self.instances:
            instance.stop()
