"""Schemathesis with every check holds the OpenAPI contract of the bundled examples on 2 workers.

What a user's own contract test does: ``st run /openapi.json --checks all --mode all`` against the
server, valid and invalid requests to every operation it documents (the examples' runs, JSON and
multipart, status and readiness, OpenAI chat, responses and files), each answer checked against the
schema: no 5xx but the documented 501, every status and media type documented, invalid data
refused, valid data accepted, and the stateful phase following links (a stored file is readable
until deleted). The repository's ``schemathesis.toml`` says what it configures and why.
"""

import os
import subprocess
from collections.abc import Iterator

import httpx
import pytest

from hayhooks.pipelines.source import PipelineSource
from tests.helpers.support import BIN, EXAMPLES, REPO, Server, serving_examples

EXAMPLES_PER_OPERATION = 100
SEED = 16  # fixed, so that a failure in CI replays; vary it (or drop it) to explore
NAMES = sorted(PipelineSource(EXAMPLES).scan()[0])  # what the server serves from the folder


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serving_examples(tmp_path_factory.mktemp("contract"))


def test_every_bundled_example_and_protocol_surface_is_in_the_schema(server: Server):
    """Proves the run below covers what it claims: each example's run, status, chat and uploads."""
    paths = httpx.get(f"{server.url}/openapi.json").json()["paths"]
    surfaces = {"/status", "/status/{pipeline_name}", "/v1/chat/completions", "/v1/responses", "/v1/files"}
    assert {f"/{name}/run" for name in NAMES} | surfaces <= set(paths)
    assert "multipart/form-data" in paths["/file_info/run"]["post"]["requestBody"]["content"]


def test_schemathesis_with_all_checks_finds_nothing(server: Server, tmp_path):
    """Proves: every operation answers valid and invalid generated requests as ``/openapi.json``
    documents them, with 0 failures of any check, in every phase (examples, coverage, fuzzing, stateful)."""
    operations = sum(
        len(item) for item in httpx.get(f"{server.url}/openapi.json").json()["paths"].values()
    )  # every method of every path
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "SCHEMATHESIS_HOOKS": "tests.helpers.contract_hooks",
        "HAYHOOKS_CONTRACT_PIPELINES": ",".join(NAMES),
    }
    command = [
        str(BIN / "schemathesis"),
        "--config-file",
        str(REPO / "schemathesis.toml"),
        "run",
        f"{server.url}/openapi.json",
        "--checks",
        "all",
        "--mode",
        "all",
        "--max-examples",
        str(EXAMPLES_PER_OPERATION),
        "--seed",
        str(SEED),
        "--no-color",
    ]
    finished = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    report = finished.stdout + finished.stderr
    assert finished.returncode == 0, report[-12000:]
    assert f"Tested: {operations}" in report, report[-3000:]
    assert "Stateful" in report and "❌" not in report, report[-3000:]
