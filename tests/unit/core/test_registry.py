"""The registry: what one worker serves, copy-on-write, and its statuses."""

import asyncio

from pydantic import BaseModel

from hayhooks.pipelines.loader import LoadedPipeline
from hayhooks.pipelines.registry import PipelineRegistry


class Empty(BaseModel):
    pass


def pipeline(name: str, revision: str, description: str = "") -> LoadedPipeline:
    async def run(request: BaseModel) -> str:
        return f"{name}@{revision}"

    return LoadedPipeline(
        name=name,
        revision=revision,
        kind="files",
        request_model=Empty,
        result_type=str,
        run=run,
        description=description,
        load_seconds=0.123456,
    )


def test_swap_serves_the_new_revision_and_returns_the_old():
    registry = PipelineRegistry()
    old, new = pipeline("p", "r1"), pipeline("p", "r2")
    assert registry.swap(old) is None
    assert registry.swap(new) is old
    assert registry.get("p") is new
    status = registry.status("p")
    assert (status.state, status.revision, status.target, status.kind, status.error) == (
        "ready",
        "r2",
        "r2",
        "files",
        None,
    )
    assert status.load_seconds == 0.1235
    assert status.updated_at > 0


def test_swap_leaves_a_map_someone_holds_untouched():
    """A request that looked up the map before a swap keeps the revision it found."""
    registry = PipelineRegistry()
    old = pipeline("p", "r1")
    registry.swap(old)
    held = registry.serving()
    registry.swap(pipeline("p", "r2"))
    registry.swap(pipeline("q", "r1"))
    assert held == {"p": old}
    assert asyncio.run(held["p"].run(Empty())) == "p@r1"
    assert set(registry.serving()) == {"p", "q"}


def test_remove_leaves_a_held_map_untouched():
    registry = PipelineRegistry()
    registry.swap(pipeline("p", "r1"))
    held = registry.serving()
    registry.remove("p")
    assert set(held) == {"p"}
    assert registry.serving() == {}


def test_mark_loading_keeps_serving_and_clears_the_last_error():
    registry = PipelineRegistry()
    registry.swap(pipeline("p", "r1", description="First."))
    registry.fail("p", "r2", "boom")
    registry.mark_loading("p", "r3", "files")
    status = registry.status("p")
    assert (status.state, status.revision, status.target, status.error) == ("loading", "r1", "r3", None)
    assert registry.get("p").revision == "r1"
    assert registry.target("p") == "r3"


def test_mark_loading_of_a_new_name_serves_nothing_yet():
    registry = PipelineRegistry()
    registry.mark_loading("p", "r1", "yaml")
    assert registry.get("p") is None
    status = registry.status("p")
    assert (status.state, status.revision, status.target, status.kind) == ("loading", None, "r1", "yaml")


def test_fail_keeps_the_last_good_revision_serving():
    registry = PipelineRegistry()
    good = pipeline("p", "r1", description="Good.")
    registry.swap(good)
    registry.mark_loading("p", "r2", "files")
    registry.fail("p", "r2", "SyntaxError: nope")
    assert registry.get("p") is good
    status = registry.status("p")
    assert (status.state, status.revision, status.target, status.error) == ("failed", "r1", "r2", "SyntaxError: nope")
    assert (status.kind, status.description) == ("files", "Good.")


def test_fail_of_a_never_loaded_name_serves_nothing():
    registry = PipelineRegistry()
    registry.fail("bad name", None, "not a valid pipeline name")
    assert registry.get("bad name") is None
    status = registry.status("bad name")
    assert (status.state, status.revision, status.target, status.kind) == ("failed", None, None, None)


def test_remove_unserves_and_forgets():
    registry = PipelineRegistry()
    served = pipeline("p", "r1")
    registry.swap(served)
    assert registry.remove("p") is served
    assert registry.get("p") is None
    assert registry.status("p") is None
    assert registry.statuses() == []
    assert registry.target("p") is None


def test_remove_forgets_a_failed_name_that_was_never_served():
    registry = PipelineRegistry()
    registry.fail("p", "r1", "boom")
    assert registry.remove("p") is None
    assert registry.status("p") is None


def test_listeners_are_called_on_each_change():
    registry = PipelineRegistry()
    calls = []
    registry.on_change(lambda: calls.append("first"))
    registry.on_change(lambda: calls.append(len(registry.serving())))
    registry.mark_loading("p", "r1", "files")
    registry.swap(pipeline("p", "r1"))
    registry.fail("p", "r2", "boom")
    registry.remove("p")
    assert calls == ["first", 0, "first", 1, "first", 1, "first", 0]


def test_listeners_are_not_called_when_nothing_changed():
    registry = PipelineRegistry()
    calls = []
    registry.on_change(lambda: calls.append(1))
    assert registry.remove("unknown") is None
    assert calls == []


def test_statuses_are_sorted_by_name():
    registry = PipelineRegistry()
    for name in ("zeta", "Alpha", "beta", "alpha"):
        registry.swap(pipeline(name, "r1"))
    registry.fail("gamma", None, "boom")
    assert [status.name for status in registry.statuses()] == ["Alpha", "alpha", "beta", "gamma", "zeta"]


def test_status_as_dict_names_the_target_revision():
    registry = PipelineRegistry()
    registry.swap(pipeline("p", "r1", description="D."))
    data = registry.status("p").as_dict()
    assert data["target_revision"] == "r1"
    assert {k: data[k] for k in ("name", "state", "revision", "description")} == {
        "name": "p",
        "state": "ready",
        "revision": "r1",
        "description": "D.",
    }
