"""What a read of a dealer's CRM takes from its answer, as the dealers' webhook would: a status in any
case, a missing time as the read's; never a status the hub does not know; and a status read again keeps
the time it was first kept with, so the run does not pass it on anew each read."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import ActivityEnvironment

from activities import leads
from activities.leads import LeadActivities, PollStatusInput
from clients.dealer_crm import RestDealerCrm
from clients.subscribers import EventPublisher
from db import deliveries
from db.models import DeliveryRelease
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
    await deliver(sessions, "a", "CRM-1", T0)
    if rules_since is not None:
        await load(sessions, rules_since)
    replies = iter(answers)
    crm = httpx.MockTransport(lambda _: httpx.Response(200, json=next(replies)))
    times = [T0 + timedelta(minutes=10 + minute) for minute in range(len(answers))]
    return await read_at(sessions, monkeypatch, crm, "CRM-1", times)


async def deliver(
    sessions: async_sessionmaker[AsyncSession], dealer_id: str, dealer_lead_id: str, at: datetime
) -> None:
    """Lead P1 routed to ``dealer_id`` (the only dealer the rules have) and delivered at ``at``."""
    await deliveries.claim_next(sessions, "P1", LeadProfile("SP", "Santos", "Onix"), at.date(), at)
    async with sessions.begin() as session:
        await deliveries.mark_delivered(
            session, lead_id="P1", dealer_id=dealer_id, dealer_lead_id=dealer_lead_id, day=at.date(), at=at
        )


async def read_at(
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    crm: httpx.MockTransport,
    dealer_lead_id: str,
    times: list[datetime],
) -> list[tuple[str, str, bool]]:
    """Dealer a's CRM (``crm``) read for lead P1 at each of ``times``, as the run knows the lead there
    (``dealer_lead_id``): what each read returned (status, time, applied)."""
    read = []
    async with httpx.AsyncClient(transport=crm) as crm_http, httpx.AsyncClient() as http:
        rest = RestDealerCrm(crm_http, {})
        steps = LeadActivities(sessions, None, {"rest": rest}, EventPublisher(http, "secret"), [])  # type: ignore[arg-type]
        for now in times:
            monkeypatch.setattr(leads, "utcnow", lambda now=now: now)
            polled = await ActivityEnvironment().run(
                steps.poll_dealer_status, PollStatusInput("P1", "a", dealer_lead_id)
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


async def test_a_lead_looked_up_at_a_crm_whose_clock_runs_behind_is_found(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dealer's create answer named no id, and its CRM's clock runs 10 minutes behind ours: the
    record it stamped as created before the delivery is this delivery's all the same (the lead was
    never at this dealer before), and its acceptance is taken."""
    await load(sessions, {**dealer("a"), **READ})
    await deliver(sessions, "a", "", T0)
    behind = T0 - timedelta(minutes=10)
    record = {"id": "CRM-9", "external_id": "P1", "created_at": behind.isoformat()}
    status = {"status": "accepted", "at": (behind + timedelta(minutes=3)).isoformat()}

    def crm(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/status"):
            assert request.url.path == "/a/api/v1/leads/CRM-9/status"
            return httpx.Response(200, json=status)
        return httpx.Response(200, json={"data": [record]})

    read = await read_at(sessions, monkeypatch, httpx.MockTransport(crm), "", [T0 + timedelta(minutes=10)])
    assert read == [("accepted", status["at"], True)]


async def test_a_lead_sent_back_to_a_dealer_takes_no_status_of_its_earlier_record(
    sessions: async_sessionmaker[AsyncSession], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Support moved the lead from dealer a to b, then back to a, whose CRM keeps one record per lead
    and answers the create with the record it made the first time (CRM-1). Its status, timed before
    the lead came back, is the earlier delivery's acceptance and is not taken; the dealer's acceptance
    after it is. Where the create named no id, the lookup leaves the earlier record out."""
    await load(sessions, {**dealer("a"), **READ}, dealer("b"))
    await deliver(sessions, "a", "CRM-1", T0)
    back = T0 + timedelta(hours=2)
    for to, at in (("b", T0 + timedelta(hours=1)), ("a", back)):
        await deliveries.reassign(sessions, "P1", to, at.date(), at, reason="test", reassigned_by="support")
        async with sessions.begin() as session:  # the drop each move owes, answered
            await session.execute(update(DeliveryRelease).values(crm_outcome="withdrawn"))
    async with sessions.begin() as session:
        await deliveries.mark_delivered(
            session, lead_id="P1", dealer_id="a", dealer_lead_id="CRM-1", day=back.date(), at=back
        )
    earlier = {"status": "accepted", "at": (T0 + timedelta(minutes=20)).isoformat()}
    anew = {"status": "accepted", "at": (back + timedelta(minutes=12)).isoformat()}
    answers = iter([earlier, anew])
    crm = httpx.MockTransport(lambda _: httpx.Response(200, json=next(answers)))
    times = [back + timedelta(minutes=10), back + timedelta(minutes=15)]
    assert await read_at(sessions, monkeypatch, crm, "CRM-1", times) == [
        (None, "", False),
        ("accepted", anew["at"], True),
    ]

    def looked_up(request: httpx.Request) -> httpx.Response:
        assert not request.url.path.endswith("/status")  # the earlier record is not read
        return httpx.Response(200, json={"data": [{"id": "CRM-1", "external_id": "P1"}]})

    assert await read_at(sessions, monkeypatch, httpx.MockTransport(looked_up), "", [back]) == [
        (None, "", False)
    ]
