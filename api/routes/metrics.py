"""``/metrics`` in the Prometheus text format. Hidden from the schema."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

__all__ = ["router"]

router = APIRouter(tags=["metrics"], include_in_schema=False)


@router.get("/metrics", response_model=None, summary="Metrics")
async def metrics() -> Response:
    """Every metric of the process, for Prometheus to scrape."""
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
