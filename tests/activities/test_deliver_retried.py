"""A delivery attempt whose answer was lost after it recorded the delivery is retried: it calls the
dealer's CRM no second time, and the dealer's SLA still runs from the first record, so the retry gives
the dealer no extra time to accept."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from activities import leads
from activities.leads import DeliverLeadInput, FollowPlanInput, LeadActivities
from clients.subscribers import EventPublisher
from core.constants import LeadStatus
from core.metrics import REGISTRY
from db import deliveries, lead_status
from db.routing import LeadProfile
from tests.db.test_rules_and_routing import dealer, load

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
MEASURED = "hub_lead_received_to_delivered_seconds_count"


class StoringCrm:
    """A dealer CRM that stores every lead it is sent (the hub's key makes a repeat the same lead)."""

    def __init__(self) -> None:
        self.creates: dict[str, int] = {}

    async def create_lead(self, _dealer: Any, _fields: Any, lead_id: str, key: str, **_: Any) -> str:
        self.creates[key] = self.creates.get(key, 0) + 1
        return f"CRM-{lead_id}"


async def test_a_retried_delivery_keeps_the_time_the_dealers_sla_runs_from(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    await load(sessions, {**dealer("a"), "sla": {"accept_within_minutes": 30}})
    claim = await deliveries.claim_next(
        sessions, "L1", LeadProfile("SP", "Santos", "Onix"), date(2026, 11, 24), T0
    )
    assert claim is not None and claim.dealer_id == "a"
    await lead_status.record_status(
        sessions, lead_id="L1", status=LeadStatus.RECEIVED, workflow_id="w", at=T0
    )
    measured = REGISTRY.get_sample_value(MEASURED, {"dealer": "a"}) or 0.0
    crm = StoringCrm()
    async with httpx.AsyncClient() as http:
        steps = LeadActivities(sessions, None, {"rest": crm}, EventPublisher(http, "secret"), [])  # type: ignore[arg-type]
        attempt = DeliverLeadInput(
            lead_id="L1", dealer_id="a", lead={}, idempotency_key=claim.idempotency_key, record_delivered=True
        )
        deadlines = []
        # The first attempt recorded the delivery and its answer was lost; the retry comes 20 min later.
        for now in (T0, T0 + timedelta(minutes=20)):
            monkeypatch.setattr(leads, "utcnow", lambda now=now: now)
            environment = ActivityEnvironment()  # Temporal's clock and the hub's agree
            environment.info = dataclasses.replace(environment.info, started_time=now)
            result = await environment.run(steps.deliver_lead, attempt)
            assert result.plan is not None
            deadlines.append((result.plan.sla_deadline, result.plan.sla_wait_until))
    assert crm.creates == {claim.idempotency_key: 1}  # recorded delivered: the retry calls no CRM again
    deadline = T0 + timedelta(minutes=30)
    assert [at for at, _ in deadlines] == [deadline.isoformat()] * 2
    assert len({until for _, until in deadlines}) == 1  # the run's timer too (Temporal's clock)
    held = await deliveries.holding(sessions, "L1", "a")
    assert held.delivered_at == T0
    # The time from the webhook to the dealer's CRM is measured once, not again by the retry.
    assert REGISTRY.get_sample_value(MEASURED, {"dealer": "a"}) == measured + 1


async def test_a_rules_load_after_the_delivery_moves_not_its_deadline(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ops lengthen the dealer's SLA while a lead waits on it: the run's timer keeps the deadline the
    delivery was given, and so do a later run of the lead (its follow plan) and GET /v1/leads/{id}."""
    await load(sessions, {**dealer("a"), "sla": {"accept_within_minutes": 30}})
    claim = await deliveries.claim_next(
        sessions, "L2", LeadProfile("SP", "Santos", "Onix"), date(2026, 11, 24), T0
    )
    assert claim is not None
    await lead_status.record_status(
        sessions, lead_id="L2", status=LeadStatus.RECEIVED, workflow_id="w", at=T0
    )
    monkeypatch.setattr(leads, "utcnow", lambda: T0)
    async with httpx.AsyncClient() as http:
        steps = LeadActivities(sessions, None, {"rest": StoringCrm()}, EventPublisher(http, "secret"), [])  # type: ignore[arg-type]
        delivery = DeliverLeadInput(
            lead_id="L2", dealer_id="a", lead={}, idempotency_key=claim.idempotency_key, record_delivered=True
        )
        delivered = await ActivityEnvironment().run(steps.deliver_lead, delivery)
        await load(sessions, {**dealer("a"), "sla": {"accept_within_minutes": 240}})
        later = await ActivityEnvironment().run(steps.follow_plan, FollowPlanInput("L2", "a"))
    given = T0 + timedelta(minutes=30)
    assert delivered.plan is not None and delivered.plan.sla_deadline == given.isoformat()
    assert later.sla_deadline == given.isoformat()
    view = await lead_status.get_lead(sessions, "L2")
    assert view is not None and [d.accept_by for d in view.deliveries] == [given]
