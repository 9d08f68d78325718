"""Whose fault a failed run is, as the client sees it: 500 ``PIPELINE_FAILED`` when the pipeline's own code
raised, 500 ``SERVER_BUG`` (logged as a bug) when hayhooks did, and the pipeline's own answer when it raised
an ``HTTPException``."""

import logging
from pathlib import Path

import pytest

from hayhooks.http.routes.run import PIPELINE_FAILED, SERVER_BUG
from hayhooks.pipelines import loader
from tests.helpers import pipelines as samples

RAISES_HTTP_EXCEPTION = """
from fastapi import HTTPException

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self) -> str:
        raise HTTPException(status_code=418, detail="no coffee here")
"""

RAISES_TIMEOUT_ERROR = """
from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self) -> str:
        raise TimeoutError("the index did not answer")
"""

DIVIDES_BY_ZERO_YAML = """
description: A prompt whose template divides by zero when it is rendered.
components:
  builder:
    type: haystack.components.builders.prompt_builder.PromptBuilder
    init_parameters:
      template: "{{ (query | length) // 0 }}"
connections: []
inputs:
  query: builder.query
outputs:
  prompt: builder.prompt
"""


def bugs(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.getMessage().startswith("BUG in hayhooks")]


def test_a_wrapper_whose_run_api_raises_answers_500_pipeline_failed(
    make_client, pipelines_dir: Path, caplog: pytest.LogCaptureFixture
):
    samples.write_wrapper(pipelines_dir, "boom", samples.RAISES)
    response = make_client().post("/boom/run", json={"value": 3})
    assert (response.status_code, response.json()) == (500, {"detail": f"{PIPELINE_FAILED} cannot handle 3"})
    assert bugs(caplog) == []


def test_a_yaml_pipeline_whose_component_raises_answers_500_pipeline_failed(
    make_client, pipelines_dir: Path, caplog: pytest.LogCaptureFixture
):
    samples.write_yaml(pipelines_dir, "divide", DIVIDES_BY_ZERO_YAML)
    response = make_client().post("/divide/run", json={"query": "q"})
    assert response.status_code == 500
    assert response.json()["detail"].startswith(PIPELINE_FAILED)
    assert "division or modulo by zero" in response.json()["detail"]
    assert bugs(caplog) == []


def test_a_bug_of_hayhooks_after_a_yaml_run_answers_500_server_bug_and_is_logged_as_one(
    make_client, pipelines_dir: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    """The pipeline ran fine; mapping its outputs to the named result (hayhooks' code) raises."""
    samples.write_yaml(pipelines_dir, "prompt", samples.PROMPT_YAML)
    client = make_client(yaml_result="outputs")
    split = loader._split

    def split_failing_on_the_output(path: str) -> tuple[str, str]:
        if path == "builder.prompt":  # PROMPT_YAML's only output: split only after pipeline.run
            raise KeyError(path)
        return split(path)

    monkeypatch.setattr(loader, "_split", split_failing_on_the_output)
    response = client.post("/prompt/run", json={"query": "q", "topic": "t"})
    assert (response.status_code, response.json()) == (500, {"detail": SERVER_BUG})
    assert PIPELINE_FAILED not in response.text
    (bug,) = bugs(caplog)
    assert bug.levelno == logging.ERROR and bug.exc_info is not None and bug.exc_info[0] is KeyError


def test_an_http_exception_of_run_api_passes_through_with_its_own_status(make_client, pipelines_dir: Path):
    samples.write_wrapper(pipelines_dir, "teapot", RAISES_HTTP_EXCEPTION)
    response = make_client().post("/teapot/run", json={})
    assert (response.status_code, response.json()) == (418, {"detail": "no coffee here"})


def test_a_timeout_error_the_pipeline_raises_answers_500_pipeline_failed_not_504(make_client, pipelines_dir: Path):
    samples.write_wrapper(pipelines_dir, "slow_index", RAISES_TIMEOUT_ERROR)
    response = make_client(run_timeout=30).post("/slow_index/run", json={})
    assert (response.status_code, response.json()) == (500, {"detail": f"{PIPELINE_FAILED} the index did not answer"})
