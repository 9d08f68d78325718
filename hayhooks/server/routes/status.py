"""``/status``, ``/status/{name}``, ``/health`` and ``/ready``: what this worker and its peers serve."""

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from hayhooks.server.runtime import runtime_of

router = APIRouter(tags=["status"])


class PipelineState(BaseModel):
    name: str
    state: str = Field(description="loading, ready or failed")
    revision: str | None = Field(description="Content hash of the revision this worker serves")
    target_revision: str | None = Field(description="The directory's revision this worker last tried to load")
    kind: str | None = Field(description="files (a pipeline wrapper folder) or yaml")
    error: str | None = Field(description="Why the last load failed")
    description: str = ""
    updated_at: float
    load_seconds: float | None = None


class StatusResponse(BaseModel):
    status: str = Field(description="'Up!' when the worker answers")
    pipelines: list[str] = Field(description="Pipelines this worker serves")
    worker: dict = Field(description="The worker that answered: pid, host, port")
    details: list[PipelineState] = Field(description="Every pipeline this worker knows of, served or failed")
    cluster: dict = Field(
        description="Every live worker of this server with the revisions it serves, and whether all agree"
    )


class PipelineStatusResponse(BaseModel):
    status: str
    pipeline: str
    details: PipelineState


@router.get("/status", response_model=StatusResponse, operation_id="status_all", summary="Status of all pipelines")
async def status_all(request: Request) -> StatusResponse:
    runtime = runtime_of(request)
    return StatusResponse(
        status="Up!",
        pipelines=sorted(runtime.registry.serving()),
        worker=runtime.board.identity,
        details=[PipelineState(**status.as_dict()) for status in runtime.registry.statuses()],
        cluster=runtime.board.view(),
    )


@router.get(
    "/status/{pipeline_name}",
    response_model=PipelineStatusResponse,
    operation_id="status_pipeline",
    summary="Status of one pipeline",
    responses={404: {"description": "No such pipeline"}},
)
async def status_pipeline(pipeline_name: str, request: Request) -> PipelineStatusResponse:
    status = runtime_of(request).registry.status(pipeline_name)
    if status is None:
        raise HTTPException(status_code=404, detail=f"Pipeline '{pipeline_name}' not found")
    return PipelineStatusResponse(
        status="Up!" if status.revision else "Failed" if status.state == "failed" else "Loading",
        pipeline=pipeline_name,
        details=PipelineState(**status.as_dict()),
    )


@router.get("/health", summary="Liveness: the worker answers")
async def health() -> dict:
    return {"status": "ok"}


@router.get(
    "/ready",
    summary="Readiness: every entry of the pipelines directory was attempted",
    responses={503: {"description": "The first load of the directory is still running"}},
)
async def ready(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    if not runtime.reconciler.first_pass_done.is_set():
        return JSONResponse({"status": "loading"}, status_code=503)
    failed = [status.name for status in runtime.registry.statuses() if status.state == "failed"]
    return JSONResponse({"status": "ready", "pipelines": sorted(runtime.registry.serving()), "failed": failed})
