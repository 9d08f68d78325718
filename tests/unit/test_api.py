"""The HTTP API of one worker, end to end through the ASGI app: what a client sees."""

import os
from pathlib import Path

import pytest

from tests.helpers import pipelines as samples


def test_wrapper_runs_with_sibling_imports_and_files(client):
    response = client.post("/greet/run", json={"name": "Ada", "excited": True})
    assert response.status_code == 200
    assert response.json() == {"result": "Hello, Ada!"}
    assert len(response.headers["x-hayhooks-revision"]) == 12
    assert response.headers["x-hayhooks-worker"] == str(os.getpid())


def test_wrapper_defaults_apply(client):
    assert client.post("/greet/run", json={"name": "Bo"}).json() == {"result": "Hello, Bo."}


def test_yaml_pipeline_maps_declared_inputs_and_outputs(client):
    response = client.post("/prompt/run", json={"query": "why?", "topic": "sky"})
    assert response.status_code == 200
    assert response.json() == {"result": {"builder": {"prompt": "Question about sky: why?"}}}


def test_async_wrapper_is_awaited(make_client, pipelines_dir):
    samples.write_wrapper(pipelines_dir, "adder", samples.ASYNC)
    client = make_client()
    assert client.post("/adder/run", json={"numbers": [1, 2, 3]}).json() == {"result": 6}


