"""The baseline of the overhead benchmark: a plain FastAPI app serving the echo pipeline.

It builds the same one-component Haystack pipeline as ``examples/pipelines/echo`` and serves it on
``POST /echo/run`` with a ``def`` endpoint and the same request/response shapes hayhooks derives
(``{"text": str}`` in, ``{"result": str}`` out), so the difference to ``hayhooks``' ``/echo/run``
is the server's own per-request overhead. Serve it like hayhooks is served::

    uvicorn --app-dir benchmarks plain_app:app                       # one worker
    gunicorn -k uvicorn_worker.UvicornWorker -w 2 --chdir benchmarks plain_app:app
"""

from fastapi import FastAPI
from haystack import Pipeline, component
from pydantic import BaseModel


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
