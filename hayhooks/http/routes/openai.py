"""OpenAI-compatible endpoints over the pipelines that implement them: ``/v1/models``,
``/v1/chat/completions`` and ``/v1/responses``, each also without ``/v1``.

The pipeline's name is the model. A request runs on the revision served when it arrived, like
``/NAME/run``. Errors come in OpenAI's shape, ``{"error": {"message", "type", "code"}}``, so SDKs
raise the matching exception. Streams follow what the published Hayhooks sends (chunks with
content, reasoning and tool-call deltas, Open WebUI events as ``data: {"event": ...}``) and end
with the ``data: [DONE]`` OpenAI ends them with. Wire objects are plain dicts written with
``json.dumps``: no model is validated per chunk on the way out.
"""

import asyncio
import functools
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Generator, Sequence
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field

from hayhooks.http import contract
from hayhooks.http.routes.run import REVISION_HEADER, SERVER_BUG, WORKER_HEADER, RunOptions, failure_detail
from hayhooks.http.streaming import PipelineStream, is_stream, item_text, join_text, streaming_chunk_type
from hayhooks.pipelines.loader import Call, LoadedPipeline, PipelineRunError
from hayhooks.pipelines.registry import ServingTable

logger = logging.getLogger("hayhooks.openai")

_ERROR_TYPES = {401: "authentication_error", 404: "not_found_error", 501: "not_implemented", 504: "timeout"}
_DOCUMENTED = {
    401: {"description": "HAYHOOKS_API_TOKEN is set and the request has no valid bearer token"},
    404: {"description": "No pipeline of that name (the model) is served"},
    422: {"description": "The body is not a valid request"},
    500: {"description": "The pipeline raised an error"},
    501: {"description": "The pipeline does not implement this endpoint"},
    504: {"description": "The run took longer than HAYHOOKS_RUN_TIMEOUT"},
}
_STREAMED = {
    200: {
        "description": "The answer; with `stream: true`, a stream of its chunks",
        "content": {"application/json": {}, "text/event-stream": contract.SSE_EVENT},
    }
}


class ChatCompletionRequest(BaseModel):
    """OpenAI's chat completion request; any other field (temperature, tools, ...) reaches the pipeline in ``body``."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(description="The pipeline's name")
    messages: list[dict[str, Any]]
    stream: bool = False


class ResponseRequest(BaseModel):
    """OpenAI's Responses API request; every other field reaches the pipeline in ``body``."""

    model_config = ConfigDict(extra="allow")
    model: str = Field(description="The pipeline's name")
    input: str | list[dict[str, Any]] | None = None
    stream: bool = False


def describe_problems(errors: Sequence[Any]) -> str:
    """Validation errors in one line, each as ``where: what``."""
    return "; ".join(f"{'.'.join(map(str, error['loc'])) or 'arguments'}: {error['msg']}" for error in errors)


