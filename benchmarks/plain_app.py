"""The baseline of the overhead benchmark: a plain FastAPI app serving the echo pipeline.

It builds the same one-component Haystack pipeline as ``examples/pipelines/echo`` and serves it on
``POST /echo/run`` with a ``def`` endpoint and the same request/response shapes hayhooks derives
(``{"text": str}`` in, ``{"result": str}`` out), so the difference to ``hayhooks``' ``/echo/run``
is the server's own per-request overhead. ``POST /v1/chat/completions`` answers the
``chat.completion`` JSON hayhooks answers for the echo model, ``POST /streamer/run`` streams the
generator of ``examples/pipelines/streamer`` through FastAPI's ``StreamingResponse``, and
``POST /file_info/run`` takes uploads with FastAPI's ``UploadFile`` and describes them as the
``file_info`` example does. Serve it like
hayhooks is served::

    uvicorn --app-dir benchmarks plain_app:app                       # one worker
    gunicorn -k uvicorn_worker.UvicornWorker -w 2 --chdir benchmarks plain_app:app
"""

import importlib.util
import sys
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Form, UploadFile
from fastapi.responses import StreamingResponse
from haystack import Pipeline, component
from pydantic import BaseModel, ConfigDict

EXAMPLES = Path(__file__).parents[1] / "examples" / "pipelines"
sys.path.insert(0, str(EXAMPLES / "streamer"))
from pipeline_wrapper import lines  # noqa: E402  - the very generator the streamer pipeline returns

_spec = importlib.util.spec_from_file_location("file_info_wrapper", EXAMPLES / "file_info" / "pipeline_wrapper.py")
file_info = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(file_info)  # the file_info example's describe(), run by both servers


@component
class Echo:
    """Return the input text unchanged (the same component as the echo example)."""

    @component.output_types(text=str)
    def run(self, text: str) -> dict[str, str]:
        return {"text": text}


class EchoRunRequest(BaseModel):
    text: str


class EchoRunResponse(BaseModel):
    result: str


def build_pipeline() -> Pipeline:
    """The echo example's pipeline: one ``Echo`` component named ``echo``."""
    pipeline = Pipeline()
    pipeline.add_component("echo", Echo())
    return pipeline


pipeline = build_pipeline()
app = FastAPI(title="plain echo")


@app.post("/echo/run", response_model=EchoRunResponse)
def echo_run(body: EchoRunRequest) -> dict[str, str]:
    """Run the pipeline in FastAPI's thread pool, as a ``def`` endpoint does."""
    return {"result": pipeline.run({"echo": {"text": body.text}})["echo"]["text"]}


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[dict[str, Any]]
    stream: bool = False


@app.post("/v1/chat/completions")
def chat_completions(body: ChatRequest) -> dict[str, Any]:
    """The echo model's answer, in the JSON hayhooks sends for it."""
    text = pipeline.run({"echo": {"text": body.messages[-1]["content"]}})["echo"]["text"]
    return {
        "id": f"{body.model}-{uuid.uuid4()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.model,
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop", "logprobs": None}
        ],
    }


class StreamRequest(BaseModel):
    count: int = 10


@app.post("/streamer/run")
def streamer_run(body: StreamRequest) -> StreamingResponse:
    return StreamingResponse(lines(body.count), media_type="text/plain")


@app.post("/file_info/run")
def file_info_run(files: list[UploadFile] | None = None, preview_chars: Annotated[int, Form()] = 80) -> dict[str, Any]:
    return {"result": [file_info.PipelineWrapper._describe(upload, preview_chars) for upload in files or []]}
