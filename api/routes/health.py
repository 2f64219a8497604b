"""Is the process up (``/healthz``), and can it reach Temporal and the database (``/readyz``).

In Kubernetes ``/readyz`` is the startup check only (deploy/k8s/base/api.yaml): a replica answers an
outage every replica shares with its own 503 and Retry-After rather than leaving the Service empty.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response, status
from sqlalchemy import text

from api.deps import SessionsDep, TemporalClientDep

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_SECONDS = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", responses={503: {"description": "Temporal or the database does not answer"}})
async def readyz(response: Response, temporal: TemporalClientDep, sessions: SessionsDep) -> dict[str, str]:
    """200 when Temporal and the database answer, else 503 with the failing part named."""
    checks = {"temporal": "ok", "database": "ok"}
    try:
        await asyncio.wait_for(temporal.service_client.check_health(), CHECK_TIMEOUT_SECONDS)
    except Exception as error:
        checks["temporal"] = f"unavailable: {type(error).__name__}"
    try:
        async with sessions() as session:
            await asyncio.wait_for(session.execute(text("select 1")), CHECK_TIMEOUT_SECONDS)
    except Exception as error:
        checks["database"] = f"unavailable: {type(error).__name__}"
    if any(value != "ok" for value in checks.values()):
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return checks
