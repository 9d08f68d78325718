"""The contract a ``pipeline_wrapper.py`` implements, as the published Hayhooks defines it."""

from abc import ABC, abstractmethod
from typing import Any

# The methods a wrapper may implement besides setup(); each async variant wins over its sync one.
ENTRY_POINTS = {
    "run": ("run_api_async", "run_api"),
    "chat_completion": ("run_chat_completion_async", "run_chat_completion"),
    "response": ("run_response_async", "run_response"),
    "file_upload": ("run_file_upload_async", "run_file_upload"),
}


class BasePipelineWrapper(ABC):
    """Subclass as ``PipelineWrapper`` in ``NAME/pipeline_wrapper.py``.

    ``setup()`` runs once when a revision loads and usually sets ``self.pipeline``. Implement
    ``run_api`` (runs in a thread) or ``async def run_api_async`` (awaited on the event loop); the
    parameters of the one you implement become the JSON body of ``POST /NAME/run``, and its return
    value becomes ``{"result": ...}`` (a generator is streamed). ``run_chat_completion`` and
    ``run_response`` (and their ``_async`` variants) serve the OpenAI-compatible endpoints, with the
    pipeline's name as the model. Any of them may declare ``headers: Headers | None = None``
    (``from starlette.datastructures import Headers``) to receive the request's headers.
    """

    skip_mcp: bool = False  # True: not listed as an MCP tool

    def __init__(self) -> None:
        self.pipeline: Any = None

    @abstractmethod
    def setup(self) -> None:
        """Build or load the pipeline; called once per loaded revision."""

    def run_api(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("run_api not implemented")

    async def run_api_async(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("run_api_async not implemented")

    def run_chat_completion(self, model: str, messages: list[dict], body: dict) -> Any:
        """Answer an OpenAI chat completion request: a string, or a generator of chunks to stream."""
        raise NotImplementedError("run_chat_completion not implemented")

    async def run_chat_completion_async(self, model: str, messages: list[dict], body: dict) -> Any:
        raise NotImplementedError("run_chat_completion_async not implemented")

    def run_response(self, model: str, input_items: list[dict], body: dict) -> Any:
        """Answer an OpenAI Responses API request: a string, or a generator of chunks to stream."""
        raise NotImplementedError("run_response not implemented")

    async def run_response_async(self, model: str, input_items: list[dict], body: dict) -> Any:
        raise NotImplementedError("run_response_async not implemented")

    def run_file_upload(self, filename: str | None, content_type: str | None, content: bytes, purpose: str) -> Any:
        """Take a file uploaded through ``POST /v1/files`` (already kept in the file store): index it, say.

        May return a dict of OpenAI file object fields (``status``, ``purpose``...) to answer the client with.
        """
        raise NotImplementedError("run_file_upload not implemented")

    async def run_file_upload_async(
        self, filename: str | None, content_type: str | None, content: bytes, purpose: str
    ) -> Any:
        raise NotImplementedError("run_file_upload_async not implemented")
