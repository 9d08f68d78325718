"""OpenAI's Files API over the shared file store: ``/v1/files`` (and ``/files``) on every worker.

``POST`` keeps the upload in the store first, so it is never lost, then hands it to the wrapper
that takes uploads: the one named by the ``pipeline`` form field (or query parameter), else the
first served pipeline, by name, that implements ``run_file_upload``; with none, the file is only
stored. What the wrapper returns (a dict of file object fields) is added to the file's object;
if it raises, the file is removed again and the client gets the error. Any worker answers for
any file: the store is a folder they all share.
"""

import asyncio
import functools
import logging
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from hayhooks.cluster.files import FileStore, StoredFile
from hayhooks.http import contract
from hayhooks.http.forms import FORM_MEDIA_TYPES, close_form, form_arguments, form_body, read_form
from hayhooks.http.routes.openai import OpenAIErrorsRoute, openai_error
from hayhooks.http.routes.run import UPLOAD_ERRORS, RunOptions, failure_detail
from hayhooks.pipelines.loader import LoadedPipeline, PipelineRunError
from hayhooks.pipelines.models import Upload
from hayhooks.pipelines.registry import ServingTable

logger = logging.getLogger("hayhooks.files")

MAX_LIST = 10_000  # OpenAI's largest page of files


class FileObject(BaseModel):
    """OpenAI's file object; a wrapper's ``run_file_upload`` may add fields."""

    model_config = ConfigDict(extra="allow")
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: int
    filename: str
    purpose: str
    status: str = "processed"


