"""MCP in one process: what is a tool, the switch, the token, and skip_mcp stored with a YAML deploy."""

from pathlib import Path

from hayhooks.pipelines.loader import parse_yaml_definition
from tests.helpers import pipelines as samples
from tests.helpers.mcp_requests import MCP_HEADERS, TOOLS_LIST


def test_tools_list_over_stateless_json_needs_no_session(make_client, pipelines_dir: Path):
    samples.write_wrapper(pipelines_dir, "whoami", samples.WHOAMI)
    samples.write_wrapper(pipelines_dir, "hidden", samples.HIDDEN_FROM_MCP)
    samples.write_wrapper(pipelines_dir, "reader", samples.FILE_READER)  # no run_api: no tool
    answer = make_client(mcp_json_response=True).post("/mcp", json=TOOLS_LIST, headers=MCP_HEADERS)
    assert answer.status_code == 200, answer.text
    names = [tool["name"] for tool in answer.json()["result"]["tools"]]
    assert names[-1] == "whoami" and "hidden" not in names and "reader" not in names


def test_without_the_deploy_api_there_are_no_deploy_tools(make_client, pipelines_dir: Path):
    answer = make_client(mcp_json_response=True, deploy_api=False).post("/mcp", json=TOOLS_LIST, headers=MCP_HEADERS)
    names = {tool["name"] for tool in answer.json()["result"]["tools"]}
    assert names == {"get_all_pipeline_statuses", "get_pipeline_status"}


def test_mcp_can_be_turned_off(make_client):
    client = make_client(mcp=False)
    assert client.post("/mcp", json=TOOLS_LIST, headers=MCP_HEADERS).status_code == 404
    assert client.get("/sse").status_code == 404


def test_the_api_token_guards_every_mcp_transport(make_client):
    client = make_client(api_token="secret", mcp_json_response=True)
    for method, path in (("POST", "/mcp"), ("GET", "/sse"), ("POST", "/messages/")):
        refused = client.request(method, path, json=TOOLS_LIST, headers=MCP_HEADERS)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer", path
    allowed = client.post("/mcp", json=TOOLS_LIST, headers={**MCP_HEADERS, "Authorization": "Bearer secret"})
    assert allowed.status_code == 200


def test_skip_mcp_of_a_yaml_deploy_is_kept_in_the_yaml(make_client, pipelines_dir: Path):
    client = make_client()
    deployed = client.post(
        "/deploy-yaml", json={"name": "prompt", "source_code": samples.PROMPT_YAML, "skip_mcp": True}
    )
    assert deployed.status_code == 200, deployed.text
    assert parse_yaml_definition("prompt", (pipelines_dir / "prompt.yml").read_text()).skip_mcp
    assert not parse_yaml_definition("prompt", samples.PROMPT_YAML).skip_mcp
