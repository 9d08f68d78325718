"""Shared fixtures: a pipelines directory with test pipelines, and an in-process app."""

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

os.environ["HAYSTACK_TELEMETRY_ENABLED"] = "False"

from hayhooks.http.app import create_app  # noqa: E402
from hayhooks.settings import Settings  # noqa: E402
from tests.helpers import pipelines as samples  # noqa: E402


@pytest.fixture
def pipelines_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "pipelines"
    folder.mkdir()
    return folder


@pytest.fixture
def make_client(tmp_path: Path, pipelines_dir: Path):
    """Start the app in-process over ``pipelines_dir``; extra settings as keyword arguments."""
    clients: list[TestClient] = []

    def start(**overrides) -> TestClient:
        settings = Settings(pipelines_dir=pipelines_dir, runtime_dir=tmp_path / "runtime", watch=False, **overrides)
        client = TestClient(create_app(settings), raise_server_exceptions=False)
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client, pipelines_dir: Path) -> Iterator[TestClient]:
    samples.write_wrapper(pipelines_dir, "greet", samples.GREET)
    samples.write_yaml(pipelines_dir, "prompt", samples.PROMPT_YAML)
    return make_client()