class FileList(BaseModel):
    object: Literal["list"] = "list"
    data: list[FileObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class FileDeleted(BaseModel):
    id: str
    object: Literal["file"] = "file"
    deleted: bool


# OpenAI's purposes, as its API and SDKs take them; a pipeline's run_file_upload may store its own.
Purpose = Literal["assistants", "batch", "fine-tune", "vision", "user_data", "evals"]


class _UploadFields(BaseModel):
    """The text fields of ``POST /v1/files`` beside the file."""

    purpose: Purpose = Field(description="What the file is for: one of OpenAI's purposes")
    pipeline: str | None = Field(None, description="The pipeline whose run_file_upload takes the file")


_FILE = Upload(name="file", many=False, required=True, description="The file to store")
_UPLOAD_BODY = form_body(_UploadFields, (_FILE,), required=True)
_DOCUMENTED: dict[int | str, dict[str, Any]] = {
    401: {"description": "HAYHOOKS_API_TOKEN is set and the request has no valid bearer token"},
    404: {"description": "No such file, or no pipeline of the name given is served"},
    422: {"description": "The request is not valid"},
}
_CREATE_ERRORS: dict[int | str, dict[str, Any]] = {
    **UPLOAD_ERRORS,
    500: {"description": "The pipeline's run_file_upload raised an error (the file is not kept)"},
    501: {"description": "The pipeline named does not implement run_file_upload"},
    503: {"description": "The file store (HAYHOOKS_FILES_DIR) cannot be written"},
    504: {"description": "run_file_upload did not finish within HAYHOOKS_RUN_TIMEOUT (the file is not kept)"},
}


def router(registry: ServingTable, store: FileStore, options: RunOptions) -> APIRouter:
    """The Files API over ``store``, handing uploads to the pipelines of ``registry``."""
    guard = [Depends(options.guard)] if options.guard else None
    routes = APIRouter(tags=["openai"], route_class=OpenAIErrorsRoute, dependencies=guard, responses=_DOCUMENTED)
    describe_failure = functools.partial(failure_detail, show_tracebacks=options.show_tracebacks)

    def taker(name: str | None) -> LoadedPipeline | None:
        if name is not None:
            loaded = registry.get(name)
            if loaded is None:
                raise HTTPException(404, f"No pipeline named '{name}' is served")
            if loaded.file_upload is None:
                raise HTTPException(501, f"The pipeline '{name}' does not implement run_file_upload")
            return loaded
        serving = registry.serving()
        return next((serving[name] for name in sorted(serving) if serving[name].file_upload), None)

    async def hand_over(loaded: LoadedPipeline, stored: StoredFile, request: Request) -> dict[str, Any]:
        """Call the wrapper's run_file_upload with the stored content: the fields it adds, or an error."""
        assert loaded.file_upload is not None
        content = await asyncio.to_thread(stored.content.read_bytes)
        arguments = {
            "filename": stored.filename,
            "content_type": stored.content_type,
            "content": content,
            "purpose": stored.purpose,
        }
        running = loaded.file_upload(arguments, request.headers)
        try:
            result = await (asyncio.wait_for(running, options.timeout) if options.timeout else running)
        except PipelineRunError as failure:
            if isinstance(failure.error, HTTPException):
                raise failure.error from None
            logger.error("run_file_upload of pipeline %s failed", loaded.name, exc_info=failure.error)
            raise HTTPException(500, f"run_file_upload failed: {describe_failure(failure.error)}") from None
        except TimeoutError:
            raise HTTPException(
                504, f"run_file_upload of '{loaded.name}' did not finish within {options.timeout:g}s"
            ) from None
        if isinstance(result, BaseModel):
            result = result.model_dump()
        if result is None or isinstance(result, dict):
            return result or {}
        raise HTTPException(
            500, f"run_file_upload of '{loaded.name}' returned {type(result).__name__}; return a dict or None"
        )

    def found(file_id: str) -> StoredFile:
        stored = store.get(file_id)
        if stored is None:
            raise HTTPException(404, f"No such file: '{file_id}'")
        return stored

    for prefix in ("/v1", ""):
        suffix = "" if prefix else "_alias"

        @routes.post(
            f"{prefix}/files",
            operation_id=f"openai_files_create{suffix}",
            summary="Store a file (and hand it to a pipeline's run_file_upload)",
            response_model=FileObject,
            responses=_CREATE_ERRORS,
            openapi_extra=_UPLOAD_BODY,
            max_body_size=options.max_upload_bytes,
            dependencies=[Depends(contract.takes(*FORM_MEDIA_TYPES))],
        )
        async def create_file(
            request: Request,
            pipeline: str | None = Query(None, description="The pipeline whose run_file_upload takes the file"),
        ) -> JSONResponse:
            try:
                form = await read_form(request, options.max_upload_bytes)
                fields = form_arguments(form, _UploadFields, (_FILE,), strict=options.strict_inputs)
                loaded = taker(fields["pipeline"] or pipeline)
                upload = fields["file"]
                await upload.seek(0)
                try:
                    stored = await asyncio.to_thread(
                        store.add,
                        upload.file,
                        filename=upload.filename or "",
                        content_type=upload.content_type,
                        purpose=fields["purpose"],
                    )
                except OSError as error:
                    logger.error("cannot store an uploaded file: %s", error)
                    return openai_error(503, f"The file store cannot keep the file (HAYHOOKS_FILES_DIR): {error}")
                if loaded is not None:
                    try:
                        extra = await hand_over(loaded, stored, request)
                    except BaseException:
                        await asyncio.to_thread(store.delete, stored.id)
                        raise
                    if extra:
                        stored = await asyncio.to_thread(store.annotate, stored.id, extra)
                return JSONResponse(stored.wire())
            finally:
                close_form(request.scope)

        @routes.get(f"{prefix}/files", operation_id=f"openai_files_list{suffix}", summary="Stored files")
        async def list_files(
            purpose: str | None = Query(None, description="Only files of this purpose"),
            limit: int = Query(MAX_LIST, ge=1, le=MAX_LIST),
            order: Literal["asc", "desc"] = Query("desc", description="By creation time"),
            after: str | None = Query(None, description="The id of the file to list after (pagination)"),
        ) -> FileList:
            files, more = await asyncio.to_thread(store.list, purpose=purpose, limit=limit, order=order, after=after)
            data = [stored.wire() for stored in files]
            body = {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": more,
            }
            return JSONResponse(body)

        @routes.get(
            f"{prefix}/files/{{file_id}}", operation_id=f"openai_files_retrieve{suffix}", summary="A stored file"
        )
        async def retrieve_file(file_id: str) -> FileObject:
            stored = await asyncio.to_thread(found, file_id)
            return JSONResponse(stored.wire())

        @routes.get(
            f"{prefix}/files/{{file_id}}/content",
            operation_id=f"openai_files_content{suffix}",
            summary="The content of a stored file",
            response_class=FileResponse,
            responses={200: {"content": {"application/octet-stream": {}}, "description": "The file as uploaded"}},
        )
        async def file_content(file_id: str) -> FileResponse:
            stored = await asyncio.to_thread(found, file_id)
            return FileResponse(
                stored.content,
                media_type=stored.content_type or "application/octet-stream",
                filename=stored.filename or None,
            )

        @routes.delete(
            f"{prefix}/files/{{file_id}}", operation_id=f"openai_files_delete{suffix}", summary="Remove a stored file"
        )
        async def delete_file(file_id: str) -> FileDeleted:
            if not await asyncio.to_thread(store.delete, file_id):
                raise HTTPException(404, f"No such file: '{file_id}'")
            return JSONResponse({"id": file_id, "object": "file", "deleted": True})

    return routes
