"""Zoho deal-stage webhooks (each deal's updates go to its one workflow) and the deal read API."""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Request, status
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.body import (
    FORM,
    JSON,
    WEBHOOK_ERRORS,
    ZOHO_ID_PATTERN,
    InstantWithOffset,
    parse_fields,
    parse_model,
    read_errors,
    read_limited,
    spellings,
)
from api.body import request_body as declared_body
from api.deps import IntakeDep, ReadTokenDep, SessionsDep, SettingsDep, ZohoSecretDep
from api.openapi import READ_TOKEN, ZOHO_SECRET, security
from contracts.opportunities import DealChange, signal_deal_change
from core.deals import checked_amount
from core.timeutil import CLOCK_SKEW
from db.opportunities import OpportunityView, get_opportunity

log = logging.getLogger("api")

webhooks = APIRouter(prefix="/webhooks/zoho", tags=["zoho"], dependencies=[ZohoSecretDep])
reads = APIRouter(prefix="/v1/opportunities", tags=["opportunities"], dependencies=[ReadTokenDep])


class ZohoDealWebhook(BaseModel):
    """Merge fields of the deal webhook; only the deal id is required (the rest is fetched).

    Each field is accepted in the common spellings: ``deal_id``, ``dealId``, ``Deal_Id``, ``id``...
    """

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    deal_id: str = Field(
        validation_alias=spellings("deal_id", "id", "Id", "ID", "Potential_Id"), pattern=ZOHO_ID_PATTERN
    )
    stage: str | None = Field(default=None, max_length=100, validation_alias=spellings("stage"))
    modified_time: InstantWithOffset | None = Field(
        default=None,
        validation_alias=spellings("modified_time"),
        description="ISO 8601 with offset; one more than 5 minutes ahead of the hub's clock is left out",
    )
    modified_by: str | None = Field(default=None, max_length=300, validation_alias=spellings("modified_by"))
    amount: Annotated[Decimal | None, AfterValidator(checked_amount)] = Field(
        default=None, validation_alias=spellings("amount")
    )

    def change(self) -> DealChange:
        # A merge field of blanks is as absent as an empty one.
        received_at = datetime.now(UTC)
        return DealChange(
            deal_id=self.deal_id,
            stage=self.stage or None,
            modified_time=self._time_not_ahead(received_at),
            modified_by=self.modified_by or None,
            amount=self.amount,
            received_at=received_at,
        )

    def _time_not_ahead(self, received_at: datetime) -> datetime | None:
        """The change's time, left out where it is ahead of the hub's clock by more than a clock's skew
        (a wrong offset in the webhook's template): it would stay the deal's newest for as long, and
        every real change before it would count as late. Without it, the change is a partial one: the
        deal as Zoho has it now is read and stored, so nothing the webhook announced is lost."""
        if self.modified_time is None or self.modified_time <= received_at + CLOCK_SKEW:
            return self.modified_time
        log.warning(
            "deal %s: webhook Modified_Time %s is ahead of the hub's clock; the deal is read from Zoho",
            self.deal_id,
            self.modified_time.isoformat(),
        )
        return None


class UpdateAccepted(BaseModel):
    status: Literal["accepted"]
    workflow_id: str
    deal_id: str


def _blank_to_none(fields: dict[str, Any]) -> dict[str, Any]:
    # Empty merge fields (a field Zoho had no value for) count as absent.
    return {key: (None if value == "" else value) for key, value in fields.items()}


@webhooks.post(
    "/opportunities",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=UpdateAccepted,
    responses=WEBHOOK_ERRORS,
    openapi_extra={**declared_body(ZohoDealWebhook, FORM, JSON), **security(ZOHO_SECRET)},
)
async def receive_deal_update(request: Request, settings: SettingsDep, intake: IntakeDep) -> UpdateAccepted:
    """Signal (or start and signal) the deal's workflow; answers once the update is durable."""
    body = await read_limited(request, settings.webhook_max_body_bytes)
    fields = _blank_to_none(parse_fields(body, request.headers.get("content-type", "")))
    change = parse_model(ZohoDealWebhook, fields).change()
    workflow_id = await intake.submit(
        lambda client, timeout: signal_deal_change(client, settings, change, timeout)
    )
    return UpdateAccepted(status="accepted", workflow_id=workflow_id, deal_id=change.deal_id)


@reads.get(
    "/{deal_id}",
    response_model=OpportunityView,
    responses=read_errors("deal"),
    openapi_extra=security(READ_TOKEN),
)
async def read_opportunity(
    deal_id: str = Path(pattern=ZOHO_ID_PATTERN), *, sessions: SessionsDep
) -> OpportunityView:
    """Current state of the deal and every stage it went through."""
    deal = await get_opportunity(sessions, deal_id)
    if deal is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no opportunity {deal_id}")
    return deal
