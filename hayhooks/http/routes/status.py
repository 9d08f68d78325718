"""``/status``, ``/status/{name}``, ``/health`` and ``/ready``: what this worker and its peers serve."""

import asyncio
from collections.abc import Callable

from fastapi import APIRouter, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from hayhooks.cluster.board import ClusterView
from hayhooks.cluster.runtime import announced_server
from hayhooks.pipelines.registry import ServingTable


class PipelineState(BaseModel):
    name: str
    state: str = Field(description="waiting (for its turn to load among the workers), loading, ready or failed")
    revision: str | None = Field(description="Content hash of the revision this worker serves")
    target_revision: str | None = Field(description="The directory's revision this worker last tried to load")
    kind: str | None = Field(description="files (a pipeline wrapper folder) or yaml")
    error: str | None = Field(description="Why the last load failed")
    description: str = ""
    updated_at: float
    load_seconds: float | None = None
    attempts: int = Field(0, description="Loads of target_revision this worker tried, retries included")
    next_retry_at: float | None = Field(
        None, description="When this worker tries target_revision again (epoch seconds); null: not before a file change"
    )


class StatusResponse(BaseModel):
    status: str = Field(description="'Up!' when the worker answers")
    pipelines: list[str] = Field(description="Pipelines this worker serves")
    worker: dict = Field(description="The worker that answered: pid, host, port")
    details: list[PipelineState] = Field(description="Every pipeline this worker knows of, served or failed")
    cluster: dict = Field(
        description="Every live worker of this server with the revisions it serves, and whether all agree"
    )
    server: dict = Field(
        description="How the server was started: `workers` configured and `workers_source`, where that count "
        "came from (HAYHOOKS_WORKERS, WEB_CONCURRENCY, the cgroup CPU quota, the CPU affinity, os.cpu_count())"
    )


class PipelineStatusResponse(BaseModel):
    status: str
    pipeline: str
    details: PipelineState


def router(registry: ServingTable, readiness: Callable[[], tuple[str, list[dict]]], cluster: ClusterView) -> APIRouter:
    """The status routes over this worker's serving table, its readiness and the cluster view."""
    routes = APIRouter(tags=["status"])

    @routes.get("/status", response_model=StatusResponse, operation_id="status_all", summary="Status of all pipelines")
    async def status_all() -> StatusResponse:
        return StatusResponse(
            status="Up!",
            pipelines=sorted(registry.serving()),
            worker=cluster.identity,
            details=[PipelineState(**status.as_dict()) for status in registry.statuses()],
            cluster=await asyncio.to_thread(cluster.view),  # reads every worker's file: off the event loop
            server=announced_server(),
        )

    @routes.get(
        "/status/{pipeline_name}",
        response_model=PipelineStatusResponse,
        operation_id="status_pipeline",
        summary="Status of one pipeline",
        responses={404: {"description": "No such pipeline"}},
    )
    async def status_pipeline(pipeline_name: str) -> PipelineStatusResponse:
        status = registry.status(pipeline_name)
        if status is None:
            raise HTTPException(status_code=404, detail=f"Pipeline '{pipeline_name}' not found")
        return PipelineStatusResponse(
            status="Up!" if status.revision else "Failed" if status.state == "failed" else "Loading",
            pipeline=pipeline_name,
            details=PipelineState(**status.as_dict()),
        )

    @routes.get("/health", summary="Liveness: the worker answers")
    async def health() -> dict:
        return {"status": "ok"}

    @routes.get(
        "/ready",
        summary="Readiness: this worker serves every entry of the pipelines directory at its current revision, "
        "or gave up on it (failed)",
        responses={
            503: {
                "description": "An entry is still loading (`pending`: name, the directory's revision, the one "
                "served meanwhile), or the worker is retiring"
            }
        },
    )
    async def ready() -> JSONResponse:
        state, pending = readiness()  # loading, ready or retiring
        failed = [status.name for status in registry.statuses() if status.state == "failed"]
        if state != "ready":
            return JSONResponse({"status": state, "pending": pending, "failed": failed}, status_code=503)
        return JSONResponse({"status": "ready", "pipelines": sorted(registry.serving()), "failed": failed})

    return routes
