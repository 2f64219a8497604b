"""Internal read API: the portal status of a lead, for CRM/ERP and support."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel

from api.deps import ReadTokenDep, SessionsDep
from api.routes.zoho import ZOHO_ID_PATTERN
from db.lead_status import get_lead

router = APIRouter(prefix="/v1/leads", tags=["leads"], dependencies=[ReadTokenDep])


class StatusChangeOut(BaseModel):
    status: str
    dealer_id: str | None
    detail: str | None
    at: datetime


class LeadOut(BaseModel):
    lead_id: str
    status: str
    dealer_id: str | None
    dealer_lead_id: str | None
    detail: str | None
    workflow_id: str
    created_at: datetime
    updated_at: datetime
    history: list[StatusChangeOut]


@router.get("/{lead_id}", response_model=LeadOut, responses={404: {"description": "no such lead"}})
async def read_lead(lead_id: str = Path(pattern=ZOHO_ID_PATTERN), *, sessions: SessionsDep) -> LeadOut:
    """Current status of the lead and every status it went through."""
    lead = await get_lead(sessions, lead_id)
    if lead is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no lead {lead_id}")
    return LeadOut.model_validate(lead, from_attributes=True)
