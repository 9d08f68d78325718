"""A client generated from ``/openapi.json`` by openapi-python-client calls every bundled example.

What a user does who does not hand-write requests: generate a typed client from the schema, then
call ``/NAME/run`` with its request models. A schema the generator misreads (a body it cannot build,
an answer it parses with the wrong media type) fails here, not in the user's code.
"""

import importlib
import io
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import httpx
import pytest

from hayhooks.pipelines.source import PipelineSource
from tests.helpers.support import BIN, EXAMPLES, Server, serving_examples

PACKAGE = "hayhooks_examples_client"  # the generated package's name: the folder it is written to
PNG = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class Generated:
    """A client of the generated package bound to the server, the schema and what the generator printed."""

    client: Any  # the generated package's own Client
    schema: dict[str, Any]
    output: str

    def run(self, name: str) -> ModuleType:
        """The generated module of ``POST /NAME/run`` (named after its operationId ``NAME_run``)."""
        return importlib.import_module(f"{PACKAGE}.api.pipelines.{name}_run")

    @property
    def models(self) -> ModuleType:
        return importlib.import_module(f"{PACKAGE}.models")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    yield from serving_examples(tmp_path_factory.mktemp("generated_client"))


@pytest.fixture(scope="module")
def generated(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Generated]:
    """Generate the client once per module and import it. No post hooks: the default ones run ``ruff``
    from PATH over the package (a warning where there is none); generating alone is offline and fast."""
    folder = tmp_path_factory.mktemp("client_package")
    schema_file = folder / "openapi.json"
    schema_file.write_bytes(httpx.get(f"{server.url}/openapi.json", timeout=10).content)
    config = folder / "config.json"
    config.write_text(json.dumps({"post_hooks": []}))
    command = [str(BIN / "openapi-python-client"), "generate", "--path", str(schema_file)]
    command += ["--output-path", str(folder / PACKAGE), "--meta", "none", "--config", str(config)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(folder))
        package = importlib.import_module(PACKAGE)
        client = package.Client(base_url=server.url, timeout=httpx.Timeout(30), raise_on_unexpected_status=True)
        with client:
            yield Generated(client, json.loads(schema_file.read_text()), output)
    for module in [module for module in sys.modules if module.split(".")[0] == PACKAGE]:
        del sys.modules[module]


def call_greeter(generated: Generated) -> None:
    greeter, models = generated.run("greeter"), generated.models
    assert greeter.sync(client=generated.client, body=models.GreeterRunRequest(name="Ada")).result == "Hello, Ada!"
    both = models.GreeterRunRequest(name="  grace  hopper ", greeting="Hi")
    assert greeter.sync(client=generated.client, body=both).result == "Hi, Grace Hopper!"


def call_echo(generated: Generated) -> None:
    answer = generated.run("echo").sync(client=generated.client, body=generated.models.EchoRunRequest(text="ping"))
    assert answer.result == "ping"


def call_cpu_heavy(generated: Generated) -> None:
    body = generated.models.CpuHeavyRunRequest(rounds=1000, seed=42)
    answer = generated.run("cpu_heavy").sync(client=generated.client, body=body)
    assert answer.result.to_dict() == {"rounds": 1000, "seed": 42, "checksum": 33922223}


def call_retrieval(generated: Generated) -> None:
    body = generated.models.RetrievalRunRequest(query="worker processes and CPU cores", top_k=2)
    answer = generated.run("retrieval").sync(client=generated.client, body=body)
    assert [document["source"] for document in answer.result] == ["workers.txt", "gunicorn.txt"]
    assert "one or two per CPU core" in answer.result[0]["content"]


def call_streamer(generated: Generated) -> None:
    body = generated.models.StreamerRunRequest(count=3)
    answer = generated.run("streamer").sync_detailed(client=generated.client, body=body)
    assert answer.headers["content-type"].startswith("text/plain")
    assert answer.parsed == "line 0\nline 1\nline 2\n"


def call_file_info(generated: Generated) -> None:
    models, types = generated.models, importlib.import_module(f"{PACKAGE}.types")
    notes = types.File(
        payload=io.BytesIO(b"first line of notes\nsecond\n"), file_name="notes.txt", mime_type="text/plain"
    )
    logo = types.File(payload=io.BytesIO(PNG), file_name="logo.png", mime_type="image/png")
    body = models.FileInfoRunFilesBody(files=[notes, logo], preview_chars=10)
    answer = generated.run("file_info").sync(client=generated.client, body=body)
    assert [item.to_dict() for item in answer.result] == [
        {"filename": "notes.txt", "content_type": "text/plain", "bytes": 27, "preview": "first line"},
        {"filename": "logo.png", "content_type": "image/png", "bytes": len(PNG)},
    ]


def call_chat_prompt(generated: Generated) -> None:
    body = generated.models.ChatPromptRunRequest(query="What is BM25?", topic="search engines")
    answer = generated.run("chat_prompt").sync(client=generated.client, body=body)
    assert answer.result["builder"]["prompt"] == (
        "You are a helpful assistant who knows a lot about search engines.\nQuestion: What is BM25?\nAnswer:"
    )


def call_bm25_search(generated: Generated) -> None:
    body = generated.models.Bm25SearchRunRequest(query="What is BM25?")
    answer = generated.run("bm25_search").sync(client=generated.client, body=body)
    assert answer.result["builder"]["prompt"] == "No documents found.\nQuestion: What is BM25?"
    assert answer.result["retriever"]["documents"] == []


CALLS: dict[str, Callable[[Generated], None]] = {
    "greeter": call_greeter,
    "echo": call_echo,
    "cpu_heavy": call_cpu_heavy,
    "retrieval": call_retrieval,
    "streamer": call_streamer,
    "file_info": call_file_info,
    "chat_prompt": call_chat_prompt,
    "bm25_search": call_bm25_search,
}


def test_the_generator_reads_the_whole_schema_without_a_warning(generated: Generated):
    """A warning means some operation or model is missing from the generated client."""
    assert "Warning" not in generated.output, generated.output


@pytest.mark.parametrize("name", sorted(CALLS))
def test_the_generated_client_calls_each_example(generated: Generated, name: str):
    CALLS[name](generated)


def test_every_example_is_called(generated: Generated):
    """A new example (a folder or a YAML file in examples/pipelines) must get a call above."""
    bundled, unreadable = PipelineSource(EXAMPLES).scan()  # what the server serves from the folder
    assert not unreadable
    runs = {path.split("/")[1] for path in generated.schema["paths"] if path.endswith("/run")}
    assert runs == set(bundled)
    assert set(CALLS) == runs


def test_a_refused_request_is_the_generated_validation_error(generated: Generated):
    """422 comes back parsed as the generated ``HTTPValidationError``, naming the field."""
    body = generated.models.FileInfoRunFilesBody(preview_chars=5000)  # bounded: at most 1000
    answer = generated.run("file_info").sync_detailed(client=generated.client, body=body)
    assert answer.status_code == 422
    assert isinstance(answer.parsed, generated.models.HTTPValidationError)
    assert [error.loc[-1] for error in answer.parsed.detail] == ["preview_chars"]
