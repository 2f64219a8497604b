"""The relay's sweep: reports left due (a Temporal outage) reach their runs several at a time, and a
sweep that meets Temporal away leaves the rest for the next one."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any, cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api import relay as relay_module
from api.relay import SWEEP_CONCURRENCY, ReportRelay
from core.constants import LeadStatus
from core.settings import Settings
from db import deliveries, feedback
from db.feedback import DueReport
from db.routing import LeadProfile
from tests.db.test_rules_and_routing import DAY, T0, dealer, load

LEADS = 3 * SWEEP_CONCURRENCY


class Temporal:
    """Stands for the lead runs' side of a hand-over: takes each report after a round trip, or not."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], *, away: bool = False) -> None:
        self.sessions, self.away = sessions, away
        self.under_way = self.most_at_once = self.asked = 0

    async def hand_on(self, report: DueReport) -> bool:
        self.asked += 1
        self.under_way += 1
        self.most_at_once = max(self.most_at_once, self.under_way)
        try:
            await asyncio.sleep(0.05)
        finally:
            self.under_way -= 1
        if self.away:
            return False
        await feedback.handed_on(self.sessions, report)
        return True


async def reports_due(sessions: async_sessionmaker[AsyncSession], prefix: str) -> None:
    """A delivered lead per report, each with an acceptance whose first hand-over never happened."""
    for n in range(LEADS):
        lead_id = f"{prefix}{n}"
        claim = await deliveries.claim_next(sessions, lead_id, LeadProfile("SP", "Santos", "Onix"), DAY, T0)
        assert claim is not None
        recorded = await feedback.record(
            sessions,
            lead_id=lead_id,
            dealer_id=claim.dealer_id,
            status=LeadStatus.ACCEPTED,
            at=T0,
            received_at=T0,
            to_signal=True,
        )
        assert recorded.due is not None


async def backlog(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch, *, away: bool = False
) -> tuple[Temporal, ReportRelay]:
    """``LEADS`` reports due, and a relay whose hand-overs go to the stand-in, at the sweep's time."""
    await load(sessions, dealer("a", daily_capacity=10 * LEADS))
    await reports_due(sessions, "L")
    temporal = Temporal(sessions, away=away)
    no_client = cast(Client, None)  # the hand-over itself is the stand-in's
    relay = ReportRelay(no_client, Settings(environment="test"), sessions)
    monkeypatch.setattr(relay, "_hand_on", temporal.hand_on)
    monkeypatch.setattr(relay_module, "utcnow", lambda: T0 + feedback.HAND_OVER_GRACE)
    return temporal, relay


async def test_a_backlog_of_reports_is_handed_on_several_at_a_time(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    temporal, relay = await backlog(sessions, monkeypatch)

    assert await relay.sweep() == LEADS
    assert temporal.asked == LEADS
    assert 1 < temporal.most_at_once <= SWEEP_CONCURRENCY
    assert await relay.sweep() == 0  # each handed on once


async def test_a_sweep_that_meets_temporal_away_leaves_the_rest_due(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    temporal, relay = await backlog(sessions, monkeypatch, away=True)

    assert await relay.sweep() == 0
    assert 0 < temporal.asked <= SWEEP_CONCURRENCY  # those under way when the first failed, no more
    # The reports tried are claimed for a while; every other one is due at the next sweep.
    next_sweep = T0 + feedback.HAND_OVER_GRACE
    assert len(await feedback.due_reports(sessions, next_sweep, 10 * LEADS)) == LEADS - temporal.asked
    after_claim = next_sweep + relay_module.CLAIM + timedelta(seconds=1)
    assert len(await feedback.due_reports(sessions, after_claim, 10 * LEADS)) == LEADS


async def test_a_sweep_that_meets_the_database_away_stops_every_hand_over(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    temporal, relay = await backlog(sessions, monkeypatch)
    claims = 0
    claim = feedback.claim

    async def claim_until_the_database_goes(*args: Any) -> DueReport | None:
        nonlocal claims
        claims += 1
        if claims == SWEEP_CONCURRENCY + 2:
            raise ConnectionError("the portal database went away")
        return await claim(*args)

    monkeypatch.setattr(feedback, "claim", claim_until_the_database_goes)
    with pytest.raises(ConnectionError):
        await relay.sweep()
    asked, claimed = temporal.asked, claims
    await asyncio.sleep(0.2)  # longer than a hand-over: none goes on in the background
    assert (temporal.asked, claims, temporal.under_way) == (asked, claimed, 0)
    assert claimed < LEADS
