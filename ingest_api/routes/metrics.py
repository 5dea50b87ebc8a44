"""`GET /metrics`: Prometheus text exposition of this worker's metrics (`ingest_api.metrics`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.responses import Response

router = APIRouter(tags=["health"])


@router.get("/metrics", summary="Prometheus metrics of this worker", response_class=Response)
async def metrics(request: Request) -> Response:
    """Answer this worker's counters and histograms in the Prometheus text format."""
    body = generate_latest(request.app.state.metrics.registry)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
