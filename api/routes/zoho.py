"""Zoho CRM webhooks (workflow-rule webhooks: the record id and a few merge fields)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError
from temporalio.common import SearchAttributePair

from api.body import parse_fields, read_limited
from api.deps import SettingsDep, TemporalClientDep, ZohoSecretDep
from api.temporal import start_once
from core.constants import LEAD_EVENT_REQUESTED, LEAD_ID, lead_workflow_id
from core.events import cloud_event
from workflows.lead_distribution import LeadDistributionInput, LeadDistributionWorkflow

router = APIRouter(prefix="/webhooks/zoho", tags=["zoho"], dependencies=[ZohoSecretDep])

ZOHO_ID_PATTERN = r"^[0-9]{1,30}$"


class ZohoLeadWebhook(BaseModel):
    """Merge fields the Zoho webhook sends; only the lead id is required, the rest is fetched."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    lead_id: str = Field(validation_alias=AliasChoices("lead_id", "id", "Lead_Id"), pattern=ZOHO_ID_PATTERN)
    state: str | None = Field(default=None, max_length=100)
    city: str | None = Field(default=None, max_length=200)
    model: str | None = Field(default=None, max_length=200)
    lead_source: str | None = Field(default=None, max_length=200)


class WebhookAccepted(BaseModel):
    status: Literal["accepted", "duplicate"]
    workflow_id: str
    lead_id: str


def validation_message(error: ValidationError) -> str:
    """One line naming each offending field, e.g. ``lead_id: Field required``."""
    parts = [f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()]
    return "invalid webhook: " + "; ".join(parts)


ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong shared secret"},
    413: {"description": "body over the size limit"},
    415: {"description": "neither form-encoded nor JSON"},
    422: {"description": "lead id missing or malformed"},
    503: {"description": "not made durable; retry after the Retry-After delay"},
}


@router.post("/leads", status_code=status.HTTP_202_ACCEPTED, response_model=WebhookAccepted, responses=ERRORS)
async def receive_lead(
    request: Request, settings: SettingsDep, temporal: TemporalClientDep
) -> WebhookAccepted:
    """Start (or join) the lead's distribution workflow; answers once the event is durable."""
    body = await read_limited(request, settings.webhook_max_body_bytes)
    fields = parse_fields(body, request.headers.get("content-type", ""))
    try:
        webhook = ZohoLeadWebhook.model_validate(fields)
    except ValidationError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, validation_message(error)) from error

    workflow_id = lead_workflow_id(webhook.lead_id)
    event = cloud_event(
        event_id=str(uuid.uuid4()),
        event_type=LEAD_EVENT_REQUESTED,
        source="zoho-crm",
        subject=webhook.lead_id,
        time=datetime.now(UTC),
        data=webhook.model_dump(exclude_none=True),
    )
    outcome = await start_once(
        temporal,
        settings,
        workflow=LeadDistributionWorkflow.run,
        arg=LeadDistributionInput(
            lead_id=webhook.lead_id,
            event=event,
            assign_deadline_seconds=settings.assign_dealer_deadline_seconds,
            delivery_attempt_timeout_seconds=settings.dealer_delivery_attempt_timeout_seconds,
            delivery_retry_window_seconds=settings.dealer_delivery_retry_window_seconds,
        ),
        workflow_id=workflow_id,
        task_queue=settings.leads_task_queue,
        search_attributes=[SearchAttributePair(LEAD_ID, webhook.lead_id)],
    )
    return WebhookAccepted(status=outcome, workflow_id=workflow_id, lead_id=webhook.lead_id)
