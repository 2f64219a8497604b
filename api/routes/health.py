"""Is the process up (``/healthz``), and can it reach Temporal and the database, whose schema is this
code's (``/readyz``).

In Kubernetes ``/readyz`` is the startup check only (deploy/k8s/base/api.yaml): a replica answers an
outage every replica shares with its own 503 and Retry-After rather than leaving the Service empty.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Response, status
from temporalio.api.workflowservice.v1 import GetSystemInfoRequest

from api.deps import SessionsDep, TemporalClientDep
from db.schema import schema_behind, schema_revision

router = APIRouter(tags=["health"])
CHECK_TIMEOUT_SECONDS = 2.0


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    responses={503: {"description": "Temporal or the database does not answer, or the schema is behind"}},
)
async def readyz(response: Response, temporal: TemporalClientDep, sessions: SessionsDep) -> dict[str, str]:
    """200 when Temporal and the database answer and the schema is this code's, else 503 naming what
    is not."""
    checks = {"temporal": "ok", "database": "ok"}
    try:
        # The call every client makes as it connects: Temporal Cloud answers it for a namespace's API key,
        # where it refuses gRPC's health check.
        await asyncio.wait_for(
            temporal.workflow_service.get_system_info(GetSystemInfoRequest()), CHECK_TIMEOUT_SECONDS
        )
    except Exception as error:
        checks["temporal"] = f"unavailable: {type(error).__name__}"
    try:
        async with sessions() as session:
            revision = await asyncio.wait_for(schema_revision(session), CHECK_TIMEOUT_SECONDS)
    except Exception as error:
        checks["database"] = f"unavailable: {type(error).__name__}"
    else:
        # A replica of new code on the old schema (the migration has not run yet) takes no traffic.
        checks["schema"] = schema_behind(revision) or "ok"
    if any(value != "ok" for value in checks.values()):
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return checks
