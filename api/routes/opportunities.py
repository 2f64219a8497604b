"""Zoho deal-stage webhooks: every update of a deal goes to that deal's one workflow."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Path, Request, status
from pydantic import AliasChoices, AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from temporalio.common import SearchAttributePair

from api.body import parse_fields, read_limited
from api.deps import ReadTokenDep, SessionsDep, SettingsDep, TemporalClientDep, ZohoSecretDep
from api.routes.zoho import ERRORS, ZOHO_ID_PATTERN, validation_message
from api.temporal import signal_with_start
from core.constants import DEAL_ID, opportunity_workflow_id
from db.opportunities import OpportunityView, get_opportunity
from workflows.opportunity_sync import DEAL_CHANGED, DealChange, OpportunitySyncInput, OpportunitySyncWorkflow

webhooks = APIRouter(prefix="/webhooks/zoho", tags=["zoho"], dependencies=[ZohoSecretDep])
reads = APIRouter(prefix="/v1/opportunities", tags=["opportunities"], dependencies=[ReadTokenDep])


class ZohoDealWebhook(BaseModel):
    """Merge fields of the deal webhook; only the deal id is required (the rest is fetched)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    deal_id: str = Field(validation_alias=AliasChoices("deal_id", "id", "Deal_Id"), pattern=ZOHO_ID_PATTERN)
    stage: str | None = Field(default=None, max_length=100)
    modified_time: AwareDatetime | None = None
    modified_by: str | None = Field(default=None, max_length=300)
    amount: Decimal | None = None

    def change(self) -> DealChange:
        # Empty merge fields (a field Zoho had no value for) count as absent.
        return DealChange(
            deal_id=self.deal_id,
            stage=self.stage or None,
            modified_time=self.modified_time.isoformat() if self.modified_time else None,
            modified_by=self.modified_by or None,
            amount=None if self.amount is None else str(self.amount),
            received_at=datetime.now(UTC).isoformat(),
        )


def _blank_to_none(fields: dict[str, Any]) -> dict[str, Any]:
    return {key: (None if value == "" else value) for key, value in fields.items()}


class UpdateAccepted(BaseModel):
    status: Literal["accepted"]
    workflow_id: str
    deal_id: str


@webhooks.post(
    "/opportunities", status_code=status.HTTP_202_ACCEPTED, response_model=UpdateAccepted, responses=ERRORS
)
async def receive_deal_update(
    request: Request, settings: SettingsDep, temporal: TemporalClientDep
) -> UpdateAccepted:
    """Signal (or start and signal) the deal's workflow; answers once the update is durable."""
    body = await read_limited(request, settings.webhook_max_body_bytes)
    fields = _blank_to_none(parse_fields(body, request.headers.get("content-type", "")))
    try:
        webhook = ZohoDealWebhook.model_validate(fields)
    except ValidationError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, validation_message(error)) from error
    workflow_id = opportunity_workflow_id(webhook.deal_id)
    await signal_with_start(
        temporal,
        settings,
        workflow=OpportunitySyncWorkflow.run,
        arg=OpportunitySyncInput(
            deal_id=webhook.deal_id,
            idle_close_seconds=settings.opportunity_idle_close_seconds,
            batch_window_seconds=settings.opportunity_batch_window_seconds,
            changes_per_run=settings.opportunity_changes_per_run,
        ),
        signal=DEAL_CHANGED,
        signal_arg=webhook.change(),
        workflow_id=workflow_id,
        task_queue=settings.opportunities_task_queue,
        search_attributes=[SearchAttributePair(DEAL_ID, webhook.deal_id)],
    )
    return UpdateAccepted(status="accepted", workflow_id=workflow_id, deal_id=webhook.deal_id)


@reads.get("/{deal_id}", response_model=OpportunityView, responses={404: {"description": "no such deal"}})
async def read_opportunity(
    deal_id: str = Path(pattern=ZOHO_ID_PATTERN), *, sessions: SessionsDep
) -> OpportunityView:
    """Current state of the deal and every stage it went through."""
    deal = await get_opportunity(sessions, deal_id)
    if deal is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no opportunity {deal_id}")
    return deal
