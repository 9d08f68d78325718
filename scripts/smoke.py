"""`make smoke`: gunicorn with 3 workers, driven by the CLI and by file edits; every step must converge.

Run as ``python -m scripts.smoke``. Exits non-zero, with the server log, on the first step that fails.
"""

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"

from hayhooks.pipelines.source import hash_entry  # noqa: E402
from tests.helpers import pipelines as samples  # noqa: E402
from tests.helpers.support import BIN, REPO, Server, cluster, every_worker_serves, start_gunicorn, wait_until  # noqa: E402

BODY = {"delay": 0.05}


def agreed(server: Server, name: str, revision: str | None) -> None:
    """Every worker answers with ``revision`` of ``name`` (None: none serves it), and says so in status."""
    if revision is None:
        wait_until(lambda: all(name not in w["pipelines"] for w in cluster(server)["workers"]), 10, message=name)
    else:
        wait_until(lambda: every_worker_serves(server, name, BODY, revision), 10, message=f"{name}@{revision}")
    wait_until(lambda: cluster(server)["converged"], 10, message="cluster view converged")
    print(f"  ok: all {len(server.worker_pids())} workers agree on {name} = {revision or 'absent'}")


def cli(server: Server, *args: str) -> None:
    subprocess.run([str(BIN / "hayhooks"), "--server", server.url, *args], check=True, timeout=120)


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="hayhooks-smoke-"))
    directory = work / "pipelines"
    directory.mkdir()
    source = samples.write_wrapper(work / "src", "smoke", samples.versioned("v1"), files={})
    server = start_gunicorn(directory, work, workers=3)
    try:
        server.wait_ready()
        print(f"gunicorn master {server.pid} with workers {sorted(server.worker_pids())}")
        print("1. deploy with the CLI")
        cli(server, "pipeline", "deploy-files", "-n", "smoke", str(source))
        agreed(server, "smoke", hash_entry(directory / "smoke", "files"))
        print("2. edit a pipeline file in the directory")
        (directory / "smoke" / "pipeline_wrapper.py").write_text(samples.versioned("v2"))
        agreed(server, "smoke", hash_entry(directory / "smoke", "files"))
        print("3. remove the pipeline from the directory")
        shutil.rmtree(directory / "smoke")
        agreed(server, "smoke", None)
        cli(server, "status")
        print("smoke: passed")
        return 0
    except Exception as error:  # report what the user would need to see, then fail
        print(f"smoke: FAILED: {error}\n--- server log ---\n{server.output()}", file=sys.stderr)
        return 1
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.chdir(REPO)
    sys.exit(main())
