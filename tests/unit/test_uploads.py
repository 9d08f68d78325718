"""``/NAME/run`` with a form body: files, typed fields, 422s, limits, and the form in ``/docs``."""

import hashlib
import json
from pathlib import Path

import pytest

from tests.helpers import pipelines as samples


@pytest.fixture
def client(make_client, pipelines_dir: Path):
    samples.write_wrapper(pipelines_dir, "uploads", samples.UPLOADS)
    samples.write_wrapper(pipelines_dir, "one_file", samples.ONE_FILE)
    samples.write_wrapper(pipelines_dir, "answers", samples.FILE_ANSWERS, samples.FILE_ANSWERS_FILES)
    return make_client(max_upload_bytes=64 * 1024)


def test_files_and_typed_fields_arrive_converted(client):
    files = [("files", ("a.txt", b"alpha", "text/plain")), ("files", ("b.bin", b"\x00\x01", "image/x-raw"))]
    data = {"count": "3", "excited": "True", "tags": ["x", "y"], "meta": '{"source": "scan", "pages": 2}'}
    answer = client.post("/uploads/run", data=data, files=files)
    assert answer.status_code == 200, answer.text
    result = answer.json()["result"]
    assert result["count"] == 3 and result["excited"] is True and result["tags"] == ["x", "y"]
    assert result["meta"] == {"source": "scan", "pages": 2}
    assert [(f["filename"], f["size"], f["content_type"]) for f in result["files"]] == [
        ("a.txt", 5, "text/plain"),
        ("b.bin", 2, "image/x-raw"),
    ]
    assert result["files"][0]["sha256"] == hashlib.sha256(b"alpha").hexdigest()


def test_a_list_may_come_as_one_json_array_and_text_stays_text(client):
    data = {"count": "1", "tags": '["p", "q"]', "label": "007"}
    answer = client.post("/uploads/run", data=data, files=[("files", ("a.txt", b"x", "text/plain"))])
    assert answer.json()["result"]["tags"] == ["p", "q"]
    assert answer.json()["result"]["label"] == "007"


def test_a_field_that_does_not_convert_answers_422_naming_it(client):
    answer = client.post("/uploads/run", data={"count": "many"}, files=[("files", ("a.txt", b"x", "text/plain"))])
    assert answer.status_code == 422
    assert [problem["loc"] for problem in answer.json()["detail"]] == [["body", "count"]]
    bad_meta = client.post("/uploads/run", data={"count": "1", "meta": "{oops"}, files=[("files", ("a", b"x"))])
    assert bad_meta.status_code == 422 and bad_meta.json()["detail"][0]["loc"] == ["body", "meta"]
    missing = client.post("/uploads/run", data={"excited": "yes"}, files=[("files", ("a", b"x"))])
    assert missing.status_code == 422 and missing.json()["detail"][0]["loc"] == ["body", "count"]
    text_for_file = client.post("/uploads/run", data={"count": "1", "files": "not a file"})
    assert text_for_file.status_code == 422 and text_for_file.json()["detail"][0]["loc"] == ["body", "files"]


def test_empty_form_inputs_count_as_not_sent(client):
    """What a browser form (Swagger's "Try it out") sends for untouched inputs."""
    files = [("files", ("", b"", "application/octet-stream"))]
    answer = client.post("/uploads/run", data={"count": "2", "label": "", "tags": ""}, files=files)
    assert answer.status_code == 200, answer.text
    assert answer.json()["result"]["files"] == [] and answer.json()["result"]["tags"] == []


def test_json_bodies_keep_working_when_no_file_is_sent(client):
    answer = client.post("/uploads/run", json={"count": 4, "tags": ["j"]})
    assert answer.status_code == 200
    assert answer.json()["result"]["files"] == [] and answer.json()["result"]["count"] == 4
    required = client.post("/one_file/run", json={})
    assert required.status_code == 422 and required.json()["detail"][0]["loc"] == ["body", "file"]


def test_a_single_required_file(client):
    assert client.post("/one_file/run", files={"file": ("a.txt", b"shout")}).json() == {"result": "SHOUT"}
    two = client.post("/one_file/run", files=[("file", ("a", b"x")), ("file", ("b", b"y"))])
    assert two.status_code == 422
    assert client.post("/one_file/run", data={"other": "x"}).status_code == 422


def test_an_upload_over_the_limit_answers_413(client):
    big = [("files", ("big.bin", b"x" * 100_000, "application/octet-stream"))]
    answer = client.post("/uploads/run", data={"count": "1"}, files=big)
    assert answer.status_code == 413
    assert client.post("/uploads/run", data={"count": "1"}, files=[("files", ("a", b"x"))]).status_code == 200


def test_the_upload_limit_is_not_the_json_limit(make_client, pipelines_dir: Path):
    samples.write_wrapper(pipelines_dir, "uploads", samples.UPLOADS)
    client = make_client(max_body_bytes=4096, max_upload_bytes=1024 * 1024)
    files = [("files", ("big.bin", b"x" * 200_000))]
    answer = client.post("/uploads/run", data={"count": "1"}, files=files)
    assert answer.status_code == 200 and answer.json()["result"]["files"][0]["size"] == 200_000
    assert client.post("/uploads/run", json={"count": 1, "label": "x" * 10_000}).status_code == 413


def test_returned_responses_pass_through_with_their_headers(client):
    file = client.post("/answers/run", json={"kind": "file"})
    assert file.status_code == 200 and file.text == "name,value\nalpha,1\n"
    assert file.headers["content-type"].startswith("text/csv")
    assert 'filename="report.csv"' in file.headers["content-disposition"]
    assert file.headers["x-hayhooks-revision"]
    stream = client.post("/answers/run", json={"kind": "stream"})
    assert stream.text == "a,b,c" and stream.headers["x-kind"] == "stream"
    raw = client.post("/answers/run", json={"kind": "bytes"})
    assert raw.content == b"\x89PNG\r\n" and raw.headers["content-type"] == "image/png"


def test_docs_show_the_form_next_to_the_json_body(client):
    operation = client.get("/openapi.json").json()["paths"]["/uploads/run"]["post"]
    content = operation["requestBody"]["content"]
    assert set(content) == {"application/json", "multipart/form-data"}
    form = content["multipart/form-data"]["schema"]
    assert form["properties"]["files"] == {
        "type": "array",
        "items": {"type": "string", "format": "binary"},
        "description": "The documents to describe.",
    }
    assert form["properties"]["count"]["type"] == "integer" and form["required"] == ["count"]
    assert form["properties"]["meta"]["type"] == "string"  # structured: typed as JSON text
    assert "$ref" not in json.dumps(form)
    assert "413" in operation["responses"]
    assert "files" not in json.dumps(content["application/json"])
