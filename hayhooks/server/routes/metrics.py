"""``GET /metrics``: Prometheus metrics of every worker of this server, summed."""

from fastapi import APIRouter
from fastapi.responses import Response

from hayhooks.server import metrics

router = APIRouter(tags=["status"])


@router.get("/metrics", summary="Prometheus metrics, summed over every worker", response_class=Response)
def prometheus_metrics() -> Response:
    # A plain def: reading the workers' files is blocking I/O, so it runs in the threadpool.
    return Response(metrics.render(), media_type=metrics.CONTENT_TYPE_LATEST)
