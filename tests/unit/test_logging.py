"""Logs ops can use, in-process: one format for every logger, request ids, access lines."""

import io
import json
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import pydantic
import pytest

from hayhooks.logs import REQUEST_ID, build_handler
from hayhooks.settings import Settings
from tests.helpers import pipelines as samples

LOGS_FROM_RUN_API = """
import logging

from hayhooks import BasePipelineWrapper


class PipelineWrapper(BasePipelineWrapper):
    def setup(self) -> None:
        self.pipeline = None

    def run_api(self, text: str) -> str:
        logging.getLogger("user").info("handling %s", text)
        return text
"""

JsonLines = Callable[[], list[dict]]


def logger_writing(log_format: Literal["text", "json"]) -> tuple[logging.Logger, io.StringIO]:
    """A fresh logger (outside the hierarchy) with hayhooks' handler, and what that handler writes."""
    stream = io.StringIO()
    logger = logging.Logger("test.logs")
    logger.addHandler(build_handler(log_format, stream))
    return logger, stream


# --- formatters -------------------------------------------------------------------------------------


def test_json_line_has_the_fixed_keys_extra_fields_and_request_id():
    logger, stream = logger_writing("json")
    token = REQUEST_ID.set("req-1")
    try:
        logger.info("loaded %s", "x", extra={"pipeline": "p", "load_seconds": 0.5})
    finally:
        REQUEST_ID.reset(token)
    line = stream.getvalue()
    assert line.endswith("\n") and line.count("\n") == 1
    entry = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", entry.pop("time"))
    assert entry == {
        "level": "INFO",
        "pid": entry["pid"],
        "logger": "test.logs",
        "message": "loaded x",
        "pipeline": "p",
        "load_seconds": 0.5,
        "request_id": "req-1",
    }


def test_json_line_carries_the_traceback_as_one_string():
    logger, stream = logger_writing("json")
    try:
        raise ValueError("bad input")
    except ValueError:
        logger.exception("run failed")
    (line,) = stream.getvalue().splitlines()
    entry = json.loads(line)
    assert entry["level"] == "ERROR" and entry["message"] == "run failed"
    assert "ValueError: bad input" in entry["exception"] and "Traceback" in entry["exception"]
    assert "request_id" not in entry  # outside a request there is none


def test_text_line_has_pid_and_request_fields():
    logger, stream = logger_writing("text")
    logger.info("done", extra={"request_id": "r1", "pipeline": "p", "duration_ms": 1.5})
    assert f" INFO [{os.getpid()}] test.logs: done request_id=r1 pipeline=p duration_ms=1.5\n" in stream.getvalue()


def test_log_settings_are_validated():
    assert Settings(log_level="debug").log_level == "DEBUG"
    with pytest.raises(pydantic.ValidationError):
        Settings(log_level="LOUD")
    with pytest.raises(pydantic.ValidationError):
        Settings(log_format="xml")


# --- one worker in-process --------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def access_log_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """The access log is off by default; these tests are about what it writes when it is on."""
    monkeypatch.setenv("HAYHOOKS_ACCESS_LOG", "true")


@pytest.fixture
def json_lines(caplog: pytest.LogCaptureFixture) -> Iterator[JsonLines]:
    """The JSON lines hayhooks' handler writes while the test runs, as dicts.

    Under pytest the root logger already has handlers, so ``create_app`` leaves them alone; this adds
    the handler gunicorn and ``hayhooks run`` would use.
    """
    caplog.set_level(logging.INFO)
    stream = io.StringIO()
    handler = build_handler("json", stream)
    logging.getLogger().addHandler(handler)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logging.getLogger().removeHandler(handler)


def access_lines(entries: list[dict]) -> list[dict]:
    return [entry for entry in entries if entry["logger"] == "hayhooks.access"]


