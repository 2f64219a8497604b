"""Activities of opportunity replication: read a deal from Zoho, store it in the central database."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.leads import as_application_error
from clients.errors import PermanentError, TransientError
from clients.zoho import ZohoClient
from db.opportunities import DealState, apply_change
from db.timeutil import as_utc, utcnow

DEAL_NOT_FOUND = "DealNotFound"


@dataclass
class DealFields:
    """A deal's replicated fields as plain strings (times ISO 8601, amounts decimal text)."""

    deal_id: str
    modified_time: str
    stage: str | None = None
    deal_name: str | None = None
    amount: str | None = None
    closing_date: str | None = None
    probability: int | None = None
    account_name: str | None = None
    contact_name: str | None = None
    owner_name: str | None = None
    modified_by: str | None = None


@dataclass
class FetchDealInput:
    deal_id: str


@dataclass
class ApplyDealInput:
    deal: DealFields


@dataclass
class ApplyDealResult:
    outcome: str  # "applied", "stale" (history only) or "repeated"


def _name(value: Any) -> str | None:
    # Zoho lookups come as {"id", "name"}.
    if isinstance(value, dict):
        return str(value.get("name")) if value.get("name") is not None else None
    return str(value) if value not in (None, "") else None


def deal_from_zoho(record: dict[str, Any]) -> DealFields:
    """The fields we replicate from a Zoho Deals record."""
    probability = record.get("Probability")
    return DealFields(
        deal_id=str(record["id"]),
        modified_time=str(record["Modified_Time"]),
        stage=_name(record.get("Stage")),
        deal_name=_name(record.get("Deal_Name")),
        amount=None if record.get("Amount") is None else str(record["Amount"]),
        closing_date=_name(record.get("Closing_Date")),
        probability=None if probability is None else int(probability),
        account_name=_name(record.get("Account_Name")),
        contact_name=_name(record.get("Contact_Name")),
        owner_name=_name(record.get("Owner")),
        modified_by=_name(record.get("Modified_By")),
    )


def to_state(fields: DealFields) -> DealState:
    try:
        amount = None if fields.amount is None else Decimal(fields.amount)
    except InvalidOperation as error:
        raise ApplicationError(f"amount {fields.amount!r} is not a number", non_retryable=True) from error
    return DealState(
        deal_id=fields.deal_id,
        modified_time=as_utc(datetime.fromisoformat(fields.modified_time)),
        stage=fields.stage,
        deal_name=fields.deal_name,
        amount=amount,
        closing_date=fields.closing_date,
        probability=fields.probability,
        account_name=fields.account_name,
        contact_name=fields.contact_name,
        owner_name=fields.owner_name,
        modified_by=fields.modified_by,
    )


class OpportunityActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], zoho: ZohoClient) -> None:
        self._sessions = sessions
        self._zoho = zoho

    @activity.defn
    async def fetch_deal(self, params: FetchDealInput) -> DealFields:
        """The deal as Zoho has it now (webhooks carry only a few merge fields)."""
        try:
            record = await self._zoho.get_deal(params.deal_id)
        except (TransientError, PermanentError) as error:
            raise as_application_error(error) from error
        if record is None:
            raise ApplicationError(
                f"Zoho has no deal {params.deal_id}", type=DEAL_NOT_FOUND, non_retryable=True
            )
        return deal_from_zoho(record)

    @activity.defn
    async def apply_deal_change(self, params: ApplyDealInput) -> ApplyDealResult:
        """Upsert the deal unless the database already has a newer state; retried while it is down."""
        outcome = await apply_change(self._sessions, to_state(params.deal), utcnow())
        return ApplyDealResult(outcome=outcome)
