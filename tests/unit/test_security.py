"""Who may deploy and run, limits on request bodies, and what error messages reveal: in-process."""

from pathlib import Path

import pytest

from hayhooks.http.security import open_deploy_warning
from hayhooks.settings import Settings
from tests.helpers import pipelines as samples

ADMIN = {"Authorization": "Bearer admin-secret"}
API = {"Authorization": "Bearer api-secret"}


@pytest.fixture
def guarded(make_client, pipelines_dir: Path):
    samples.write_wrapper(pipelines_dir, "greet", samples.GREET)
    return make_client(admin_token="admin-secret")


def deploy(client, headers=None, name="g2"):
    files = samples.wrapper_files(samples.GREET)
    return client.post("/deploy_files", json={"name": name, "files": files}, headers=headers or {})


def test_admin_token_guards_deploy_and_undeploy(guarded, pipelines_dir: Path):
    missing = deploy(guarded)
    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert deploy(guarded, {"Authorization": "Bearer wrong"}).status_code == 401
    assert deploy(guarded, {"Authorization": "admin-secret"}).status_code == 401
    assert not (pipelines_dir / "g2").exists()
    assert deploy(guarded, ADMIN).status_code == 200
    assert guarded.post("/undeploy/g2").status_code == 401
    assert guarded.post("/deploy-yaml", json={"name": "y", "source_code": samples.PROMPT_YAML}).status_code == 401
    assert guarded.post("/undeploy/g2", headers=ADMIN).status_code == 200


def test_running_stays_open_without_an_api_token(guarded):
    assert guarded.post("/greet/run", json={"name": "x"}).status_code == 200


def test_api_token_guards_runs_and_accepts_the_admin_token(make_client, pipelines_dir: Path):
    samples.write_wrapper(pipelines_dir, "greet", samples.GREET)
    client = make_client(admin_token="admin-secret", api_token="api-secret")
    assert client.post("/greet/run", json={"name": "x"}).status_code == 401
    assert client.post("/greet/run", json={"name": "x"}, headers=API).status_code == 200
    assert client.post("/greet/run", json={"name": "x"}, headers=ADMIN).status_code == 200
    assert deploy(client, API).status_code == 401  # the API token does not deploy
    assert client.get("/health").status_code == 200
    schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
    assert schemes["HTTPBearer"]["scheme"] == "bearer"


def test_deploy_api_can_be_turned_off(make_client, pipelines_dir: Path):
    samples.write_wrapper(pipelines_dir, "greet", samples.GREET)
    client = make_client(deploy_api=False)
    assert deploy(client).status_code == 404
    assert client.post("/undeploy/greet").status_code == 404
    assert "/deploy_files" not in client.get("/openapi.json").json()["paths"]
    assert client.post("/greet/run", json={"name": "x"}).status_code == 200


def test_request_bodies_over_the_limit_answer_413(make_client, pipelines_dir: Path):
    samples.write_wrapper(pipelines_dir, "greet", samples.GREET)
    client = make_client(max_body_bytes=4096)
    big = {"name": "x" * 10_000}
    assert client.post("/greet/run", json=big).status_code == 413

    def chunks():
        yield b'{"name": "'
        for _ in range(10):
            yield b"x" * 1000
        yield b'"}'

    streamed = client.post("/greet/run", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413
    assert deploy(client).status_code == 200  # a pipeline well under the limit still deploys
    assert client.post("/greet/run", json={"name": "x"}).status_code == 200


def test_errors_do_not_reveal_server_paths(make_client, pipelines_dir: Path):
    client = make_client()
    response = client.post("/deploy_files", json={"name": "bad", "files": {"pipeline_wrapper.py": "x = ("}})
    assert response.status_code == 422
    assert str(pipelines_dir) not in response.json()["detail"]
    assert "pipeline_wrapper.py" in response.json()["detail"]
    code = (
        "from hayhooks import BasePipelineWrapper\n\nclass PipelineWrapper(BasePipelineWrapper):\n"
        "    def setup(self):\n        pass\n\n    def run_api(self) -> str:\n"
        f"        return open({str(pipelines_dir / 'secret.txt')!r}).read()\n"
    )
    samples.write_wrapper(pipelines_dir, "leaky", code, files={})
    client = make_client()
    failed = client.post("/leaky/run", json={})
    assert failed.status_code == 500
    assert str(pipelines_dir) not in failed.json()["detail"] and "secret.txt" in failed.json()["detail"]
    assert "Traceback" not in failed.json()["detail"]


def test_open_deploy_warning_only_for_unguarded_non_loopback_binds():
    assert open_deploy_warning(Settings(host="0.0.0.0")) is not None
    assert "HAYHOOKS_ADMIN_TOKEN" in open_deploy_warning(Settings(host="10.1.2.3"))
    assert open_deploy_warning(Settings(host="0.0.0.0", admin_token="t")) is None
    assert open_deploy_warning(Settings(host="0.0.0.0", deploy_api=False)) is None
    for loopback in ("localhost", "127.0.0.1", "::1", "[::1]"):
        assert open_deploy_warning(Settings(host=loopback)) is None
