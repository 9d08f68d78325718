"""``GET /metrics``: Prometheus metrics of every worker of this server, summed."""

import asyncio

from fastapi import APIRouter
from fastapi.responses import Response

from hayhooks.cluster.board import ClusterView
from hayhooks.cluster.metrics import CONTENT_TYPE_LATEST, MetricsStore


def router(store: MetricsStore, board: ClusterView) -> APIRouter:
    routes = APIRouter(tags=["status"])

    @routes.get("/metrics", summary="Prometheus metrics, summed over every worker", response_class=Response)
    async def prometheus_metrics() -> Response:
        # Reading every worker's files is blocking I/O: off the event loop, and off the request
        # threadpool, so a scrape answers while pipelines hold every thread of it.
        text = await asyncio.to_thread(lambda: store.render(board.workers()))
        return Response(text, media_type=CONTENT_TYPE_LATEST)

    return routes
