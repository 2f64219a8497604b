"""Reading the lead flow's changes for the warehouse: pages that never skip or repeat a change, in the
order the portal recorded them (a dealer's report carrying an old time is still found)."""

from __future__ import annotations

import argparse
from dataclasses import replace
from datetime import date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cli.leads import support_login
from core.constants import LeadStatus
from core.deals import DealState
from core.timeutil import utcnow
from db import deliveries, lead_changes
from db.lead_status import record_status
from db.models import LeadStatusChange
from db.opportunities import apply_change
from db.routing import LeadProfile
from db.rules import RulesFile, apply_rules
from tests.db.test_rules_and_routing import dealer
from warehouse.leads import lead_record

STEPS = (LeadStatus.RECEIVED, LeadStatus.ROUTED, LeadStatus.DELIVERED)


async def read_all(
    sessions: async_sessionmaker[AsyncSession], since: datetime | None, until: datetime, limit: int
) -> list[lead_changes.Change]:
    """Every status change of the window, a page of ``limit`` at a time, as the sync reads them."""
    found: list[lead_changes.Change] = []
    after = None
    while True:
        page = await lead_changes.changes(sessions, "status", since, until, after, limit)
        found += page
        if len(page) < limit:
            return found
        after = page[-1].cursor


async def test_pages_hold_each_change_once_even_when_they_share_a_time(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    for number in range(5):
        lead_id = f"57257670000004120{number:02d}"
        for step, status in enumerate(STEPS):
            await record_status(
                sessions, lead_id=lead_id, status=status, workflow_id=f"lead-{lead_id}", at=utcnow(),
                dealer_id="d1" if step else None,
            )  # fmt: skip
    # Ten of the fifteen changes recorded at one instant: only the key tells them apart.
    same = utcnow() - timedelta(seconds=1)
    async with sessions.begin() as session:
        await session.execute(
            update(LeadStatusChange).where(LeadStatusChange.status != "received").values(recorded_at=same)
        )
    until = utcnow()
    for limit in (2, 3, 7, 100):
        found = await read_all(sessions, None, until, limit)
        keys = [change.key for change in found]
        assert len(keys) == len(set(keys)) == 15, limit
        assert [(c.at, int(c.key)) for c in found] == sorted((c.at, int(c.key)) for c in found)
    assert {change.fields["status"] for change in found} == {"received", "routed", "delivered"}
    assert await read_all(sessions, until, until + timedelta(minutes=1), 2) == []


async def test_a_report_with_an_old_time_is_read_in_the_window_that_recorded_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    lead_id = "5725767000000412099"
    common = {"lead_id": lead_id, "workflow_id": f"lead-{lead_id}"}
    await record_status(sessions, status=LeadStatus.RECEIVED, at=utcnow(), **common)
    first_until = utcnow()
    assert len(await read_all(sessions, None, first_until, 10)) == 1
    # The dealer says it accepted three hours ago; the portal records it now.
    three_hours_ago = utcnow() - timedelta(hours=3)
    await record_status(sessions, status=LeadStatus.ACCEPTED, dealer_id="d1", at=three_hours_ago, **common)
    [accepted] = await read_all(sessions, first_until, utcnow(), 10)
    assert accepted.fields["status"] == "accepted"
    assert accepted.fields["changed_at"] == three_hours_ago  # its own time, in the warehouse


async def test_a_delivery_support_moves_elsewhere_ends_in_the_changes(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Reassigned from d1 to d2: the warehouse sees d1's delivery end (released) and d2's begin."""
    await apply_rules(sessions, RulesFile.model_validate({"dealers": [dealer("d1"), dealer("d2")]}))
    lead_id = "5725767000000412077"
    start = utcnow()
    await record_status(
        sessions, lead_id=lead_id, status=LeadStatus.RECEIVED, workflow_id=f"lead-{lead_id}", at=start
    )
    claim = await deliveries.claim_next(sessions, lead_id, LeadProfile("SP", "", ""), start.date(), start)
    assert claim is not None
    async with sessions.begin() as session:
        await deliveries.mark_delivered(
            session, lead_id=lead_id, dealer_id=claim.dealer_id, dealer_lead_id="CRM-1",
            day=start.date(), at=utcnow(),
        )  # fmt: skip
    other = "d2" if claim.dealer_id == "d1" else "d1"
    await deliveries.reassign(
        sessions, lead_id, other, start.date(), utcnow(), reason="closer", reassigned_by="ana"
    )
    until = utcnow()
    [released] = await lead_changes.changes(sessions, "release", None, until, None, 10)
    assert released.fields["dealer_id"] == claim.dealer_id
    assert released.fields["status"] == "released" and released.fields["delivered_at"] is not None
    [current] = await lead_changes.changes(sessions, "delivery", None, until, None, 10)
    assert (current.fields["dealer_id"], current.fields["status"]) == (other, "claimed")
    # Support's words may be about the customer: the warehouse gets who moved the lead, not why.
    assert current.fields["routing_reason"] == "reassigned by ana"


async def test_a_late_deal_move_is_read_in_the_window_that_recorded_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Deals are read by when the hub recorded them: a stage move Zoho made hours ago, arriving now,
    is in the next window; a deal's state carries its lead and amount, never its name or contact."""
    won_at = utcnow() - timedelta(minutes=5)
    deal = DealState(
        "5725767000000990001", won_at, stage="Closed Won", amount=Decimal("1234.56"), deal_name="Frota Ana",
        contact_name="Ana Souza", owner_name="Bruno Lima", closing_date="2026-12-20", lead_id="l-1",
    )  # fmt: skip
    await apply_change(sessions, deal, utcnow())
    first_until = utcnow()
    [state] = await lead_changes.changes(sessions, "deal", None, first_until, None, 10)
    assert state.fields == {
        "deal_id": deal.deal_id, "lead_id": "l-1", "stage": "Closed Won", "amount_cents": 123456,
        "closing_date": date(2026, 12, 20), "probability": None, "owner": "Bruno Lima", "modified_at": won_at,
    }  # fmt: skip
    late = replace(deal, modified_time=won_at - timedelta(hours=3), stage="Negotiation/Review")
    assert await apply_change(sessions, late, utcnow()) == "stale"
    assert await lead_changes.changes(sessions, "deal", first_until, utcnow(), None, 10) == []  # still won
    [move] = await lead_changes.changes(sessions, "deal_stage", first_until, utcnow(), None, 10)
    assert (move.fields["stage"], move.fields["changed_at"]) == ("Negotiation/Review", late.modified_time)


async def test_two_moves_within_one_second_land_as_two_moves_and_two_states(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Zoho stamps two moves made within one second alike: each move lands under a key of its own (the
    first under the key moves always had), and the state Zoho's record settled on is a version of its
    own, not taken for the one already landed."""
    at = utcnow().replace(microsecond=0) - timedelta(minutes=5)
    first = DealState("5725767000000990002", at, stage="Needs Analysis")
    assert await apply_change(sessions, first, utcnow()) == "applied"
    [before] = await lead_changes.changes(sessions, "deal", None, utcnow(), None, 10)
    later = replace(first, stage="Value Proposition")
    assert await apply_change(sessions, later, utcnow(), record_read=True) == "applied"
    until = utcnow()
    moves = await lead_changes.changes(sessions, "deal_stage", None, until, None, 10)
    keys = [lead_record(move.kind, move.fields, move.at).event_key for move in moves]
    plain = f"deal_stage_changes:{first.deal_id}:{at.isoformat()}"
    assert keys == [plain, f"{plain}:Value Proposition"]
    [after] = await lead_changes.changes(sessions, "deal", None, until, None, 10)
    assert (before.fields["stage"], after.fields["stage"]) == ("Needs Analysis", "Value Proposition")
    versions = {lead_record(state.kind, state.fields, state.at).event_key for state in (before, after)}
    assert len(versions) == 2


async def test_a_second_hand_over_to_the_fallback_owner_lands_under_a_key_of_its_own(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A lead handed to its fallback owner, moved by support, and handed over again has two such rows
    about no delivery. Under one event key, silver's merge kept both (its unique test then held the
    lead models out of every build) or dropped the second; the first keeps the key it landed with."""
    start = utcnow() - timedelta(hours=3)
    steps = [
        (LeadStatus.RECEIVED, None),
        (LeadStatus.SLA_EXHAUSTED, None),
        (LeadStatus.REASSIGNED, "d1"),
        (LeadStatus.SLA_EXHAUSTED, None),
    ]
    for minutes, (status, dealer_id) in enumerate(steps):
        at = start + timedelta(minutes=30 * minutes)
        await record_status(
            sessions, lead_id="F1", status=status, workflow_id="lead-F1", at=at, dealer_id=dealer_id
        )
    found = await read_all(sessions, None, utcnow(), 2)  # the two hand-overs on different pages
    handed = [change for change in found if change.fields["status"] == "sla_exhausted"]
    keys = [lead_record("status", change.fields, change.at).event_key for change in handed]
    first = "lead_status_changes:F1:sla_exhausted:"
    assert keys == [first, f"{first}#{(start + timedelta(minutes=90)).isoformat()}"]


@pytest.mark.parametrize(
    ("stored", "landed"),
    [
        ("reassigned by ana: the customer asked, call Ana on 11 98765-4321", "reassigned by ana"),
        ("reassigned by ana:ops: call Ana on 11 98765-4321", "reassigned by ana:ops"),  # from before --by
        ("reassigned by ana", "reassigned by ana"),
        ("assigned by ana", "assigned by ana"),
        ("routed: priority 10, SP", "routed: priority 10, SP"),  # routing's own words stay
    ],
)
def test_support_s_words_never_reach_the_warehouse(stored: str, landed: str) -> None:
    """A login with a colon once kept the whole reason, a customer's name and phone with it."""
    assert lead_changes.landed_reason(stored) == landed


@pytest.mark.parametrize("login", ["ana:ops", "ana souza", "ana\nx", "", "a" * 65])
def test_a_support_login_that_could_carry_words_is_refused(login: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        support_login(login)
    assert support_login("ana.souza@carmaker") == "ana.souza@carmaker"
