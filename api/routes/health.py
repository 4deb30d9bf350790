"""Probes for the orchestrator: liveness and readiness. Hidden from the schema."""

from __future__ import annotations

from fastapi import APIRouter

from api.deps import ServiceDep
from api.problems import HTTPProblem
from api.schemas import Liveness, Readiness

__all__ = ["router"]

router = APIRouter(tags=["health"], include_in_schema=False)


@router.get("/livez", response_model=Liveness, summary="Liveness")
async def livez() -> Liveness:
    """200 while the process runs."""
    return Liveness()


@router.get("/readyz", response_model=Readiness, summary="Readiness")
async def readyz(service: ServiceDep) -> Readiness:
    """200 once recovery is done and the sequencer runs, else 503."""
    if not service.ready:
        raise HTTPProblem(
            503, "unavailable", "the engine is not serving", headers={"Retry-After": "1"}
        )
    status = service.mode_status()
    return Readiness(
        sequence=service.sequence,
        mode=str(status["mode"]),
        database=str(status["database"]),
        rate_limiter=str(status["rate_limiter"]),
    )
