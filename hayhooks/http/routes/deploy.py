"""Deploy and undeploy over HTTP, with the published Hayhooks' paths and bodies.

Every deploy is first tried in a disposable process (the server's deploy checker), then published
into the pipelines directory, which every worker follows. ``wait`` holds the answer until every
live worker serves the result.
"""

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import APIRouter, Depends, HTTPException, Path, Query
from pydantic import BaseModel, Field

from hayhooks.cluster.board import ClusterView
from hayhooks.cluster.metrics import ServerMetrics
from hayhooks.http import contract
from hayhooks.http.security import Guard
from hayhooks.pipelines.deployer import Deployer, DeployRejected
from hayhooks.pipelines.names import NAME_PATTERN, NAME_RULE

_NAME = Field(description=f"Pipeline name: {NAME_RULE}", examples=["my_pipeline"])
_WAIT = Field(False, description="Answer only once every live worker serves the new revision (or wait_timeout)")
_WAIT_TIMEOUT = Field(10.0, gt=0, le=300, description="Seconds to wait for every worker when wait is set")


class DeployFilesRequest(BaseModel):
    name: str = _NAME
    files: dict[str, str] = Field(description="File path -> content; must include pipeline_wrapper.py")
    overwrite: bool = Field(False, description="Replace an existing pipeline of the same name")
    save_files: bool = Field(
        True, description="Accepted for compatibility; must be true: workers serve what the directory holds"
    )
    wait: bool = _WAIT
    wait_timeout: float = _WAIT_TIMEOUT


class DeployYamlRequest(BaseModel):
    name: str = _NAME
    source_code: str = Field(description="The YAML pipeline definition, with inputs and outputs")
    overwrite: bool = Field(False, description="Replace an existing pipeline of the same name")
    description: str | None = Field(None, description="Stored in the YAML as its description")
    skip_mcp: bool = Field(False, description="Not an MCP tool (stored in the YAML as skip_mcp: true)")
    wait: bool = _WAIT
    wait_timeout: float = _WAIT_TIMEOUT


class LegacyDeployRequest(BaseModel):
    name: str = _NAME
    source_code: str = Field(description="The YAML pipeline definition, with inputs and outputs")


class ConvergenceFields(BaseModel):
    """Filled when the request asked to wait for every worker."""

    converged: bool | None = Field(None, description="With wait: whether every live worker caught up")
    workers: list[int] | None = Field(None, description="With wait: pids of the live workers")
    lagging: list[int] | None = Field(None, description="With wait: pids of workers that did not catch up")

    async def wait(self, cluster: ClusterView, name: str, revision: str | None, timeout: float) -> None:
        """Wait until every live worker serves ``revision`` of ``name`` (``None``: no longer serves it)."""
        self.workers, self.lagging = await cluster.wait_for(name, revision, timeout)
        self.converged = not self.lagging


class DeployResponse(ConvergenceFields):
    name: str
    success: bool = True
    endpoint: str = Field(description="Where to run it")
    revision: str | None = Field(description="Content hash of the published revision")


class UndeployResponse(ConvergenceFields):
    success: bool
    name: str


_ERRORS = {
    409: {"description": "A pipeline of that name exists and overwrite is false"},
    413: {"description": "A file or the files together are larger than HAYHOOKS_DEPLOY_MAX_*_BYTES"},
    422: {"description": "Invalid name, files or YAML, or the pipeline failed to load"},
}
_STATUS_OF = {"invalid": 422, "conflict": 409, "missing": 404, "too_large": 413}


def router(deployer: Deployer, cluster: ClusterView, metrics: ServerMetrics, *, guard: Guard | None) -> APIRouter:
    """Deploy and undeploy through ``deployer``; ``guard`` (the admin token) in front of every route."""
    routes = APIRouter(tags=["config"], dependencies=[Depends(guard)] if guard else None)

    @contextmanager
    def counted(action: str) -> Iterator[None]:
        """Count a deploy or undeploy by outcome; a rejection becomes its HTTP error."""
        try:
            yield
        except DeployRejected as error:
            metrics.count_deploy(action, "rejected")
            raise HTTPException(_STATUS_OF[error.reason], str(error)) from error
        except Exception:
            metrics.count_deploy(action, "error")
            raise
        metrics.count_deploy(action, "success")

    async def answer(name: str, revision: str, wait: bool, timeout: float) -> DeployResponse:
        response = DeployResponse(name=name, endpoint=f"/{name}/run", revision=revision)
        if wait:
            await response.wait(cluster, name, revision, timeout)
        return response

    async def deploy_files(body: DeployFilesRequest) -> DeployResponse:
        if not body.save_files:
            raise HTTPException(
                422, "save_files=false is not supported: every worker serves what the pipelines directory holds"
            )
        with counted("deploy"):
            revision = await deployer.deploy_files(body.name, body.files, overwrite=body.overwrite)
        return await answer(body.name, revision, body.wait, body.wait_timeout)

    for path, operation_id, summary in (
        ("/deploy_files", "pipeline_deploy", "Deploy a pipeline wrapper from files"),
        ("/deploy-files", "pipeline_deploy_alias", "Deploy a pipeline wrapper from files (alias of /deploy_files)"),
    ):
        routes.add_api_route(
            path,
            deploy_files,
            methods=["POST"],
            response_model=DeployResponse,
            operation_id=operation_id,
            summary=summary,
            responses=_ERRORS,
            dependencies=contract.JSON_BODY,
        )

    @routes.post(
        "/deploy-yaml",
        response_model=DeployResponse,
        operation_id="yaml_pipeline_deploy",
        summary="Deploy a YAML pipeline",
        responses=_ERRORS,
        dependencies=contract.JSON_BODY,
    )
    async def deploy_yaml(body: DeployYamlRequest) -> DeployResponse:
        with counted("deploy"):
            revision = await deployer.deploy_yaml(
                body.name,
                body.source_code,
                overwrite=body.overwrite,
                description=body.description,
                skip_mcp=body.skip_mcp,
            )
        return await answer(body.name, revision, body.wait, body.wait_timeout)

    @routes.post(
        "/deploy",
        response_model=DeployResponse,
        operation_id="legacy_yaml_deploy",
        summary="Deploy a YAML pipeline (the older form of /deploy-yaml)",
        responses=_ERRORS,
        dependencies=contract.JSON_BODY,
    )
    async def deploy_legacy(body: LegacyDeployRequest) -> DeployResponse:
        return await deploy_yaml(DeployYamlRequest(name=body.name, source_code=body.source_code))

    @routes.post(
        "/undeploy/{pipeline_name}",
        response_model=UndeployResponse,
        operation_id="pipeline_undeploy",
        summary="Undeploy a pipeline: remove it from the directory and so from every worker",
        responses={404: {"description": "No such pipeline"}, 422: {"description": "Invalid name"}},
    )
    async def undeploy(
        pipeline_name: str = Path(description="Pipeline to remove", pattern=NAME_PATTERN),
        wait: bool = Query(False, description="Answer only once no live worker serves it any more"),
        wait_timeout: float = Query(10.0, gt=0, le=300, description="Seconds to wait when wait is set"),
    ) -> UndeployResponse:
        with counted("undeploy"):
            await deployer.undeploy(pipeline_name)
        response = UndeployResponse(success=True, name=pipeline_name)
        if wait:
            await response.wait(cluster, pipeline_name, None, wait_timeout)
        return response

    return routes