def test_wrong_types_answer_422_naming_the_field(client):
    response = client.post("/greet/run", json={"name": "Ada", "excited": "very"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "excited"]
    missing = client.post("/prompt/run", json={"query": "q"})
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["body", "topic"]


def test_malformed_json_answers_422(client):
    response = client.post("/greet/run", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_unknown_pipeline_answers_404(client):
    assert client.post("/nope/run", json={}).status_code == 404
    assert client.get("/status/nope").status_code == 404


def test_exception_in_pipeline_is_500_with_message_and_server_keeps_serving(make_client, pipelines_dir):
    samples.write_wrapper(pipelines_dir, "boom", samples.RAISES)
    samples.write_wrapper(pipelines_dir, "greet", samples.GREET)
    client = make_client()
    response = client.post("/boom/run", json={"value": 3})
    assert response.status_code == 500
    assert "cannot handle 3" in response.json()["detail"]
    assert "Traceback" not in response.json()["detail"]
    assert client.post("/greet/run", json={"name": "x"}).status_code == 200


def test_tracebacks_only_when_enabled(make_client, pipelines_dir):
    samples.write_wrapper(pipelines_dir, "boom", samples.RAISES)
    client = make_client(show_tracebacks=True)
    assert "Traceback" in client.post("/boom/run", json={"value": 1}).json()["detail"]


def test_status_lists_served_and_failed_pipelines(make_client, pipelines_dir):
    samples.write_wrapper(pipelines_dir, "greet", samples.GREET)
    samples.write_wrapper(pipelines_dir, "broken", samples.SETUP_FAILS)
    samples.write_wrapper(pipelines_dir, "norun", samples.NO_RUN_METHOD)
    (pipelines_dir / "empty").mkdir()
    client = make_client()
    body = client.get("/status").json()
    assert body["status"] == "Up!"
    assert body["pipelines"] == ["greet"]
    details = {item["name"]: item for item in body["details"]}
    assert details["greet"]["state"] == "ready"
    assert details["broken"]["state"] == "failed"
    assert "no index available" in details["broken"]["error"]
    assert "none of run_api, run_chat_completion and run_response" in details["norun"]["error"]
    assert "no pipeline_wrapper.py" in details["empty"]["error"]
    one = client.get("/status/greet").json()
    assert one["status"] == "Up!" and one["pipeline"] == "greet"
    assert client.get("/status/broken").json()["status"] == "Failed"


def test_debris_in_the_directory_is_ignored(make_client, pipelines_dir):
    samples.write_wrapper(pipelines_dir, "greet", samples.GREET)
    (pipelines_dir / "__pycache__").mkdir()
    (pipelines_dir / ".hidden").mkdir()
    (pipelines_dir / "notes.txt~").write_text("x")
    (pipelines_dir / "greet" / "helpers.py~").write_text("garbage")
    (pipelines_dir / "README.md").write_text("not a pipeline")
    client = make_client()
    body = client.get("/status").json()
    assert [item["name"] for item in body["details"]] == ["greet"]


def test_openapi_describes_every_pipeline_and_follows_deploys(client):
    schema = client.get("/openapi.json").json()
    assert "/greet/run" in schema["paths"] and "/prompt/run" in schema["paths"]
    request = schema["components"]["schemas"]["greetRunRequest"]
    assert request["required"] == ["name"]
    assert request["properties"]["name"]["description"] == "Who to greet."
    assert request["properties"]["excited"]["default"] is False
    assert schema["components"]["schemas"]["greetRunResponse"]["properties"]["result"]["description"] == "The greeting."
    files = samples.wrapper_files(samples.ASYNC)
    assert client.post("/deploy_files", json={"name": "adder", "files": files}).status_code == 200
    assert "/adder/run" in client.get("/openapi.json").json()["paths"]
    assert client.post("/undeploy/adder").status_code == 200
    assert "/adder/run" not in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200


# --- deploys -------------------------------------------------------------------------------------


def test_deploy_files_writes_the_directory_and_serves(client, pipelines_dir):
    files = samples.wrapper_files(samples.GREET)
    response = client.post("/deploy_files", json={"name": "greet2", "files": files})
    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True and body["endpoint"] == "/greet2/run"
    assert (pipelines_dir / "greet2" / "helpers.py").read_text() == files["helpers.py"]
    run = client.post("/greet2/run", json={"name": "Cy"})
    assert run.json() == {"result": "Hello, Cy."}
    assert run.headers["x-hayhooks-revision"] == body["revision"]


def test_deploy_files_alias_and_overwrite(client, pipelines_dir):
    files = samples.wrapper_files(samples.GREET)
    assert client.post("/deploy-files", json={"name": "greet", "files": files}).status_code == 409
    files["greeting.txt"] = "Howdy"
    response = client.post("/deploy-files", json={"name": "greet", "files": files, "overwrite": True})
    assert response.status_code == 200
    assert client.post("/greet/run", json={"name": "Di"}).json() == {"result": "Howdy, Di."}
    assert not any(p.name.startswith(".") and "greet" in p.name for p in pipelines_dir.iterdir())


def test_deploy_yaml_and_legacy_deploy(client, pipelines_dir):
    response = client.post(
        "/deploy-yaml", json={"name": "p2", "source_code": samples.PROMPT_YAML, "description": "Mine"}
    )
    assert response.status_code == 200
    assert (pipelines_dir / "p2.yml").exists()
    assert client.post("/p2/run", json={"query": "a", "topic": "b"}).json() == {
        "result": {"builder": {"prompt": "Question about b: a"}}
    }
    assert client.get("/status/p2").json()["details"]["description"] == "Mine"
    assert client.post("/deploy-yaml", json={"name": "p2", "source_code": samples.PROMPT_YAML}).status_code == 409
    assert client.post("/deploy", json={"name": "p3", "source_code": samples.PROMPT_YAML}).status_code == 200
    assert client.post("/p3/run", json={"query": "a", "topic": "b"}).status_code == 200


def test_deploy_without_wrapper_is_422_and_writes_nothing(client, pipelines_dir):
    before = sorted(p.name for p in pipelines_dir.iterdir())
    response = client.post("/deploy_files", json={"name": "x", "files": {"helpers.py": "x = 1"}})
    assert response.status_code == 422
    assert "pipeline_wrapper.py" in response.json()["detail"]
    assert sorted(p.name for p in pipelines_dir.iterdir()) == before


@pytest.mark.parametrize("name", ["../evil", "a/b", "", "x" * 65, "sp ace", ".hidden", "ünï"])
def test_invalid_names_are_rejected_with_nothing_written(client, pipelines_dir, name):
    before = sorted(p.name for p in pipelines_dir.iterdir())
    files = samples.wrapper_files(samples.GREET)
    assert 400 <= client.post("/deploy_files", json={"name": name, "files": files}).status_code < 500
    yaml_response = client.post("/deploy-yaml", json={"name": name, "source_code": samples.PROMPT_YAML})
    assert 400 <= yaml_response.status_code < 500
    assert sorted(p.name for p in pipelines_dir.iterdir()) == before


@pytest.mark.parametrize("file_name", ["/etc/passwd", "../escape.py", "a/../../b.py", "sub\\x.py", ".env", "a//b"])
def test_escaping_file_names_are_rejected_with_nothing_written(client, pipelines_dir, file_name):
    def written() -> list[str]:
        """Everything around and in the pipelines directory, but the runtime folder the worker keeps writing."""
        runtime = pipelines_dir.parent / "runtime"
        return sorted(str(p) for p in pipelines_dir.parent.rglob("*") if not p.is_relative_to(runtime))

    before = written()
    files = {**samples.wrapper_files(samples.GREET), file_name: "x"}
    response = client.post("/deploy_files", json={"name": "evil", "files": files})
    assert response.status_code == 422
    assert written() == before


@pytest.mark.parametrize(
    ("code", "message"),
    [
        (samples.SYNTAX_ERROR, "SyntaxError"),
        (samples.IMPORT_ERROR, "module_that_does_not_exist"),
        (samples.SETUP_FAILS, "no index available"),
        (samples.NO_RUN_METHOD, "none of run_api, run_chat_completion and run_response"),
    ],
)
def test_deploy_that_fails_to_load_is_rejected_and_leaves_no_trace(client, pipelines_dir, code, message):
    before = sorted(str(p) for p in pipelines_dir.rglob("*"))
    response = client.post("/deploy_files", json={"name": "bad", "files": {"pipeline_wrapper.py": code}})
    assert response.status_code == 422
    assert message in response.json()["detail"]
    assert sorted(str(p) for p in pipelines_dir.rglob("*")) == before
    assert client.post("/bad/run", json={}).status_code == 404


def test_failed_overwrite_keeps_the_old_revision(client, pipelines_dir):
    old = (pipelines_dir / "greet" / "pipeline_wrapper.py").read_text()
    response = client.post(
        "/deploy_files",
        json={"name": "greet", "files": {"pipeline_wrapper.py": samples.SETUP_FAILS}, "overwrite": True},
    )
    assert response.status_code == 422
    assert (pipelines_dir / "greet" / "pipeline_wrapper.py").read_text() == old
    assert client.post("/greet/run", json={"name": "Ed"}).json() == {"result": "Hello, Ed."}


def test_invalid_yaml_is_rejected(client, pipelines_dir):
    cases = {
        "not: [valid": "Invalid YAML",
        "- a list": "must be a mapping",
        "components: {}\nconnections: []\n": "at least one of 'inputs' or 'outputs'",
        samples.PROMPT_YAML.replace("builder.query", "builder.nothing"): "builder.nothing",
        samples.PROMPT_YAML.replace("PromptBuilder", "NoSuchBuilder"): "NoSuchBuilder",
    }
    for source, message in cases.items():
        response = client.post("/deploy-yaml", json={"name": "bad", "source_code": source})
        assert response.status_code == 422, source
        assert message in response.json()["detail"], response.json()
    assert not (pipelines_dir / "bad.yml").exists()


def test_yaml_outside_the_deserialization_allowlist_is_refused(client, pipelines_dir):
    source = samples.PROMPT_YAML.replace("haystack.components.builders.prompt_builder.PromptBuilder", "os.system")
    response = client.post("/deploy-yaml", json={"name": "evil", "source_code": source})
    assert response.status_code == 422
    assert "allowlist" in response.json()["detail"]
    assert not (pipelines_dir / "evil.yml").exists()


def test_save_files_false_is_refused_with_a_reason(client):
    files = samples.wrapper_files(samples.GREET)
    response = client.post("/deploy_files", json={"name": "g3", "files": files, "save_files": False})
    assert response.status_code == 422
    assert "pipelines directory" in response.json()["detail"]


def test_undeploy_removes_files_and_route(client, pipelines_dir):
    assert client.post("/undeploy/greet").json() == {
        "success": True,
        "name": "greet",
        "converged": None,
        "workers": None,
        "lagging": None,
    }
    assert not (pipelines_dir / "greet").exists()
    assert client.post("/greet/run", json={"name": "x"}).status_code == 404
    assert client.post("/undeploy/greet").status_code == 404
    assert client.post("/undeploy/..").status_code in (404, 422)


def test_wait_reports_convergence_of_this_single_worker(client):
    files = samples.wrapper_files(samples.GREET)
    body = client.post("/deploy_files", json={"name": "g4", "files": files, "wait": True}).json()
    assert body["converged"] is True and body["lagging"] == []
    assert body["workers"] == [os.getpid()]


def test_health_and_ready(client):
    assert client.get("/health").json() == {"status": "ok"}
    ready = client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["pipelines"] == ["greet", "prompt"]


def test_additional_python_path(make_client, pipelines_dir, tmp_path: Path):
    library = tmp_path / "lib"
    library.mkdir()
    (library / "shared_tools.py").write_text("def shout(s):\n    return s.upper()\n")
    code = (
        "from hayhooks import BasePipelineWrapper\nfrom shared_tools import shout\n\n"
        "class PipelineWrapper(BasePipelineWrapper):\n    def setup(self):\n        pass\n\n"
        "    def run_api(self, text: str) -> str:\n        return shout(text)\n"
    )
    samples.write_wrapper(pipelines_dir, "loud", code, files={})
    client = make_client(additional_python_path=str(library))
    assert client.post("/loud/run", json={"text": "hi"}).json() == {"result": "HI"}
