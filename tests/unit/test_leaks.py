"""Replaced and removed revisions are freed: nothing of hayhooks (routes, OpenAPI, MCP, FastAPI's
caches) keeps a wrapper module alive once no request uses it."""

import gc
import sys
import weakref
from pathlib import Path

import pytest
from haystack.core.component.component import component

from hayhooks.pipelines.loader import PipelineLoadError, load_entry
from hayhooks.pipelines.source import PipelineSource
from tests.helpers import pipelines as samples
from tests.helpers.mcp_requests import MCP_HEADERS, TOOLS_LIST


def markers_alive(markers: list[weakref.ref]) -> list[int]:
    gc.collect()
    return [index for index, marker in enumerate(markers) if marker() is not None]


def test_redeployed_and_undeployed_revisions_are_released(make_client):
    client = make_client(mcp_json_response=True)
    markers: list[weakref.ref] = []
    for version in range(6):
        code = samples.wrapper_code(samples.LEAKY, version=str(version))
        deployed = client.post(
            "/deploy_files", json={"name": "leaky", "files": {"pipeline_wrapper.py": code}, "overwrite": True}
        )
        assert deployed.status_code == 200, deployed.text
        assert client.post("/leaky/run", json={"text": "hi"}).json() == {"result": f"hi {version}"}
        assert client.get("/openapi.json").status_code == 200
        assert client.post("/mcp", json=TOOLS_LIST, headers=MCP_HEADERS).status_code == 200
        (module,) = [
            m
            for n, m in sys.modules.items()
            if n.startswith("hayhooks_pipelines.leaky_")
            and n.endswith(".pipeline_wrapper")
            and str(version) == m.VERSION
        ]
        markers.append(weakref.ref(module.MARKER))
        del module
    assert markers_alive(markers) == [5]
    assert client.post("/undeploy/leaky").status_code == 200
    assert client.get("/openapi.json").status_code == 200
    assert markers_alive(markers) == []


def test_loads_that_fail_half_way_are_released(pipelines_dir: Path):
    """A wrapper whose setup() raises after its module defined a ``@component``: nothing of it stays."""
    for version in range(3):
        code = samples.wrapper_code(samples.LEAKY, version=str(version))
        broken = code.replace("        self.pipeline = Pipeline()\n", "        raise RuntimeError('setup fails')\n")
        assert broken != code
        samples.write_wrapper(pipelines_dir, "broken", broken)
        entry, _ = PipelineSource(pipelines_dir).scan_one("broken")
        with pytest.raises(PipelineLoadError, match="setup fails"):
            load_entry(entry)
    gc.collect()
    prefix = "hayhooks_pipelines.broken_"
    assert [key for key in component.registry if key.startswith(prefix)] == []
    assert [obj for obj in gc.get_objects() if type(obj).__module__.startswith(prefix)] == []