def test_request_id_round_trips_and_is_on_the_access_line(client, json_lines: JsonLines):
    response = client.post("/greet/run", json={"name": "Ada"}, headers={"X-Request-ID": "abc123"})
    assert response.status_code == 200
    assert response.headers["x-request-id"] == "abc123"
    (line,) = [entry for entry in access_lines(json_lines()) if entry.get("request_id") == "abc123"]
    assert line["pipeline"] == "greet"
    assert line["status"] == 200
    assert line["method"] == "POST" and line["path"] == "/greet/run"
    assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
    assert line["level"] == "INFO" and line["client"]


def test_missing_or_invalid_request_ids_are_replaced_by_generated_ones(client, json_lines: JsonLines):
    sent = [None, "x" * 129, "two\nlines", "tab\there", ""]
    answered = []
    for request_id in sent:
        headers = {} if request_id is None else {"X-Request-ID": request_id}
        answered.append(client.post("/greet/run", json={"name": "Ada"}, headers=headers).headers["x-request-id"])
    assert all(re.fullmatch(r"[0-9a-f]{32}", request_id) for request_id in answered)
    assert len(set(answered)) == len(sent)
    assert [line["request_id"] for line in access_lines(json_lines())] == answered
    longest = "id-" + "9" * 125
    assert client.get("/status", headers={"X-Request-ID": longest}).headers["x-request-id"] == longest


def test_logs_from_run_api_carry_the_request_id(make_client, pipelines_dir: Path, json_lines: JsonLines):
    samples.write_wrapper(pipelines_dir, "chatty", LOGS_FROM_RUN_API)
    client = make_client()
    response = client.post("/chatty/run", json={"text": "hi"}, headers={"X-Request-ID": "from-user-code"})
    assert response.json() == {"result": "hi"}
    (line,) = [entry for entry in json_lines() if entry["logger"] == "user"]
    assert line["message"] == "handling hi"
    assert line["request_id"] == "from-user-code"


def test_a_failed_run_logs_its_traceback_with_the_request_id(make_client, pipelines_dir: Path, json_lines):
    samples.write_wrapper(pipelines_dir, "boom", samples.RAISES)
    client = make_client()
    assert client.post("/boom/run", json={"value": 3}, headers={"X-Request-ID": "r-500"}).status_code == 500
    (error,) = [entry for entry in json_lines() if entry["logger"] == "hayhooks.run"]
    assert error["request_id"] == "r-500" and "cannot handle 3" in error["exception"]
    (access,) = access_lines(json_lines())
    assert (access["status"], access["pipeline"], access["request_id"]) == (500, "boom", "r-500")


def test_unknown_pipelines_are_named_and_probes_log_at_debug(make_client, json_lines: JsonLines):
    client = make_client(log_level="DEBUG")
    client.post("/nope/run", json={})
    client.get("/health")
    client.get("/status")
    lines = {line["path"]: line for line in access_lines(json_lines())}
    assert (lines["/nope/run"]["status"], lines["/nope/run"]["pipeline"]) == (404, "nope")
    assert lines["/health"]["level"] == "DEBUG" and "pipeline" not in lines["/health"]
    assert lines["/status"]["level"] == "INFO"


def test_probes_are_not_logged_at_info(make_client, json_lines: JsonLines):
    make_client().get("/ready")
    assert access_lines(json_lines()) == []


def test_access_log_off_logs_no_access_lines_but_keeps_request_ids(make_client, json_lines: JsonLines):
    quiet = make_client(access_log=False)
    assert quiet.get("/status", headers={"X-Request-ID": "q"}).headers["x-request-id"] == "q"
    assert access_lines(json_lines()) == []


def test_the_published_log_object_formats_braces_and_binds_fields(caplog: pytest.LogCaptureFixture):
    """Wrappers written for the published Hayhooks log with loguru-style calls: they work here."""
    from hayhooks import log

    with caplog.at_level(logging.DEBUG, logger="hayhooks.pipelines"):
        log.info("loaded {} documents from {source}", 3, source="disk")
        log.bind(step="index").opt(colors=True).success("done")
        log.trace("detail {}", "x")
    first, second, third = caplog.records
    assert first.getMessage() == "loaded 3 documents from disk" and first.levelno == logging.INFO
    assert second.getMessage() == "done" and second.step == "index"
    assert third.levelno == logging.DEBUG and first.filename == "test_logging.py"
