"""Routing rules loaded from YAML drive candidate choice: coverage, capacity, priority, rotation."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import pytest
import yaml
from pydantic import ValidationError
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from cli.command import Context
from cli.leads import dealer_refused
from core.business_hours import from_config
from core.constants import LeadStatus
from core.settings import Settings, get_settings
from db import deliveries, feedback, lead_changes, lead_status, routing
from db.engine import create_engine, session_factory
from db.models import Dealer, DealerFeedback, Delivery, DeliveryRelease
from db.routing import LeadProfile
from db.rules import HoursConfig, RulesFile, apply_rules, parse_rules
from db.rules_cli import main as rules_main
from devstack.stack import EXAMPLE_RULES
from warehouse.leads import lead_record

DAY = date(2026, 11, 24)
T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


def dealer(
    dealer_id: str, hours: dict[str, Any] | None = None, **routing_fields: object
) -> dict[str, object]:
    routing_block = {"states": ["SP"], "daily_capacity": 10, **routing_fields}
    return {
        **({"hours": hours} if hours else {}),
        "id": dealer_id,
        "name": dealer_id.title(),
        "crm": {"kind": "rest", "url": f"http://crm/{dealer_id}"},
        "routing": routing_block,
        "field_mapping": {"external_id": "id"},
    }


async def candidates(
    sessions: async_sessionmaker[AsyncSession], lead: LeadProfile, day: date, at: datetime | None = None
) -> list[Dealer]:
    """Active dealers that cover the lead and have capacity left on ``day``, best first (as routing ranks)."""
    at = at or datetime.combine(day, time(12), UTC)
    async with sessions() as session:
        dealers = await routing.active_dealers(session, lock=False)
        return await routing.rank(session, dealers, lead, day, at)


async def load(sessions: async_sessionmaker[AsyncSession], *dealers: dict[str, object]) -> dict[str, int]:
    return await apply_rules(sessions, RulesFile.model_validate({"dealers": list(dealers)}))


async def test_example_file_loads(sessions: async_sessionmaker[AsyncSession]) -> None:
    counts = await apply_rules(sessions, parse_rules(EXAMPLE_RULES))
    assert counts["created"] == len(parse_rules(EXAMPLE_RULES).dealers) == 7
    ranked = await candidates(sessions, LeadProfile("SP", "São Paulo", "Onix"), DAY)
    assert [d.id for d in ranked] == ["dealer-sp-centro", "dealer-sp-paulista", "dealer-sp-interior"]


async def test_city_model_and_accents(sessions: async_sessionmaker[AsyncSession]) -> None:
    await load(
        sessions,
        dealer("capital", cities=["São Paulo"], models=["Onix"]),
        dealer("anywhere-sp"),
        dealer("rio", states=["RJ"]),
    )
    ids = [d.id for d in await candidates(sessions, LeadProfile("sp", "SAO PAULO", "onix"), DAY)]
    assert set(ids) == {"capital", "anywhere-sp"}
    ids = [d.id for d in await candidates(sessions, LeadProfile("SP", "Campinas", "Onix"), DAY)]
    assert ids == ["anywhere-sp"]
    ids = [d.id for d in await candidates(sessions, LeadProfile("SP", "São Paulo", "S10"), DAY)]
    assert ids == ["anywhere-sp"]
    assert await candidates(sessions, LeadProfile("BA", "Salvador", "Onix"), DAY) == []


async def test_priority_then_fair_rotation(sessions: async_sessionmaker[AsyncSession]) -> None:
    await load(sessions, dealer("a", priority=10), dealer("b", priority=10), dealer("fallback", priority=90))
    lead = LeadProfile("SP", "Santos", "Onix")
    firsts = []
    for minute in range(6):
        ranked = await routing.route(sessions, lead, DAY, T0 + timedelta(minutes=minute))
        assert ranked[-1] == "fallback"
        firsts.append(ranked[0])
    assert firsts == ["a", "b", "a", "b", "a", "b"]


async def test_capacity_is_reserved_by_claims_per_day(sessions: async_sessionmaker[AsyncSession]) -> None:
    await load(sessions, dealer("small", daily_capacity=2), dealer("big", priority=200, daily_capacity=100))
    lead = LeadProfile("SP", "Santos", "Onix")
    for n in range(2):
        claim = await deliveries.claim_next(sessions, f"{n}", lead, DAY, T0)
        assert claim is not None and (claim.dealer_id, claim.resumed) == ("small", False)
    # The same lead again (a retried activity, a later run) resumes its claim: no capacity used twice.
    again = await deliveries.claim_next(sessions, "0", lead, DAY, T0 + timedelta(minutes=1))
    assert again is not None and (again.dealer_id, again.resumed) == ("small", True)
    assert again.idempotency_key == "lead-0-small"
    assert [d.id for d in await candidates(sessions, lead, DAY)] == ["big"]
    tomorrow = DAY + timedelta(days=1)
    assert [d.id for d in await candidates(sessions, lead, tomorrow)] == ["small", "big"]


async def test_concurrent_claims_never_exceed_capacity(sessions: async_sessionmaker[AsyncSession]) -> None:
    await load(sessions, dealer("a", daily_capacity=4), dealer("b", daily_capacity=6))
    lead = LeadProfile("SP", "Santos", "Onix")
    claims = await asyncio.gather(
        *(deliveries.claim_next(sessions, f"L{n}", lead, DAY, T0) for n in range(30))
    )
    taken = Counter(claim.dealer_id for claim in claims if claim is not None)
    assert taken == {"a": 4, "b": 6}
    assert sum(claim is None for claim in claims) == 20


async def test_a_refusing_dealer_releases_its_claim_and_the_next_is_claimed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await load(sessions, dealer("a", priority=10, daily_capacity=1), dealer("b", priority=20))
    lead = LeadProfile("SP", "Santos", "Onix")
    first = await deliveries.claim_next(sessions, "L1", lead, DAY, T0)
    assert first is not None and first.dealer_id == "a"
    second = await deliveries.claim_next(sessions, "L1", lead, DAY, T0, release="a", exclude=["a"])
    assert second is not None and (second.dealer_id, second.resumed) == ("b", False)
    # a's capacity is free again: another lead may take it.
    other = await deliveries.claim_next(sessions, "L2", lead, DAY, T0)
    assert other is not None and other.dealer_id == "a"
    # A delivered claim is never released, whatever a late caller asks.
    async with sessions.begin() as session:
        await deliveries.mark_delivered(
            session, lead_id="L1", dealer_id="b", dealer_lead_id="CRM-9", day=DAY, at=T0
        )
    kept = await deliveries.claim_next(sessions, "L1", lead, DAY, T0, release="b", exclude=["a", "b"])
    assert kept is not None and (kept.dealer_id, kept.delivered, kept.dealer_lead_id) == ("b", True, "CRM-9")


async def test_a_claim_its_dealer_reported_about_is_delivered_not_released(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A CRM stored the lead and its dealer accepted, but the hub's create call never got an answer it
    could take: the run gives the dealer up. The lead stays there, delivered, and no second dealer gets it."""
    await load(sessions, dealer("a", priority=10), dealer("b", priority=20))
    lead = LeadProfile("SP", "Santos", "Onix")
    await lead_status.record_status(
        sessions, lead_id="L1", status=LeadStatus.RECEIVED, workflow_id="w", at=T0
    )
    first = await deliveries.claim_next(sessions, "L1", lead, DAY, T0)
    assert first is not None and first.dealer_id == "a"
    report = await feedback.record(
        sessions, lead_id="L1", dealer_id="a", status=LeadStatus.ACCEPTED, at=T0, received_at=T0
    )
    assert report.outcome == feedback.Outcome.APPLIED

    later = T0 + timedelta(hours=6)
    kept = await deliveries.claim_next(sessions, "L1", lead, DAY, later, release="a", exclude=["a"])
    assert kept is not None and (kept.dealer_id, kept.delivered, kept.dealer_lead_id) == ("a", True, None)
    assert (await deliveries.holding(sessions, "L1", "a")).holds
    async with sessions() as session:
        assert (await session.get(Delivery, "L1")).delivered_at is not None  # type: ignore[union-attr]
    view = await lead_status.get_lead(sessions, "L1")
    assert view is not None and (view.status, view.dealer_id) == ("accepted", "a")
    delivered = [h for h in view.history if h.status == "delivered"]
    assert [(h.dealer_id, "never answered" in str(h.detail)) for h in delivered] == [("a", True)]
    # Asked again (a retried activity), it changes nothing; b's capacity was never taken.
    again = await deliveries.claim_next(sessions, "L1", lead, DAY, later, release="a", exclude=["a"])
    assert again == kept
    other = await deliveries.claim_next(sessions, "L2", LeadProfile("SP", "", ""), DAY, T0)
    assert other is not None and other.dealer_id == "a"