def openai_error(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    kind = _ERROR_TYPES.get(status, "invalid_request_error" if status < 500 else "server_error")
    if status == 501:  # SDKs retry 5xx answers; asking again will not make the method exist
        headers = {**(headers or {}), "x-should-retry": "false"}
    return JSONResponse({"error": {"message": message, "type": kind, "code": status}}, status, headers=headers)


class OpenAIErrorsRoute(APIRoute):
    """Answers every refusal of these routes (validation, token, HTTP errors) in OpenAI's error shape,
    and says which worker answered on every response, refusals included."""

    def get_route_handler(self) -> Callable:
        handler = super().get_route_handler()

        async def in_openai_shape(request: Request) -> Response:
            try:
                response = await handler(request)
            except RequestValidationError as error:
                response = openai_error(422, describe_problems(error.errors()))
            except HTTPException as error:
                response = openai_error(error.status_code, str(error.detail), error.headers)
            response.headers[WORKER_HEADER] = str(os.getpid())  # read per answer: workers fork from a master
            return response

        return in_openai_shape


def router(registry: ServingTable, options: RunOptions) -> APIRouter:
    """The OpenAI endpoints over ``registry``, with the run routes' token and timeout."""
    guard = [Depends(options.guard)] if options.guard else None
    routes = APIRouter(tags=["openai"], route_class=OpenAIErrorsRoute, dependencies=guard, responses=_DOCUMENTED)

    def served(model: str, entry_point: str) -> tuple[LoadedPipeline, Call]:
        loaded = registry.get(model)
        if loaded is None:
            raise HTTPException(404, f"The model '{model}' does not exist: no pipeline of that name is served")
        call = getattr(loaded, entry_point)
        if call is None:
            method = "run_chat_completion" if entry_point == "chat_completion" else "run_response"
            raise HTTPException(501, f"The pipeline '{model}' does not implement {method}")
        return loaded, call

    async def answer(
        loaded: LoadedPipeline, call: Call, arguments: dict[str, Any], request: Request, stream: bool, wire: "_Wire"
    ) -> Response:
        headers = {REVISION_HEADER: loaded.revision, WORKER_HEADER: str(os.getpid())}
        label = f"pipeline {loaded.name} (revision {loaded.revision})"
        describe_failure = functools.partial(failure_detail, show_tracebacks=options.show_tracebacks)

        async def outcome() -> Any:
            result = await call(arguments, request.headers)
            if not stream and is_stream(result):
                return await join_text(result)
            return result

        try:
            result = await (asyncio.wait_for(outcome(), options.timeout) if options.timeout else outcome())
        except PipelineRunError as failure:
            if isinstance(failure.error, HTTPException):
                raise failure.error from None
            logger.error("%s failed", label, exc_info=failure.error)
            return openai_error(500, describe_failure(failure.error), headers)
        except TimeoutError:
            return openai_error(
                504, f"'{loaded.name}' did not finish within {options.timeout:g}s (HAYHOOKS_RUN_TIMEOUT)"
            )
        except Exception:
            logger.exception("BUG in hayhooks answering for pipeline %s", label)
            return openai_error(500, SERVER_BUG, headers)
        if isinstance(result, Response):
            return result
        if not stream:
            return JSONResponse(wire.whole("" if result is None else str(result)), headers=headers)
        source = result if is_stream(result) else _one(result)
        return PipelineStream(source, wire, headers=headers, describe_error=describe_failure, label=label)

    for prefix in ("/v1", ""):
        suffix = "" if prefix else "_alias"

        @routes.get(f"{prefix}/models", operation_id=f"openai_models{suffix}", summary="Pipelines usable as models")
        async def models() -> dict[str, Any]:
            now = int(time.time())
            usable = [name for name, loaded in registry.serving().items() if loaded.chat_completion or loaded.response]
            return {
                "object": "list",
                "data": [
                    {"id": name, "object": "model", "created": now, "owned_by": "hayhooks"} for name in sorted(usable)
                ],
            }

        @routes.post(
            f"{prefix}/chat/completions",
            operation_id=f"openai_chat_completions{suffix}",
            dependencies=contract.JSON_BODY,
            responses=_STREAMED,
            summary="Chat with a pipeline that implements run_chat_completion",
            response_class=JSONResponse,
        )
        async def chat_completions(body: ChatCompletionRequest, request: Request) -> Response:
            loaded, call = served(body.model, "chat_completion")
            arguments = {"model": body.model, "messages": body.messages, "body": body.model_dump()}
            return await answer(loaded, call, arguments, request, body.stream, _ChatWire(body.model))

        @routes.post(
            f"{prefix}/responses",
            operation_id=f"openai_responses{suffix}",
            dependencies=contract.JSON_BODY,
            responses=_STREAMED,
            summary="OpenAI Responses API over a pipeline that implements run_response",
            response_class=JSONResponse,
        )
        async def responses(body: ResponseRequest, request: Request) -> Response:
            loaded, call = served(body.model, "response")
            items = (
                [{"type": "message", "role": "user", "content": body.input}]
                if isinstance(body.input, str)
                else body.input
            )
            arguments = {"model": body.model, "input_items": items or [], "body": body.model_dump()}
            return await answer(loaded, call, arguments, request, body.stream, _ResponseWire(body.model))

    return routes


def _one(result: Any) -> Generator[str, None, None]:
    """A stream of the single answer, for a client that asked to stream a pipeline that does not."""
    yield "" if result is None else str(result)


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"))


class _Wire:
    """A framing of the chat endpoints (see :class:`~hayhooks.http.streaming.Framing`), plus the whole answer."""

    media_type = b"text/event-stream"

    def whole(self, text: str) -> dict[str, Any]:
        raise NotImplementedError

    def error(self, message: str) -> bytes:
        return f"data: {_json({'error': {'message': message, 'type': 'server_error', 'code': 500}})}\n\n".encode()


class _ChatWire(_Wire):
    """``chat.completion`` and its stream of ``chat.completion.chunk`` events."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = f"{model}-{uuid.uuid4()}"
        self.created = int(time.time())
        self.finished = False

    def whole(self, text: str) -> dict[str, Any]:
        message = {"role": "assistant", "content": text}
        return self._envelope(
            "chat.completion", {"index": 0, "message": message, "finish_reason": "stop", "logprobs": None}
        )

    def frame(self, item: Any) -> bytes | None:
        if callable(getattr(item, "to_event_dict", None)):  # a PipelineEvent, which Open WebUI shows
            return f"data: {_json({'event': item.to_event_dict()})}\n\n".encode()
        finish_reason = None
        if isinstance(item, streaming_chunk_type()):
            finish_reason = item.finish_reason
            delta = _chunk_delta(item)
        else:
            delta = {"role": "assistant", "content": item_text(item) or ""}
        self.finished = self.finished or finish_reason is not None
        return self._chunk(delta, finish_reason)

    def end(self) -> bytes:
        last = b"" if self.finished else self._chunk({"role": "assistant", "content": ""}, "stop")
        return last + b"data: [DONE]\n\n"

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None) -> bytes:
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}
        return f"data: {_json(self._envelope('chat.completion.chunk', choice))}\n\n".encode()

    def _envelope(self, kind: str, choice: dict[str, Any]) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "choices": [choice]}


def _chunk_delta(chunk: Any) -> dict[str, Any]:
    """The OpenAI delta of a Haystack StreamingChunk: reasoning, tool-call deltas, or content."""
    reasoning = getattr(chunk, "reasoning", None)
    if reasoning is not None and reasoning.reasoning_text:
        return {"role": "assistant", "content": None, "reasoning_content": reasoning.reasoning_text}
    if chunk.tool_calls:
        calls = []
        for call in chunk.tool_calls:
            function = {key: value for key, value in (("name", call.tool_name), ("arguments", call.arguments)) if value}
            calls.append({"index": call.index, "type": "function", "function": function, "id": call.id})
        return {"role": "assistant", "content": None, "tool_calls": calls}
    return {"role": "assistant", "content": chunk.content}


class _ResponseWire(_Wire):
    """A ``response`` object and the event sequence of a streamed one (created ... completed)."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.id = f"resp_{uuid.uuid4().hex}"
        self.item_id = f"msg_{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.parts: list[str] = []
        self.sequence = 0
        self.started = False

    def whole(self, text: str) -> dict[str, Any]:
        return self._response("completed", [self._message("completed", text)])

    def frame(self, item: Any) -> bytes | None:
        text = item_text(item)
        if not text:
            return None
        head = b"" if self.started else self._opening()
        self.started = True
        self.parts.append(text)
        return head + self._event("response.output_text.delta", **self._at(), delta=text)

    def end(self) -> bytes:
        head = b"" if self.started else self._opening()
        text = "".join(self.parts)
        part = {"type": "output_text", "text": text, "annotations": []}
        message = self._message("completed", text)
        return (
            head
            + self._event("response.output_text.done", **self._at(), text=text)
            + self._event("response.content_part.done", **self._at(), part=part)
            + self._event("response.output_item.done", output_index=0, item=message)
            + self._event("response.completed", response=self._response("completed", [message]))
        )

    def _opening(self) -> bytes:
        pending = self._response("in_progress", [])
        return (
            self._event("response.created", response=pending)
            + self._event("response.in_progress", response=pending)
            + self._event("response.output_item.added", output_index=0, item=self._message("in_progress", None))
            + self._event(
                "response.content_part.added", **self._at(), part={"type": "output_text", "text": "", "annotations": []}
            )
        )

    def _at(self) -> dict[str, Any]:
        return {"item_id": self.item_id, "output_index": 0, "content_index": 0}

    def _event(self, kind: str, **fields: Any) -> bytes:
        self.sequence += 1
        return f"event: {kind}\ndata: {_json({'type': kind, 'sequence_number': self.sequence, **fields})}\n\n".encode()

    def _message(self, status: str, text: str | None) -> dict[str, Any]:
        content = [] if text is None else [{"type": "output_text", "text": text, "annotations": []}]
        return {"id": self.item_id, "type": "message", "status": status, "role": "assistant", "content": content}

    def _response(self, status: str, output: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created,
            "status": status,
            "model": self.model,
            "output": output,
            "parallel_tool_calls": False,
            "tool_choice": "auto",
            "tools": [],
            "usage": None,
            "error": None,
            "incomplete_details": None,
        }
