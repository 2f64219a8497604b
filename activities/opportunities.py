"""Activities of opportunity replication: read a deal from Zoho, store it in the central database."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import PERMANENT_FAILURE, external_call
from clients.zoho import ZohoClient
from core.deals import DealState, InvalidDeal, deal_from_zoho
from core.timeutil import utcnow
from db.opportunities import apply_change, known_lead

DEAL_NOT_FOUND = "DealNotFound"
# The most a deal's first read spends looking for the lead it was converted from (several pages of
# Zoho's converted leads): well within the step's 30 s, which the read of the deal shares.
LEAD_LOOKUP_SECONDS = 15
LEAD_LOOKUP_ATTEMPTS = 3  # attempts of the read whose lookups may time out before the link is left out
# What the step keeps, after the lookup, to return the deal without the link before its own timeout.
LOOKUP_MARGIN_SECONDS = 3


@dataclass
class FetchDealInput:
    deal_id: str


@dataclass
class ApplyDealInput:
    deal: DealState
    # Zoho's record as read after the change, not a webhook laid over it: at the current state's own
    # time (second precision) it is the later of two moves made within that second.
    record_read: bool = False


@dataclass
class ApplyDealResult:
    outcome: str  # "applied", "current" (stored before, still current), "stale" (history only) or "repeated"


class OpportunityActivities:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], zoho: ZohoClient) -> None:
        self._sessions = sessions
        self._zoho = zoho

    @activity.defn
    async def fetch_deal(self, params: FetchDealInput) -> DealState:
        """The deal as Zoho has it now (webhooks carry only a few merge fields)."""
        began = time.monotonic()
        with external_call():
            record = await self._zoho.get_deal(params.deal_id)
        if record is None:
            raise ApplicationError(
                f"Zoho has no deal {params.deal_id}", type=DEAL_NOT_FOUND, non_retryable=True
            )
        try:
            deal = replace(deal_from_zoho(record), read_at=utcnow())
        except InvalidDeal as error:
            raise ApplicationError(str(error), type=PERMANENT_FAILURE, non_retryable=True) from error
        return await self._with_converted_lead(deal, began)

    async def _with_converted_lead(self, deal: DealState, began: float) -> DealState:
        """The deal with the lead it was converted from: looked up in Zoho the first time the hub sees
        the deal (a conversion creates the deal, so its first change is the one to look at), then kept.
        A lookup Zoho did not answer in the time the step has left (``began``: its start) is tried again
        by the deal's next change."""
        known = await known_lead(self._sessions, deal.deal_id)
        if (known.replicated and not known.lookup_missed) or deal.created_time is None:
            return replace(deal, lead_id=known.lead_id)
        budget = _lookup_budget(began)
        try:
            if budget <= 0:
                raise TimeoutError  # the read of the deal took the step's time: no lookup fits in it
            async with asyncio.timeout(budget):
                with external_call():
                    lead_id = await self._zoho.converted_lead_of(deal.deal_id, deal.created_time)
            return replace(deal, lead_id=lead_id, lead_lookup_missed=False)
        except TimeoutError:
            # A slow Zoho over several pages would time out every attempt of the step, and the deal
            # would never be stored. The first change's next attempts look again (a slow moment
            # passes); past LEAD_LOOKUP_ATTEMPTS, and at once for a later change, the deal is stored
            # without the link and marked, so that its next change looks again.
            if not known.replicated and activity.info().attempt < LEAD_LOOKUP_ATTEMPTS:
                raise ApplicationError(
                    f"no answer to the lookup of the deal's converted lead within {max(budget, 0):.0f} s"
                ) from None
            activity.logger.warning(
                "deal %s: no answer to the lookup of its converted lead within %.0f s; stored without"
                " it, its next change looks again",
                deal.deal_id,
                max(budget, 0),
            )
            return replace(deal, lead_id=None, lead_lookup_missed=True)

    @activity.defn
    async def apply_deal_change(self, params: ApplyDealInput) -> ApplyDealResult:
        """Upsert the deal unless the database already has a newer state; retried while it is down."""
        outcome = await apply_change(self._sessions, params.deal, utcnow(), record_read=params.record_read)
        return ApplyDealResult(outcome=outcome)


def _lookup_budget(began: float) -> float:
    """Seconds the converted lead's lookup may take: ``LEAD_LOOKUP_SECONDS``, within what the step has
    left once Zoho's token and the deal's read took their time (``began``: the step's start), so that an
    attempt gives up the lookup and returns the deal before its own timeout ends it."""
    timeout = activity.info().start_to_close_timeout
    if timeout is None:
        return LEAD_LOOKUP_SECONDS
    left = timeout.total_seconds() - (time.monotonic() - began) - LOOKUP_MARGIN_SECONDS
    return min(LEAD_LOOKUP_SECONDS, left)
