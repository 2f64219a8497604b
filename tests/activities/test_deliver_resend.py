"""A create an earlier run of the lead sent is known to the next run: its first attempt is a re-send (an
ADF document says ``status="resend"``, a SOAP DMS is looked up only once the earlier create could land),
and a dealer taken out of the rules meanwhile may hold the lead (the run has it asked to drop it)."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.leads import NO_EARLIER_ATTEMPT, UNKNOWN_DEALER, DeliverLeadInput, LeadActivities
from clients.errors import TransientError
from clients.subscribers import EventPublisher
from db import deliveries
from db.routing import LeadProfile
from tests.db.test_rules_and_routing import dealer, load

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


class SlowCrm:
    """A dealer CRM whose first create gets no answer in time (it may store the lead all the same)."""

    def __init__(self) -> None:
        self.resends: list[bool] = []

    async def create_lead(self, _dealer: Any, _fields: Any, lead_id: str, _key: str, **call: Any) -> str:
        self.resends.append(call["resend"])
        if len(self.resends) == 1:
            raise TransientError("crm:a", "no answer in time")
        return f"CRM-{lead_id}"


async def a_claim_at_a(sessions: async_sessionmaker[AsyncSession], lead_id: str) -> DeliverLeadInput:
    claim = await deliveries.claim_next(
        sessions, lead_id, LeadProfile("SP", "Santos", "Onix"), date(2026, 11, 24), T0
    )
    assert claim is not None and claim.dealer_id == "a"
    return DeliverLeadInput(lead_id=lead_id, dealer_id="a", lead={}, idempotency_key=claim.idempotency_key)


def lead_steps(
    sessions: async_sessionmaker[AsyncSession], http: httpx.AsyncClient, crm: SlowCrm
) -> LeadActivities:
    return LeadActivities(sessions, None, {"rest": crm}, EventPublisher(http, "secret"), [])  # type: ignore[arg-type]


async def test_the_first_attempt_of_a_later_run_is_a_resend(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await load(sessions, dealer("a"))
    delivery = await a_claim_at_a(sessions, "L1")
    crm = SlowCrm()
    async with httpx.AsyncClient() as http:
        steps = lead_steps(sessions, http, crm)
        # The first run's first attempt sends and hears nothing; the run is terminated. A resent webhook
        # starts a new run, whose first attempt (attempt 1 again) resumes the delivery.
        with pytest.raises(ApplicationError) as unanswered:
            await ActivityEnvironment().run(steps.deliver_lead, delivery)
        assert not unanswered.value.non_retryable
        delivered = await ActivityEnvironment().run(steps.deliver_lead, delivery)
    assert crm.resends == [False, True]
    assert delivered.dealer_lead_id == "CRM-L1"


async def test_a_dealer_out_of_the_rules_after_an_earlier_runs_send_may_hold_the_lead(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await load(sessions, dealer("a"))
    delivery = await a_claim_at_a(sessions, "L2")
    async with httpx.AsyncClient() as http:
        steps = lead_steps(sessions, http, SlowCrm())
        with pytest.raises(ApplicationError) as unanswered:
            await ActivityEnvironment().run(steps.deliver_lead, delivery)
        assert not unanswered.value.non_retryable
        await load(sessions, dealer("b"))  # ops take "a" out of the rules; a new run starts
        with pytest.raises(ApplicationError) as raised:
            await ActivityEnvironment().run(steps.deliver_lead, delivery)
    assert raised.value.type == UNKNOWN_DEALER
    # Its first attempt, but the earlier run's create may have reached the CRM: no "no earlier attempt".
    assert NO_EARLIER_ATTEMPT not in raised.value.details
