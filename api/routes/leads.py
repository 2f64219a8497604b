"""Leads: the Zoho lead webhook that starts a lead's distribution, and the portal status of a lead (the
internal read API, for CRM/ERP and support)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, HTTPException, Path, Request, status
from pydantic import BaseModel, ConfigDict, Field

from api.body import (
    FORM,
    JSON,
    WEBHOOK_ERRORS,
    ZOHO_ID_PATTERN,
    parse_fields,
    parse_model,
    read_errors,
    read_limited,
    spellings,
)
from api.body import request_body as declared_body
from api.deps import IntakeDep, ReadTokenDep, SessionsDep, SettingsDep, ZohoSecretDep
from api.openapi import READ_TOKEN, ZOHO_SECRET, security
from contracts.leads import start_lead_distribution
from core.constants import LEAD_EVENT_REQUESTED, lead_workflow_id
from core.events import cloud_event
from db.lead_status import LeadView, get_lead

webhooks = APIRouter(prefix="/webhooks/zoho", tags=["zoho"], dependencies=[ZohoSecretDep])
reads = APIRouter(prefix="/v1/leads", tags=["leads"], dependencies=[ReadTokenDep])


class ZohoLeadWebhook(BaseModel):
    """Merge fields the Zoho webhook sends; only the lead id is required, the rest is fetched.

    The lead id is accepted as ``lead_id``, ``leadId``, ``LeadId``, ``Lead_Id``, ``id`` and the like.
    """

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    lead_id: str = Field(validation_alias=spellings("lead_id", "id", "Id", "ID"), pattern=ZOHO_ID_PATTERN)
    state: str | None = Field(default=None, max_length=100, validation_alias=spellings("state"))
    city: str | None = Field(default=None, max_length=200, validation_alias=spellings("city"))
    model: str | None = Field(default=None, max_length=200, validation_alias=spellings("model"))
    lead_source: str | None = Field(default=None, max_length=200, validation_alias=spellings("lead_source"))


class WebhookAccepted(BaseModel):
    status: Literal["accepted", "duplicate"]
    workflow_id: str
    lead_id: str


@webhooks.post(
    "/leads",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookAccepted,
    responses=WEBHOOK_ERRORS,
    openapi_extra={**declared_body(ZohoLeadWebhook, FORM, JSON), **security(ZOHO_SECRET)},
)
async def receive_lead(request: Request, settings: SettingsDep, intake: IntakeDep) -> WebhookAccepted:
    """Start (or join) the lead's distribution workflow; answers once the event is durable."""
    body = await read_limited(request, settings.webhook_max_body_bytes)
    webhook = parse_model(ZohoLeadWebhook, parse_fields(body, request.headers.get("content-type", "")))
    event = cloud_event(
        event_id=str(uuid.uuid4()),
        event_type=LEAD_EVENT_REQUESTED,
        source="zoho-crm",
        subject=webhook.lead_id,
        time=datetime.now(UTC),
        data=webhook.model_dump(exclude_none=True),
    )
    started = await intake.submit(
        lambda client, timeout: start_lead_distribution(client, settings, webhook.lead_id, event, timeout)
    )
    return WebhookAccepted(
        status="accepted" if started else "duplicate",
        workflow_id=lead_workflow_id(webhook.lead_id),
        lead_id=webhook.lead_id,
    )


@reads.get(
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
