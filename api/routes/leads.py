"""Internal read API: the portal status of a lead, for CRM/ERP and support."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import BaseModel, ConfigDict

from api.body import ZOHO_ID_PATTERN, errors
from api.deps import ReadTokenDep, SessionsDep
from api.openapi import READ_TOKEN, security
from db.lead_status import get_lead

router = APIRouter(prefix="/v1/leads", tags=["leads"], dependencies=[ReadTokenDep])


class StatusChangeAnswer(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    status: str
    dealer_id: str | None
    detail: str | None
    at: datetime


class LeadAnswer(BaseModel):
    """A lead's portal status, the dealer that took it and every status it went through."""

    model_config = ConfigDict(from_attributes=True)

    lead_id: str
    status: str
    dealer_id: str | None
    dealer_lead_id: str | None
    detail: str | None
    workflow_id: str
    created_at: datetime
    updated_at: datetime
    history: list[StatusChangeAnswer]


@router.get(
    "/{lead_id}",
    response_model=LeadAnswer,
    responses=errors(
        e401="missing or wrong bearer token",
        e404="no such lead",
        e422="malformed lead id",
        e503="no read token configured",
    ),
    openapi_extra=security(READ_TOKEN),
)
async def read_lead(lead_id: str = Path(pattern=ZOHO_ID_PATTERN), *, sessions: SessionsDep) -> LeadAnswer:
    """Current status of the lead and every status it went through."""
    lead = await get_lead(sessions, lead_id)
    if lead is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no lead {lead_id}")
    return LeadAnswer.model_validate(lead)
