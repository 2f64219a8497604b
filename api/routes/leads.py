"""Internal read API: the portal status of a lead, for CRM/ERP and support."""

from __future__ import annotations

from fastapi import APIRouter, HTTPException, Path, status

from api.body import ZOHO_ID_PATTERN, read_errors
from api.deps import ReadTokenDep, SessionsDep
from api.openapi import READ_TOKEN, security
from db.lead_status import LeadView, get_lead

router = APIRouter(prefix="/v1/leads", tags=["leads"], dependencies=[ReadTokenDep])


@router.get(
    "/{lead_id}",
    response_model=LeadView,
    responses=read_errors("lead"),
    openapi_extra=security(READ_TOKEN),
)
async def read_lead(lead_id: str = Path(pattern=ZOHO_ID_PATTERN), *, sessions: SessionsDep) -> LeadView:
    """Current status of the lead and every status it went through."""
    lead = await get_lead(sessions, lead_id)
    if lead is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no lead {lead_id}")
    return lead
