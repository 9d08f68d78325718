"""The parts one worker runs on, gathered so routes reach them through ``request.app.state``."""

from dataclasses import dataclass

from fastapi import Request

from hayhooks.pipelines.reconciler import Reconciler
from hayhooks.pipelines.registry import PipelineRegistry
from hayhooks.pipelines.source import PipelineSource
from hayhooks.server.cluster import WorkerBoard
from hayhooks.server.deployer import Deployer
from hayhooks.settings import Settings


@dataclass
class Runtime:
    settings: Settings
    source: PipelineSource
    registry: PipelineRegistry
    reconciler: Reconciler
    board: WorkerBoard
    deployer: Deployer


def runtime_of(request: Request) -> Runtime:
    return request.app.state.hayhooks
