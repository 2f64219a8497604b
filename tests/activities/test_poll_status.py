"""What a read of a dealer's CRM takes from its answer, as the dealers' webhook would: a status in any
case, a missing time as the read's; never a status the hub does not know; and a status read again keeps
the time it was first kept with, so the run does not pass it on anew each read."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from activities import leads
from activities.leads import LeadActivities, PollStatusInput
from clients.dealer_crm import RestDealerCrm
from clients.subscribers import EventPublisher
from db import deliveries
from db.routing import LeadProfile
from tests.db.test_rules_and_routing import dealer, load

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


READ = {"sla": {"accept_within_minutes": 30, "status_poll_seconds": 300}}


async def read_twice(
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    *answers: dict[str, Any],
    rules_since: dict[str, Any] | None = None,
) -> list[tuple[str, str, bool]]:
    """Lead P1 delivered to dealer a (read every 5 minutes) at T0; its CRM answers ``answers`` in turn,
    one read a minute from T0 + 10 min: what each read returned (status, time, applied).
    ``rules_since``: dealer a's rules as loaded after the delivery."""
    await load(sessions, {**dealer("a"), **READ})
    await deliveries.claim_next(sessions, "P1", LeadProfile("SP", "Santos", "Onix"), date(2026, 11, 24), T0)
    async with sessions.begin() as session:
        await deliveries.mark_delivered(
            session, lead_id="P1", dealer_id="a", dealer_lead_id="CRM-1", day=T0.date(), at=T0
        )
    if rules_since is not None:
        await load(sessions, rules_since)
    replies = iter(answers)
    transport = httpx.MockTransport(lambda _: httpx.Response(200, json=next(replies)))
    read = []
    async with httpx.AsyncClient(transport=transport) as crm_http, httpx.AsyncClient() as http:
        crm = RestDealerCrm(crm_http, {})
        steps = LeadActivities(sessions, None, {"rest": crm}, EventPublisher(http, "secret"), [])  # type: ignore[arg-type]
        for minute in range(len(answers)):
            now = T0 + timedelta(minutes=10 + minute)
            monkeypatch.setattr(leads, "utcnow", lambda now=now: now)
            polled = await ActivityEnvironment().run(
                steps.poll_dealer_status, PollStatusInput("P1", "a", "CRM-1")
            )
            read.append((polled.status, polled.at, polled.applied))
    return read


async def test_a_status_in_capitals_without_a_time_is_taken_at_the_read(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    read = await read_twice(sessions, monkeypatch, {"status": "Accepted"})
    assert read == [("accepted", (T0 + timedelta(minutes=10)).isoformat(), True)]


async def test_a_status_the_hub_does_not_know_is_not_taken(
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    read = await read_twice(sessions, monkeypatch, {"status": "in_progress", "at": T0.isoformat()})
    assert read == [(None, "", False)]
    assert "answered status in_progress, which the hub does not know" in caplog.text


async def test_a_status_read_again_keeps_its_first_time(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A CRM that stamps the status with its record's last change: the second read says a later time."""
    first = T0 + timedelta(minutes=5)
    read = await read_twice(
        sessions,
        monkeypatch,
        {"status": "accepted", "at": first.isoformat()},
        {"status": "accepted", "at": (first + timedelta(minutes=6)).isoformat()},
    )
    assert read == [("accepted", first.isoformat(), True)] * 2


async def test_a_dealer_whose_reads_the_rules_took_out_is_not_asked(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    unread = {**dealer("a"), "sla": {"accept_within_minutes": 30}}
    read = await read_twice(sessions, monkeypatch, {"status": "accepted"}, rules_since=unread)
    assert read == [(None, "", False)]  # (asked, its CRM would have given the acceptance)
