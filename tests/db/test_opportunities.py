"""Opportunity upserts: newest state wins, stage history has each change once, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.deals import DealState
from db.opportunities import apply_change, get_opportunity

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
DEAL = "5725767000000900001"


def state(minutes: int, stage: str | None, **fields: object) -> DealState:
    return DealState(deal_id=DEAL, modified_time=T0 + timedelta(minutes=minutes), stage=stage, **fields)  # type: ignore[arg-type]


async def test_newer_states_apply_and_older_ones_are_stale(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = T0 + timedelta(hours=1)
    first = state(
        0, "Qualification", deal_name="Frota 40 Onix", amount=Decimal("1250000.50"), modified_by="Ana"
    )
    assert await apply_change(sessions, first, now) == "applied"
    assert await apply_change(sessions, first, now) == "repeated"
    assert await apply_change(sessions, state(2, "Negotiation/Review", modified_by="Bruno"), now) == "applied"
    # Out of order and late: joins the stage history, leaves the current state alone.
    assert await apply_change(sessions, state(1, "Needs Analysis", modified_by="Caio"), now) == "stale"
    assert await apply_change(sessions, state(1, "Needs Analysis", modified_by="Caio"), now) == "repeated"
    assert (
        await apply_change(sessions, state(3, "Negotiation/Review", amount=Decimal("990000")), now)
        == "applied"
    )

    deal = await get_opportunity(sessions, DEAL)
    assert deal is not None
    assert (deal.stage, deal.amount, deal.deal_name) == (
        "Negotiation/Review",
        Decimal("990000.00"),
        "Frota 40 Onix",
    )
    assert deal.modified_time == T0 + timedelta(minutes=3)
    assert [(c.from_stage, c.to_stage, c.changed_by) for c in deal.stage_history] == [
        (None, "Qualification", "Ana"),
        ("Qualification", "Needs Analysis", "Caio"),
        ("Needs Analysis", "Negotiation/Review", "Bruno"),
    ]
    assert deal.stage_history[2].changed_at == T0 + timedelta(minutes=2)
    assert await get_opportunity(sessions, "1") is None