async def test_a_claim_released_unanswered_waits_for_its_crm_and_its_dealer_s_reports_are_late(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Its CRM never answered the create call, so it may hold the lead: the release is pending until
    that CRM was asked to drop it, and a report from that dealer is late (409), not unknown (404)."""
    await load(sessions, dealer("a", priority=10), dealer("b", priority=20), dealer("c", priority=30))
    await lead_status.record_status(
        sessions, lead_id="L1", status=LeadStatus.RECEIVED, workflow_id="w", at=T0
    )
    lead = LeadProfile("SP", "Santos", "Onix")
    assert (await deliveries.claim_next(sessions, "L1", lead, DAY, T0)).dealer_id == "a"  # type: ignore[union-attr]
    moved = await deliveries.claim_next(
        sessions, "L1", lead, DAY, T0, release="a", exclude=["a"], release_unanswered=True
    )
    assert moved is not None and moved.dealer_id == "b"
    losses = await deliveries.losses(sessions, "L1")
    assert (losses.count, losses.pending) == (0, [deliveries.ToDrop("a", "lead-L1-a", None)])  # no SLA loss
    late = await feedback.record(
        sessions, lead_id="L1", dealer_id="a", status=LeadStatus.ACCEPTED, at=T0, received_at=T0
    )
    assert late.outcome == feedback.Outcome.LATE
    await deliveries.record_withdrawal(sessions, "L1", "a", "withdrawn")
    assert (await deliveries.losses(sessions, "L1")).pending == []
    view = await lead_status.get_lead(sessions, "L1")
    assert view is not None
    assert [(d.dealer_id, d.status, d.withdrawal_at_crm) for d in view.deliveries] == [
        ("a", "released", "withdrawn"),
        ("b", "claimed", None),
    ]
    # A dealer that refused the lead is released with no CRM call, and never had it: unknown.
    await deliveries.claim_next(sessions, "L1", lead, DAY, T0, release="b", exclude=["a", "b"])
    assert (await deliveries.losses(sessions, "L1")).pending == []
    unknown = await feedback.record(
        sessions, lead_id="L1", dealer_id="b", status=LeadStatus.ACCEPTED, at=T0, received_at=T0
    )
    assert unknown.outcome == feedback.Outcome.UNKNOWN


async def test_a_dealer_support_moved_a_delivered_lead_away_from_reports_late_not_unknown(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The lead reached a, then support reassigned it to b: a's "accepted" after that is recorded as late
    (answered 409), as for a dealer whose SLA passed, not refused as a lead a never had (404)."""
    await load(sessions, dealer("a", priority=10), dealer("b", priority=20))
    await lead_status.record_status(
        sessions, lead_id="L1", status=LeadStatus.RECEIVED, workflow_id="w", at=T0
    )
    lead = LeadProfile("SP", "Santos", "Onix")
    assert (await deliveries.claim_next(sessions, "L1", lead, DAY, T0)).dealer_id == "a"  # type: ignore[union-attr]
    async with sessions.begin() as session:
        await deliveries.mark_delivered(
            session, lead_id="L1", dealer_id="a", dealer_lead_id="CRM-1", day=DAY, at=T0
        )
    moved = await deliveries.reassign(
        sessions, "L1", "b", DAY, T0, reason="customer moved", reassigned_by="ana"
    )
    assert moved.dealer_id == "b"
    late = await feedback.record(
        sessions, lead_id="L1", dealer_id="a", status=LeadStatus.ACCEPTED, at=T0, received_at=T0
    )
    assert (late.outcome, late.current) == (feedback.Outcome.LATE, False)
    view = await lead_status.get_lead(sessions, "L1")
    assert view is not None and view.dealer_id == "b" and view.status != "accepted"


async def test_support_cannot_give_a_lead_to_a_dealer_whose_crm_still_owes_its_drop(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    """Its CRM never answered the create call and has not answered the drop either: it may hold a copy,
    so ``hub leads assign|reassign`` refuse it, as routing passes it over (a new delivery under a new key
    would be a second lead there). An unknown dealer is refused too; the lead's own dealer is named."""
    await load(sessions, dealer("a", priority=10), dealer("b", priority=20))
    await lead_status.record_status(
        sessions, lead_id="L1", status=LeadStatus.RECEIVED, workflow_id="w", at=T0
    )
    lead = LeadProfile("SP", "Santos", "Onix")
    assert (await deliveries.claim_next(sessions, "L1", lead, DAY, T0)).dealer_id == "a"  # type: ignore[union-attr]
    await deliveries.claim_next(
        sessions, "L1", lead, DAY, T0, release="a", exclude=["a"], release_unanswered=True
    )
    ctx = cast(Context, SimpleNamespace(settings=Settings(environment="test", database_url=database_url)))
    refused, holder = await dealer_refused(ctx, "L1", "a")
    assert "a's CRM has not yet answered a drop of this lead" in refused and holder is None
    assert await dealer_refused(ctx, "L1", "b") == ("", "b")  # the lead's claim is at b
    assert (await dealer_refused(ctx, "L1", "zz"))[0] == "no active dealer zz"
    await deliveries.record_withdrawal(sessions, "L1", "a", "withdrawn")  # the CRM answered the drop
    assert await dealer_refused(ctx, "L1", "a") == ("", "b")


async def test_a_dealer_released_unanswered_gets_the_lead_back_under_the_key_its_crm_allows(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Routing may send a lead back to a dealer whose claim was released unanswered once its CRM answered
    the drop. It dropped the lead: a key of its own, or the CRM would replay a dropped lead. It never
    named the lead (``recorded``): the old key finds what it holds."""
    await load(sessions, dealer("a", priority=10), dealer("b", priority=20))
    lead = LeadProfile("SP", "Santos", "Onix")
    for lead_id, outcome in (("L2", "withdrawn"), ("L3", "recorded")):
        await deliveries.claim_next(sessions, lead_id, lead, DAY, T0)
        await deliveries.claim_next(
            sessions, lead_id, lead, DAY, T0, release="a", exclude=["a"], release_unanswered=True
        )
        assert (
            await deliveries.check_delivery(sessions, lead_id, "a", f"lead-{lead_id}-a")
        ).moved_on is not None
        await deliveries.record_withdrawal(sessions, lead_id, "a", outcome)
        back = await deliveries.claim_next(sessions, lead_id, lead, DAY, T0, release="b", exclude=["b"])
        assert back is not None and back.dealer_id == "a"
        assert (back.idempotency_key == f"lead-{lead_id}-a") is (outcome == "recorded")
        assert (
            await deliveries.check_delivery(sessions, lead_id, "a", back.idempotency_key)
        ).moved_on is None
        assert (await deliveries.losses(sessions, lead_id)).pending == []  # nothing to drop at a now


async def test_routing_passes_over_a_dealer_whose_crm_still_owes_a_drop(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A dealer released unanswered whose CRM was not yet asked to drop the lead (the run's window for
    it passed, or the run was terminated) may hold it: routing never sends the lead back there (a
    second copy, and the owed drop lost, since the CRM finds "the lead" by its external id). A later
    run still makes that drop; support may still choose the dealer, under a key of its own."""
    await load(sessions, dealer("a", priority=10), dealer("b", priority=20), dealer("c", priority=30))
    lead = LeadProfile("SP", "Santos", "Onix")
    await deliveries.claim_next(sessions, "L1", lead, DAY, T0)
    await deliveries.claim_next(
        sessions, "L1", lead, DAY, T0, release="a", exclude=["a"], release_unanswered=True
    )
    # A new run (a terminate, a resent webhook) knows nothing of the attempts of the one before: b
    # refused the lead in it.
    elsewhere = await deliveries.claim_next(sessions, "L1", lead, DAY, T0, release="b", exclude=["b"])
    assert elsewhere is not None and elsewhere.dealer_id == "c"
    last = await deliveries.claim_next(sessions, "L1", lead, DAY, T0, release="c", exclude=["b", "c"])
    assert last is None
    assert (await deliveries.losses(sessions, "L1")).pending == [deliveries.ToDrop("a", "lead-L1-a", None)]
    async with sessions() as session:
        owing = await deliveries.owing_drop(session, "L1")
    explained = await routing.explain(sessions, lead, DAY, T0, dict.fromkeys(owing, "owes a drop"))
    assert explained.chosen != "a"
    assert [(v.dealer_id, v.why) for v in explained.verdicts if v.dealer_id == "a"] == [("a", "owes a drop")]
    chosen = await deliveries.assign(sessions, "L1", "a", DAY, T0, assigned_by="support")
    assert chosen.dealer_id == "a" and chosen.idempotency_key != "lead-L1-a"
    async with sessions() as session:
        rows = await session.scalars(select(DeliveryRelease).where(DeliveryRelease.dealer_id == "a"))
        # The lead is at a again: its first copy is not dropped by external id (support chose so).
        assert [row.crm_outcome for row in rows] == ["pending"]
    assert (await deliveries.losses(sessions, "L1")).pending == []


async def test_a_delivery_the_lead_has_left_is_not_made_again(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A run reset to before its delivery asks for a delivery the lead has since left."""
    await load(sessions, dealer("a", priority=10), dealer("b", priority=20))
    lead = LeadProfile("SP", "Santos", "Onix")
    assert (
        await deliveries.check_delivery(sessions, "L1", "a", "lead-L1-a")
    ).moved_on is None  # no decision yet
    claim = await deliveries.claim_next(sessions, "L1", lead, DAY, T0)
    assert claim is not None and claim.dealer_id == "a"
    assert (await deliveries.check_delivery(sessions, "L1", "a", claim.idempotency_key)).moved_on is None
    async with sessions.begin() as session:
        await deliveries.mark_delivered(
            session, lead_id="L1", dealer_id="a", dealer_lead_id="X", day=DAY, at=T0
        )
    await deliveries.withdraw(sessions, "L1", "a", T0, reason="SLA")
    assert (
        await deliveries.check_delivery(sessions, "L1", "a", claim.idempotency_key)
    ).moved_on == "the lead was withdrawn from a"
    moved = await deliveries.claim_next(sessions, "L1", lead, DAY, T0)
    assert moved is not None and moved.dealer_id == "b"
    assert (
        await deliveries.check_delivery(sessions, "L1", "a", claim.idempotency_key)
    ).moved_on == "the lead is at b now"
    assert (await deliveries.check_delivery(sessions, "L1", "b", moved.idempotency_key)).moved_on is None
    back = await deliveries.reassign(sessions, "L1", "a", DAY, T0, reason="asked", reassigned_by="ana")
    assert back.idempotency_key != claim.idempotency_key
    assert (await deliveries.check_delivery(sessions, "L1", "a", claim.idempotency_key)).moved_on == (
        "the lead went back to a as a new delivery"
    )
    assert (await deliveries.check_delivery(sessions, "L1", "a", back.idempotency_key)).moved_on is None


async def test_a_lead_sent_back_under_its_earlier_key_is_known_by_that_key_s_first_claim(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Support moves a delivered lead from a (whose CRM can only record the drop) to b, and days later
    back to a: the return takes up the key of a's first delivery (a still holds it), so a create under it
    may be days old, and the dealer may have forgotten the key: the check names the first claim, not the
    return's."""
    await load(sessions, dealer("a", priority=10), dealer("b", priority=20))
    claim = await deliveries.claim_next(sessions, "L1", LeadProfile("SP", "Santos", "Onix"), DAY, T0)
    assert claim is not None and claim.dealer_id == "a"
    async with sessions.begin() as session:
        await deliveries.mark_delivered(
            session, lead_id="L1", dealer_id="a", dealer_lead_id="X", day=DAY, at=T0
        )
    first = await deliveries.check_delivery(sessions, "L1", "a", claim.idempotency_key)
    assert first.key_first_claimed_at == T0
    later = T0 + timedelta(days=3)
    await deliveries.reassign(
        sessions, "L1", "b", DAY, T0 + timedelta(days=1), reason="asked", reassigned_by="ana"
    )
    await deliveries.record_withdrawal(sessions, "L1", "a", "recorded")  # the move's drop, as a's CRM can
    back = await deliveries.reassign(sessions, "L1", "a", DAY, later, reason="asked", reassigned_by="ana")
    assert back.idempotency_key == claim.idempotency_key  # a holds the lead: its key finds it
    check = await deliveries.check_delivery(sessions, "L1", "a", back.idempotency_key)
    assert (check.moved_on, check.key_first_claimed_at) == (None, T0)


async def test_only_a_reassignment_moves_a_delivered_lead(sessions: async_sessionmaker[AsyncSession]) -> None:
    await load(sessions, dealer("a", priority=10), dealer("b", priority=20))
    lead = LeadProfile("SP", "Santos", "Onix")
    await lead_status.record_status(
        sessions, lead_id="L1", status=LeadStatus.RECEIVED, workflow_id="lead-L1", at=T0
    )
    await deliveries.claim_next(sessions, "L1", lead, DAY, T0)
    async with sessions.begin() as session:
        await deliveries.mark_delivered(
            session, lead_id="L1", dealer_id="a", dealer_lead_id="CRM-1", day=DAY, at=T0
        )
    assigned = await deliveries.assign(sessions, "L1", "b", DAY, T0, assigned_by="ana")
    assert (assigned.dealer_id, assigned.delivered) == ("a", True)  # support's assign: not a move
    moved = await deliveries.reassign(
        sessions, "L1", "b", DAY, T0, reason="customer asked for Paulista", reassigned_by="ana"
    )
    assert (moved.dealer_id, moved.delivered, moved.idempotency_key) == ("b", False, "lead-L1-b")
    again = await deliveries.reassign(sessions, "L1", "b", DAY, T0, reason="twice", reassigned_by="ana")
    assert again.resumed and again.dealer_id == "b"
    view = await lead_status.get_lead(sessions, "L1")
    assert view is not None and view.status == "reassigned"
    assert [(h.status, h.dealer_id) for h in view.history][-1] == ("reassigned", "b")
    assert "by ana: customer asked for Paulista" in (view.history[-1].detail or "")
    # A late delivery to the old dealer cannot take the lead back.
    async with sessions.begin() as session:
        kept = await deliveries.mark_delivered(
            session, lead_id="L1", dealer_id="a", dealer_lead_id="CRM-1", day=DAY, at=T0
        )
    assert kept is None
    assert (await deliveries.claim_next(sessions, "L1", lead, DAY, T0)) == moved.__class__(
        "L1", "b", "lead-L1-b", delivered=False, dealer_lead_id=None, resumed=True
    )


@pytest.mark.parametrize("delivered", [True, False])
async def test_a_lead_support_moves_away_owes_a_drop_at_the_first_dealers_crm(
    sessions: async_sessionmaker[AsyncSession], delivered: bool
) -> None:
    """Delivered, or only claimed (its create call may have reached the CRM: a run terminated mid-call),
    the lead may be at the first dealer: the move owes a drop there, which routing and support wait for,
    and that dealer's later reports are late (409), not unknown (404)."""
    await load(sessions, dealer("a", priority=10), dealer("b", priority=20))
    lead = LeadProfile("SP", "Santos", "Onix")
    await lead_status.record_status(
        sessions, lead_id="R1", status=LeadStatus.RECEIVED, workflow_id="w", at=T0
    )
    await deliveries.claim_next(sessions, "R1", lead, DAY, T0)
    if delivered:
        async with sessions.begin() as session:
            await deliveries.mark_delivered(
                session, lead_id="R1", dealer_id="a", dealer_lead_id="CRM-1", day=DAY, at=T0
            )
    reported = await feedback.record(
        sessions, lead_id="R1", dealer_id="a", status=LeadStatus.ACCEPTED, at=T0, received_at=T0
    )
    assert reported.outcome == feedback.Outcome.APPLIED
    moved = T0 + timedelta(minutes=5)
    await deliveries.reassign(sessions, "R1", "b", DAY, moved, reason="customer moved", reassigned_by="ana")
    # The drop names the lead by the CRM's id where the CRM gave one: no lookup by its external id.
    dealer_lead_id = "CRM-1" if delivered else None
    assert (await deliveries.losses(sessions, "R1")).pending == [
        deliveries.ToDrop("a", "lead-R1-a", dealer_lead_id)
    ]
    async with sessions() as session:
        assert await deliveries.owing_drop(session, "R1") == {"a"}
    later = moved + timedelta(minutes=1)
    contacted = await feedback.record(
        sessions, lead_id="R1", dealer_id="a", status=LeadStatus.CONTACTED, at=later, received_at=later
    )
    assert contacted.outcome == feedback.Outcome.LATE
    view = await lead_status.get_lead(sessions, "R1")
    assert view is not None
    assert [(d.dealer_id, d.status, d.withdrawal_at_crm) for d in view.deliveries] == [
        ("a", "released", "pending"),
        ("b", "claimed", None),
    ]
    # Support cannot send it back to a while that drop is owed (a copy may be there): refused, not moved.
    with pytest.raises(deliveries.DropOwed):
        await deliveries.reassign(sessions, "R1", "a", DAY, later, reason="back", reassigned_by="ana")
    # Once its CRM answered the drop, nothing more is owed, and the lead may go back as a new delivery.
    await deliveries.record_withdrawal(sessions, "R1", "a", "withdrawn")
    assert (await deliveries.losses(sessions, "R1")).pending == []
    back = await deliveries.reassign(sessions, "R1", "a", DAY, later, reason="back", reassigned_by="ana")
    assert back.dealer_id == "a" and back.idempotency_key != "lead-R1-a"


async def test_a_lead_at_its_fallback_owner_goes_to_no_dealer_until_support_moves_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A run handed the lead to its fallback owner with no dealer left for it (a withdrawn after its SLA,
    b and c passed over by that run). A later run (a resent webhook after a terminate, a redrive) finds b
    and c with room: it must claim neither, below its cap as it is, while Zoho gives the lead to the
    fallback owner. Support's move lifts that: the moved lead is re-routed as any other when its dealer
    misses its SLA."""
    await load(sessions, dealer("a", priority=10), dealer("b", priority=20), dealer("c", priority=30))
    lead = LeadProfile("SP", "Santos", "Onix")
    received = {"lead_id": "F1", "status": LeadStatus.RECEIVED, "workflow_id": "w", "at": T0}
    await lead_status.record_status(sessions, **received)
    await deliveries.claim_next(sessions, "F1", lead, DAY, T0, exclude=["b", "c"], max_withdrawals=3)
    async with sessions.begin() as session:
        await deliveries.mark_delivered(
            session, lead_id="F1", dealer_id="a", dealer_lead_id="CRM-1", day=DAY, at=T0
        )
    await deliveries.withdraw(sessions, "F1", "a", T0 + timedelta(minutes=30), reason="sla")
    exhausted_at = T0 + timedelta(minutes=31)
    await lead_status.record_status(
        sessions, lead_id="F1", status=LeadStatus.SLA_EXHAUSTED, workflow_id="w", at=exhausted_at
    )
    await lead_status.note_fallback_owner_set(sessions, "F1", exhausted_at)  # Zoho took the owner
    # The next run records "received" again, then claims: b and c have room, yet nothing is claimed.
    await lead_status.record_status(sessions, **received)
    assert await deliveries.claim_next(sessions, "F1", lead, DAY, exhausted_at, max_withdrawals=3) is None
    assert await lead_status.fallback_owner_set(sessions, "F1")  # that run leaves Zoho's Owner be
    await deliveries.reassign(sessions, "F1", "c", DAY, exhausted_at, reason="asked", reassigned_by="ana")
    assert not await lead_status.fallback_owner_set(sessions, "F1")  # a later hand-over sets it again
    async with sessions.begin() as session:
        await deliveries.mark_delivered(
            session, lead_id="F1", dealer_id="c", dealer_lead_id="CRM-3", day=DAY, at=exhausted_at
        )
    await deliveries.withdraw(sessions, "F1", "c", exhausted_at + timedelta(hours=1), reason="sla")
    later = exhausted_at + timedelta(hours=1)
    async with sessions() as session:
        assert not await deliveries.with_fallback_owner(session, "F1")  # re-routed as any other lead
    # Its run passes b over and finds no dealer left: the fallback owner again (a hand-over of its own in
    # the history), and a later run's claim finds the lead there.
    assert (
        await deliveries.claim_next(sessions, "F1", lead, DAY, later, exclude=["b"], max_withdrawals=3)
        is None
    )
    await lead_status.record_status(
        sessions, lead_id="F1", status=LeadStatus.SLA_EXHAUSTED, workflow_id="w", at=later
    )
    await lead_status.record_status(sessions, **received)
    assert await deliveries.claim_next(sessions, "F1", lead, DAY, later, max_withdrawals=3) is None
    await lead_status.record_status(  # that later run hands it over again: the same hand-over
        sessions, lead_id="F1", status=LeadStatus.SLA_EXHAUSTED, workflow_id="w", at=later
    )
    view = await lead_status.get_lead(sessions, "F1")
    assert view is not None and view.status == "sla_exhausted"
    handed = [change.at for change in view.history if change.status == "sla_exhausted"]
    assert handed == [exhausted_at, later]


@pytest.mark.parametrize(("crm_outcome", "new_key"), [("withdrawn", True), ("recorded", False)])
async def test_a_lead_sent_back_to_the_dealer_that_lost_it(
    sessions: async_sessionmaker[AsyncSession], crm_outcome: str, new_key: bool
) -> None:
    """Its CRM withdrew the lead: the old key would replay the withdrawn lead, so the new delivery has
    a key of its own. Its CRM could only record the withdrawal: the dealer still holds the lead there."""
    await load(sessions, dealer("a", priority=10), dealer("b", priority=20))
    await lead_status.record_status(
        sessions, lead_id="L1", status=LeadStatus.RECEIVED, workflow_id="lead-L1", at=T0
    )
    first = await deliveries.claim_next(sessions, "L1", LeadProfile("SP", "Santos", "Onix"), DAY, T0)
    assert first is not None and (first.dealer_id, first.idempotency_key) == ("a", "lead-L1-a")
    async with sessions.begin() as session:
        await deliveries.mark_delivered(
            session, lead_id="L1", dealer_id="a", dealer_lead_id="CRM-1", day=DAY, at=T0
        )
    later = T0 + timedelta(hours=1)
    assert (await deliveries.withdraw(sessions, "L1", "a", later, reason="SLA passed")).taken_now
    await deliveries.record_withdrawal(sessions, "L1", "a", crm_outcome)
    back = await deliveries.reassign(
        sessions, "L1", "a", DAY, later + timedelta(minutes=5), reason="customer asked", reassigned_by="ana"
    )
    assert back.dealer_id == "a" and not back.delivered
    assert (back.idempotency_key != "lead-L1-a") is new_key
    assert back.idempotency_key.startswith("lead-L1-a")
    again = await deliveries.reassign(sessions, "L1", "a", DAY, later, reason="twice", reassigned_by="ana")
    assert again.resumed and again.idempotency_key == back.idempotency_key  # its retries share its key


async def test_reload_updates_and_deactivates(sessions: async_sessionmaker[AsyncSession]) -> None:
    await load(sessions, dealer("a"), dealer("b"))
    await routing.route(sessions, LeadProfile("SP", "x", "y"), DAY, T0)
    counts = await load(sessions, dealer("a", daily_capacity=5))
    assert counts == {"created": 0, "updated": 1, "deactivated": 1}
    async with sessions() as session:
        rows = {d.id: d for d in await session.scalars(select(Dealer))}
    assert rows["a"].daily_capacity == 5 and rows["a"].last_assigned_at is not None  # rotation kept
    assert rows["b"].active is False
    assert await routing.dealer_config(sessions, "b") is None


def test_invalid_files_are_refused(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"dealers": [dealer("a"), dealer("a")]}))
    with pytest.raises(ValidationError, match="unique"):
        parse_rules(bad)
    entry = dealer("b")
    entry["crm"] = {"kind": "ftp", "url": "x"}
    bad.write_text(yaml.safe_dump({"dealers": [entry]}))
    with pytest.raises(ValidationError, match=r"crm\.kind"):
        parse_rules(bad)
    bad.write_text(yaml.safe_dump({"dealers": [dealer("unlinked")]}))
    with pytest.raises(ValidationError, match="reserved"):  # the warehouse's deals without a dealer
        parse_rules(bad)


def test_cli_loads_and_reports_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert rules_main(["load", str(EXAMPLE_RULES), "--database-url", url]) == 0
    assert f"{len(parse_rules(EXAMPLE_RULES).dealers)} created" in capsys.readouterr().out
    missing = tmp_path / "missing.yaml"
    assert rules_main(["load", str(missing), "--database-url", url]) == 2
    assert "missing.yaml" in capsys.readouterr().err


def test_cli_warns_of_an_sla_dealer_that_can_report_no_acceptance(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the dealers' webhook secrets set, an SLA dealer with none, whose CRM is not read either,
    is named: every lead it got would move on when its SLA passed. Read dealers and those with a
    secret are not; nor is anything where no secret is set at all (the rules loaded apart from the API)."""
    sla = {"sla": {"accept_within_minutes": 30}}
    read = {"sla": {"accept_within_minutes": 30, "status_poll_seconds": 300}}
    dealers = [
        {**dealer("heard"), **sla},
        {**dealer("unheard"), **sla},
        {**dealer("read"), **read},
        dealer("plain"),
    ]
    rules = tmp_path / "dealers.yaml"
    rules.write_text(yaml.safe_dump({"dealers": dealers}))
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    try:
        for secrets, named in (({"heard": "s-1"}, ["unheard"]), ({}, [])):
            monkeypatch.setenv("HUB_DEALER_WEBHOOK_SECRETS", json.dumps(secrets))
            get_settings.cache_clear()
            assert rules_main(["load", str(rules), "--database-url", url]) == 0
            err = capsys.readouterr().err
            warned = [line.split()[1] for line in err.splitlines() if line.startswith("warning:")]
            assert warned == named
    finally:
        get_settings.cache_clear()  # later tests read the settings without these secrets


async def test_concurrent_routing_from_two_workers_shares_the_rotation_fairly(database_url: str) -> None:
    """Two engines on one database, as two worker processes: every claim counts once, turns stay fair."""
    engines = [create_engine(database_url), create_engine(database_url)]
    workers = [session_factory(engine) for engine in engines]
    await load(workers[0], dealer("a"), dealer("b"), dealer("c"))
    lead = LeadProfile("SP", "São Paulo", "Onix")
    try:
        firsts = await asyncio.gather(
            *(routing.route(workers[n % 2], lead, DAY, T0 + timedelta(seconds=n)) for n in range(30))
        )
    finally:
        for engine in engines:
            await engine.dispose()
    claimed = Counter(ranked[0] for ranked in firsts)
    assert claimed == {"a": 10, "b": 10, "c": 10}


async def test_weights_share_leads_2_1_1_under_concurrent_workers(database_url: str) -> None:
    """300 leads claimed at once through three engines (as three worker processes would): 150/75/75."""
    engines = [create_engine(database_url) for _ in range(3)]
    try:
        pools = [session_factory(engine) for engine in engines]
        await load(
            pools[0],
            dealer("heavy", weight=2, daily_capacity=1000),
            dealer("light-1", daily_capacity=1000),
            dealer("light-2", daily_capacity=1000),
        )
        lead = LeadProfile("SP", "Santos", "Onix")
        claims = await asyncio.gather(
            *(deliveries.claim_next(pools[n % 3], f"W{n}", lead, DAY, T0) for n in range(300))
        )
    finally:
        for engine in engines:
            await engine.dispose()
    taken = Counter(claim.dealer_id for claim in claims if claim is not None)
    expected = {"heavy": 150, "light-1": 75, "light-2": 75}
    assert all(abs(taken[dealer_id] - share) <= 1 for dealer_id, share in expected.items()), taken


async def test_weighted_turns_are_spread_and_respect_capacity(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await load(sessions, dealer("a", weight=2, daily_capacity=3), dealer("b"), dealer("c"))
    lead = LeadProfile("SP", "Santos", "Onix")
    order = []
    for n in range(8):
        claim = await deliveries.claim_next(sessions, f"S{n}", lead, DAY, T0 + timedelta(seconds=n))
        assert claim is not None
        order.append(claim.dealer_id)
    # Smooth: a never takes two in a row while others wait; once its 3 are used, b and c share the rest.
    assert Counter(order[:4]) == {"a": 2, "b": 1, "c": 1}
    assert "a" not in {order[i] for i in range(3) if order[i] == order[i + 1]}
    assert order.count("a") == 3 and order.count("b") + order.count("c") == 5


async def test_routing_prefers_open_dealers_and_says_why(sessions: async_sessionmaker[AsyncSession]) -> None:
    closed_now = {"weekly": {"sun": ["00:00-00:01"]}}  # T0 is a weekday
    await load(sessions, dealer("closed-best", priority=1, hours=closed_now), dealer("open", priority=50))
    lead = LeadProfile("SP", "Santos", "Onix")
    claim = await deliveries.claim_next(sessions, "O1", lead, DAY, T0)
    assert claim is not None and claim.dealer_id == "open"
    async with sessions() as session:
        row = await session.get(Delivery, "O1")
    assert row is not None and row.reason == (
        "routed: covers the lead, open now, priority 50, its turn in the rotation among 1"
    )
    # Nobody open: the best dealer anyway (a night lead; its SLA starts at opening).
    await load(sessions, dealer("closed-best", priority=1, hours=closed_now))
    night = await deliveries.claim_next(sessions, "O2", lead, DAY, T0)
    assert night is not None and night.dealer_id == "closed-best"


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"hours": {"weekly": {"mon": ["08:00-12:00", "11:30-18:00"]}}}, "mon: intervals overlap"),
        ({"hours": {"timezone": "Mars/Olympus", "weekly": {"mon": ["08:00-18:00"]}}}, "unknown time zone"),
        ({"sla": {"accept_within_minutes": 0}}, "greater than or equal to 1"),
        ({"routing": {"states": ["SP"], "daily_capacity": 1, "weight": 0}}, "greater than or equal to 1"),
        ({"hours": {"weekly": {"mon": ["08:00-18:00"]}, "holidays": "XX"}}, "unknown country 'XX'"),
        ({"hours": {"weekly": {"mon": ["08:00-18:00"]}, "holidays": "BR-ZZ"}}, "no subdivision 'ZZ'"),
    ],
)
def test_rules_refuse_bad_hours_and_sla(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RulesFile.model_validate({"dealers": [{**dealer("x"), **entry}]})


def test_holidays_resolved_at_load_answer_as_the_package_does() -> None:
    every_day = {day: ["08:00-18:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    hours = HoursConfig(weekly=every_day, holidays="BR-SP")
    stored = hours.stored(date(2026, 12, 5))
    assert stored["holiday_calendar"]["years"] == [2025, 2031]
    resolved = from_config(stored)
    asked = from_config({key: value for key, value in stored.items() if key != "holiday_calendar"})
    assert resolved.holiday_dates and not asked.holiday_dates
    day, closed = date(2025, 1, 1), 0
    while day <= date(2032, 12, 31):  # the stored years, and one beyond them
        assert resolved.intervals_on(day) == asked.intervals_on(day), day
        closed += not resolved.intervals_on(day)
        day += timedelta(days=1)
    assert closed == 8 * 11  # São Paulo's national and state holidays, 11 a year
    # A row whose region was edited by hand keeps a calendar of another region: the package answers.
    edited = from_config({**stored, "holidays": "BR-RJ"})
    assert not edited.holiday_dates and not edited.intervals_on(date(2026, 4, 23))  # São Jorge, RJ only
    assert resolved.intervals_on(date(2026, 4, 23))
    with pytest.raises(ValueError, match="holiday_calendar: expected"):
        from_config({**stored, "holiday_calendar": {"region": "BR-SP", "dates": ["2026-13-01"]}})


def test_status_polls_are_for_rest_dealers_only() -> None:
    soap = {**dealer("x"), "crm": {"kind": "soap", "url": "http://crm/x?wsdl"}}
    with pytest.raises(ValueError, match="only REST dealers"):
        RulesFile.model_validate(
            {"dealers": [{**soap, "sla": {"accept_within_minutes": 30, "status_poll_seconds": 60}}]}
        )


async def test_a_report_on_a_claimed_delivery_is_kept_and_a_dealer_can_lose_a_lead_twice(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A CRM that accepts at once may report before the hub recorded the delivery; support may send a
    lead back to a dealer that lost it, which may lose it again."""
    await load(sessions, dealer("a", priority=10), dealer("b", priority=20))
    lead = LeadProfile("SP", "Santos", "Onix")
    await lead_status.record_status(
        sessions, lead_id="R1", status=LeadStatus.RECEIVED, workflow_id="w", at=T0
    )
    claim = await deliveries.claim_next(sessions, "R1", lead, DAY, T0)
    assert claim is not None and claim.dealer_id == "a" and not claim.delivered
    early = await feedback.record(
        sessions, lead_id="R1", dealer_id="a", status=LeadStatus.ACCEPTED, at=T0, received_at=T0
    )
    assert (early.outcome, early.current) == (feedback.Outcome.APPLIED, True)
    async with sessions.begin() as session:
        await deliveries.mark_delivered(
            session, lead_id="R1", dealer_id="a", dealer_lead_id="X", day=DAY, at=T0
        )
    assert (await deliveries.holding(sessions, "R1", "a")).dealer_status == "accepted"
    kept = await deliveries.withdraw(sessions, "R1", "a", T0, reason="SLA")
    assert not kept.withdrawn  # the acceptance stands

    other = LeadProfile("SP", "Santos", "Onix")
    claim = await deliveries.claim_next(sessions, "R2", other, DAY, T0)
    assert claim is not None
    async with sessions.begin() as session:
        await deliveries.mark_delivered(
            session, lead_id="R2", dealer_id=claim.dealer_id, dealer_lead_id="Y", day=DAY, at=T0
        )
    first = await deliveries.withdraw(sessions, "R2", claim.dealer_id, T0, reason="SLA 1")
    assert first.withdrawn and first.taken_now and first.withdrawals == 1
    again = await deliveries.withdraw(sessions, "R2", claim.dealer_id, T0, reason="SLA 1")  # a retry
    assert again.withdrawn and not again.taken_now and again.withdrawals == 1
    await deliveries.reassign(sessions, "R2", claim.dealer_id, DAY, T0, reason="back", reassigned_by="ana")
    second = await deliveries.withdraw(sessions, "R2", claim.dealer_id, T0, reason="SLA 2")
    assert second.withdrawn and second.taken_now and second.withdrawals == 1


@pytest.mark.parametrize("first_loss", ["withdrawn, then a late report", "accepted, then moved by support"])
async def test_a_dealer_that_gets_a_lead_back_reports_about_the_new_delivery(
    sessions: async_sessionmaker[AsyncSession], first_loss: str
) -> None:
    """Its earlier report of the same status was about the delivery it lost: its acceptance of the lead
    it got back is taken (not a repeat) and keeps the lead against the SLA."""
    await load(sessions, dealer("a", priority=10), dealer("b", priority=20))
    await lead_status.record_status(sessions, lead_id="L", status=LeadStatus.RECEIVED, workflow_id="w", at=T0)

    async def deliver(dealer_id: str, at: datetime) -> None:
        async with sessions.begin() as session:
            assert await deliveries.mark_delivered(
                session, lead_id="L", dealer_id=dealer_id, dealer_lead_id="X", day=DAY, at=at
            )

    def accept(at: datetime) -> Any:
        return feedback.record(
            sessions, lead_id="L", dealer_id="a", status=LeadStatus.ACCEPTED, at=at, received_at=at,
            to_signal=True,
        )  # fmt: skip

    assert (await deliveries.claim_next(sessions, "L", LeadProfile("SP", "", ""), DAY, T0)) is not None
    await deliver("a", T0)
    lost_at = T0 + timedelta(hours=1)
    if first_loss.startswith("withdrawn"):
        assert (await deliveries.withdraw(sessions, "L", "a", lost_at, reason="SLA")).withdrawn
        assert (await accept(lost_at)).outcome == feedback.Outcome.LATE  # answered 409
        assert (await accept(lost_at)).outcome == feedback.Outcome.LATE  # resent: still one row
    else:
        assert (await accept(lost_at)).outcome == feedback.Outcome.APPLIED
        contacted_first = await feedback.record(
            sessions, lead_id="L", dealer_id="a", status=LeadStatus.CONTACTED, at=lost_at, received_at=lost_at
        )
        assert contacted_first.outcome == feedback.Outcome.APPLIED
        await deliveries.reassign(sessions, "L", "b", DAY, lost_at, reason="moved", reassigned_by="ana")
        await deliveries.record_withdrawal(sessions, "L", "a", "withdrawn")  # the move's drop at a's CRM
        await deliver("b", lost_at)
    back_at = lost_at + timedelta(hours=1)
    await deliveries.reassign(sessions, "L", "a", DAY, back_at, reason="back", reassigned_by="ana")
    await deliver("a", back_at)

    accepted = await accept(back_at + timedelta(minutes=5))
    assert (accepted.outcome, accepted.current, accepted.due is not None) == (
        feedback.Outcome.APPLIED, True, True,
    )  # fmt: skip
    assert (await accept(back_at + timedelta(minutes=5))).outcome == feedback.Outcome.REPEATED
    assert (await deliveries.holding(sessions, "L", "a")).dealer_status == "accepted"
    kept = await deliveries.withdraw(sessions, "L", "a", back_at + timedelta(hours=1), reason="SLA 2")
    assert not kept.withdrawn  # the acceptance stands
    # A report of the new delivery older than its newest, of a status the first delivery reached too:
    # in the history as the new delivery's, not a clash answered 500.
    later = back_at + timedelta(minutes=10)
    qualified = await feedback.record(
        sessions, lead_id="L", dealer_id="a", status=LeadStatus.QUALIFIED, at=later, received_at=later
    )
    assert qualified.outcome == feedback.Outcome.APPLIED
    contacted = await feedback.record(
        sessions, lead_id="L", dealer_id="a", status=LeadStatus.CONTACTED, at=later - timedelta(minutes=2),
        received_at=later,
    )  # fmt: skip
    assert contacted.outcome == feedback.Outcome.OLDER
    async with sessions() as session:
        rows = (await session.scalars(select(DealerFeedback).where(DealerFeedback.lead_id == "L"))).all()
    first = ["late"] if first_loss.startswith("withdrawn") else ["applied", "applied"]
    assert sorted(row.outcome for row in rows) == sorted([*first, "applied", "applied", "older"])
    # Each report reaches bronze under a key of its own: the two acceptances are two events.
    reports = await lead_changes.changes(sessions, "feedback", None, later + timedelta(days=1), None, 10)
    keys = [lead_record("feedback", report.fields, report.at).event_key for report in reports]
    assert len(set(keys)) == len(reports) == len(rows)
    # The lead's history goes through the new delivery's statuses: its latest (what silver.leads takes
    # for the lead's latest status) is the dealer's newest, not the reassignment.
    view = await lead_status.get_lead(sessions, "L")
    assert view is not None and view.status == "qualified"
    again = [h.status for h in view.history if h.dealer_id == "a" and h.at >= back_at]
    assert again == ["reassigned", "accepted", "contacted", "qualified"]
    assert view.history[-1].status == "qualified"
    until = datetime.now(UTC) + timedelta(days=1)  # statuses are read by when the portal recorded them
    statuses = await lead_changes.changes(sessions, "status", None, until, None, 50)
    keys = [lead_record("status", change.fields, change.at).event_key for change in statuses]
    assert len(set(keys)) == len(statuses) == len(view.history)  # each lands in bronze


async def test_a_webhook_report_stays_due_until_its_run_has_it_and_one_process_hands_it_on(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The dealer is answered once the report is committed: the lead's newest report, and only that one,
    is due to reach its run after a grace, taken by one sweeping process at a time, and due no more once
    handed on."""
    await load(sessions, dealer("a", priority=10))
    await lead_status.record_status(
        sessions, lead_id="D1", status=LeadStatus.RECEIVED, workflow_id="w", at=T0
    )
    claim = await deliveries.claim_next(sessions, "D1", LeadProfile("SP", "Santos", "Onix"), DAY, T0)
    assert claim is not None and claim.dealer_id == "a"

    def report(status: LeadStatus, minutes: int, *, to_signal: bool = True) -> Any:
        at = T0 + timedelta(minutes=minutes)
        return feedback.record(
            sessions, lead_id="D1", dealer_id="a", status=status, at=at, received_at=T0, to_signal=to_signal
        )

    accepted = await report(LeadStatus.ACCEPTED, 0)
    assert accepted.outcome == feedback.Outcome.APPLIED and accepted.due is not None
    again = await report(LeadStatus.ACCEPTED, 0)
    assert again.outcome == feedback.Outcome.REPEATED and again.due == accepted.due  # resent, still due
    polled = await report(LeadStatus.CONTACTED, 3, to_signal=False)
    assert polled.outcome == feedback.Outcome.APPLIED and polled.due is None  # the run read it itself...
    assert (await report(LeadStatus.ACCEPTED, 0)).due is None  # ...so the older acceptance is due no more
    assert (await report(LeadStatus.LOST, -2)).outcome == feedback.Outcome.OLDER
    assert await feedback.due_reports(sessions, T0 + timedelta(days=1), 10) == []  # none of those is due

    sold = await report(LeadStatus.SOLD, 5)  # (within a clock's skew of its arrival: a time kept as given)
    assert sold.due is not None and (sold.due.status, sold.due.at) == ("sold", T0 + timedelta(minutes=5))
    assert await feedback.due_reports(sessions, T0, 10) == []  # the API's own hand-over goes first
    (due,) = await feedback.due_reports(sessions, T0 + feedback.HAND_OVER_GRACE, 10)
    assert due == sold.due
    later = T0 + feedback.HAND_OVER_GRACE + timedelta(minutes=1)
    taken = await asyncio.gather(*(feedback.claim(sessions, due, later) for _ in range(2)))
    assert sorted(t is not None for t in taken) == [False, True]  # two API processes sweeping at once
    assert await feedback.due_reports(sessions, later - timedelta(seconds=1), 10) == []
    (again_due,) = await feedback.due_reports(sessions, later, 10)  # that hand-over failed: due again
    # Made due again meanwhile (support ended the run it reached): that hand-over does not undo it.
    rearmed = later + timedelta(minutes=1)
    await feedback.unguard(sessions, "D1", "a", rehand_at=rearmed)
    await feedback.handed_on(sessions, again_due)
    (still_due,) = await feedback.due_reports(sessions, rearmed, 10)
    await feedback.handed_on(sessions, still_due)
    assert await feedback.due_reports(sessions, later + timedelta(days=1), 10) == []
    # A move's guard (its command died before it looked): the newest is handed on once it passed, even
    # where a newer report and its hand-over cleared every due time since.
    await feedback.guard(sessions, "D1", "a", rearmed + timedelta(minutes=2))
    await report(LeadStatus.SOLD, 5)  # (a repeat: nothing due)
    assert await feedback.guards_passed(sessions, rearmed + timedelta(minutes=1)) == 0
    assert await feedback.guards_passed(sessions, rearmed + timedelta(minutes=2)) == 1
    (guarded,) = await feedback.due_reports(sessions, rearmed + timedelta(minutes=2), 10)
    assert guarded.status == "sold"
    assert await feedback.guards_passed(sessions, rearmed + timedelta(days=1)) == 0  # cleared
    # A sweep that read a guard as passed, while support's next try of the move wrote it again for
    # later: that sweep leaves the new guard be.
    again = rearmed + timedelta(hours=1)
    await feedback.guard(sessions, "D1", "a", again)
    assert not await feedback.unguard(sessions, "D1", "a", rehand_at=rearmed, passed_by=rearmed)
    assert await feedback.guards_passed(sessions, again) == 1


async def delivered_at_a(sessions: async_sessionmaker[AsyncSession], lead_id: str) -> None:
    """Dealers a and b; the lead received, claimed by a (its priority) and delivered there at T0."""
    await load(sessions, dealer("a", priority=10), dealer("b", priority=20))
    await lead_status.record_status(
        sessions, lead_id=lead_id, status=LeadStatus.RECEIVED, workflow_id="w", at=T0
    )
    await deliveries.claim_next(sessions, lead_id, LeadProfile("SP", "Santos", "Onix"), DAY, T0)
    async with sessions.begin() as session:
        await deliveries.mark_delivered(
            session, lead_id=lead_id, dealer_id="a", dealer_lead_id="CRM-1", day=DAY, at=T0
        )


async def test_a_report_still_due_when_support_moves_the_lead_stays_due_after_the_next_dealers(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Dealer a's report, answered but not yet handed to the lead's run, stays due when support moves the
    lead and dealer b reports: the subscribers still hear of it (its run passes it on to them). Zoho
    keeps b's status: a's report is superseded there."""
    await delivered_at_a(sessions, "M1")

    def report(dealer_id: str, status: LeadStatus, minutes: int) -> Any:
        at = T0 + timedelta(minutes=minutes)
        return feedback.record(
            sessions, lead_id="M1", dealer_id=dealer_id, status=status, at=at, received_at=at, to_signal=True
        )

    contacted = await report("a", LeadStatus.CONTACTED, 1)
    assert contacted.outcome == feedback.Outcome.APPLIED and contacted.due is not None
    moved = T0 + timedelta(minutes=2)
    await deliveries.reassign(sessions, "M1", "b", DAY, moved, reason="customer moved", reassigned_by="ana")
    accepted = await report("b", LeadStatus.ACCEPTED, 3)
    assert accepted.outcome == feedback.Outcome.APPLIED and accepted.due is not None
    due = await feedback.due_reports(sessions, T0 + timedelta(days=1), 10)
    assert sorted((d.dealer_id, d.status) for d in due) == [("a", "contacted"), ("b", "accepted")]
    # b's own newer report still makes its older one due no more.
    assert (await report("b", LeadStatus.CONTACTED, 4)).due is not None
    due = await feedback.due_reports(sessions, T0 + timedelta(days=1), 10)
    assert sorted((d.dealer_id, d.status) for d in due) == [("a", "contacted"), ("b", "contacted")]
    at = T0 + timedelta(minutes=1)
    assert await deliveries.superseded(sessions, "M1", "a", "contacted", at)  # the lead is at b now
    assert not await deliveries.superseded(sessions, "M1", "b", "sold", T0 + timedelta(minutes=5))


async def test_the_same_late_report_sent_twice_at_once_is_recorded_once_and_answered_late(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A dealer that lost the lead sends its acceptance and, its first answer slow, sends it again: with
    no delivery row to lock, both find no earlier report; the second insert meets the first's row and
    is answered as the first (late), not as a bug in the hub."""
    await delivered_at_a(sessions, "W1")
    withdrawn = await deliveries.withdraw(sessions, "W1", "a", T0 + timedelta(minutes=30), reason="sla")
    assert withdrawn.withdrawn
    at = T0 + timedelta(minutes=31)
    for _ in range(5):  # (the two must meet between their reads and their inserts: tried a few times)
        async with sessions.begin() as session:
            await session.execute(delete(DealerFeedback).where(DealerFeedback.lead_id == "W1"))
        twice = await asyncio.gather(
            *(
                feedback.record(
                    sessions, lead_id="W1", dealer_id="a", status=LeadStatus.ACCEPTED, at=at, received_at=at
                )
                for _ in range(2)
            )
        )
        assert [r.outcome for r in twice] == [feedback.Outcome.LATE] * 2
        async with sessions() as session:
            rows = (await session.scalars(select(DealerFeedback).where(DealerFeedback.lead_id == "W1"))).all()
        assert [(row.dealer_id, row.status, row.outcome) for row in rows] == [("a", "accepted", "late")]


def test_an_sla_that_does_not_fit_in_a_year_of_the_dealers_hours_is_refused_as_the_rules_load() -> None:
    """One open hour a week and a week's SLA: no delivery could get a deadline (after its CRM took the
    lead), so the rules are refused, naming the SLA."""
    saturdays = {"hours": {"weekly": {"sat": ["09:00-10:00"]}}}
    with pytest.raises(ValidationError, match="10080 open minutes do not fit in a year"):
        RulesFile.model_validate(
            {"dealers": [dealer("a") | saturdays | {"sla": {"accept_within_minutes": 10080}}]}
        )
    fits = dealer("a") | saturdays | {"sla": {"accept_within_minutes": 120}}
    assert len(RulesFile.model_validate({"dealers": [fits]}).dealers) == 1


def test_holidays_without_weekly_hours_are_refused_as_the_rules_load() -> None:
    """Without weekly hours a dealer is always open: holidays or closed days given with none would close
    nothing, so the file is refused (rows stored so by an earlier version still load, open always)."""
    for hours in ({"weekly": {}, "holidays": "BR"}, {"weekly": {}, "closed": ["2026-12-24"]}):
        with pytest.raises(ValidationError, match="holidays and closed days need weekly hours"):
            RulesFile.model_validate({"dealers": [dealer("a") | {"hours": hours}]})
    assert from_config({"weekly": {}, "holidays": "BR"}).always_open


ADF_LEAD = {"vehicle_make": "=Chevrolet", "vehicle_model": "Modelo_de_Interesse", "first_name": "First_Name"}


def test_an_adf_dealer_maps_what_adf_requires() -> None:
    """ADF requires a vehicle's make and model, the customer's name and an e-mail or phone, and the
    vendor's e-mail or phone: a dealer whose mapping leaves one out is refused as the rules load, not
    lead by lead. A mailto: dealer's inbox is the vendor's e-mail; a dealer that takes POSTs maps one."""
    posted = dealer("adf-http") | {
        "crm": {"kind": "adf", "url": "https://dealer.example/adf"},
        "field_mapping": {"first_name": "First_Name"},
    }
    with pytest.raises(ValidationError) as refused:
        RulesFile.model_validate({"dealers": [posted]})
    message = str(refused.value)
    assert "the vehicle's make: vehicle_make; the vehicle's model: vehicle_model" in message
    assert "the customer's e-mail or phone: email or phone or mobile" in message
    assert "the vendor's e-mail or phone: vendor_email or vendor_phone" in message
    lead = {**ADF_LEAD, "mobile": "Mobile"}
    named = posted | {"field_mapping": {**lead, "vendor_email": "=leads@dealer.example"}}
    mailed = dealer("adf-mail") | {
        "crm": {"kind": "adf", "url": "mailto:leads@dealer.example"},
        "field_mapping": lead,
    }
    assert len(RulesFile.model_validate({"dealers": [named, mailed]}).dealers) == 2
    with pytest.raises(ValidationError, match="the customer's e-mail or phone"):
        RulesFile.model_validate({"dealers": [mailed | {"field_mapping": ADF_LEAD}]})
    blank = {**lead, "vehicle_make": "= "}  # a literal of nothing fills nothing
    with pytest.raises(ValidationError, match="the vehicle's make: vehicle_make"):
        RulesFile.model_validate({"dealers": [mailed | {"field_mapping": blank}]})
    # A REST mapping copied over, or a value ADF does not allow: refused, not filled with nothing.
    with pytest.raises(ValidationError, match="ADF has no place for cpf, external_id"):
        RulesFile.model_validate(
            {"dealers": [mailed | {"field_mapping": {**lead, "external_id": "id", "cpf": "CPF"}}]}
        )
    with pytest.raises(ValidationError, match="'Comprar' is not one of buy, lease"):
        RulesFile.model_validate(
            {"dealers": [mailed | {"field_mapping": {**lead, "vehicle_interest": "=Comprar"}}]}
        )


async def test_a_report_timed_ahead_of_the_hubs_clock_does_not_outrank_later_real_ones(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A dealer's clock (its webhook's "at", its CRM's answer to a poll) three hours ahead: the report
    counts as made within a clock's skew of its arrival, so the dealer's real later "sold" is applied,
    not answered older until that future time."""
    await load(sessions, dealer("a", priority=10))
    await lead_status.record_status(
        sessions, lead_id="L1", status=LeadStatus.RECEIVED, workflow_id="w", at=T0
    )
    claimed = await deliveries.claim_next(sessions, "L1", LeadProfile("SP", "Santos", "Onix"), DAY, T0)
    assert claimed is not None and claimed.dealer_id == "a"
    ahead = await feedback.record(
        sessions, lead_id="L1", dealer_id="a", status=LeadStatus.ACCEPTED,
        at=T0 + timedelta(hours=3), received_at=T0,
    )  # fmt: skip
    assert ahead.outcome == feedback.Outcome.APPLIED
    sold = await feedback.record(
        sessions, lead_id="L1", dealer_id="a", status=LeadStatus.SOLD,
        at=T0 + timedelta(minutes=10), received_at=T0 + timedelta(minutes=10),
    )  # fmt: skip
    assert sold.outcome == feedback.Outcome.APPLIED
    view = await lead_status.get_lead(sessions, "L1")
    assert view is not None and view.status == "sold"
