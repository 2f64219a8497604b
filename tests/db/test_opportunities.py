"""A Zoho deal as the central database stores it: what fits is stored, what cannot be is refused."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.deals import DealState, InvalidDeal, deal_from_zoho
from core.timeutil import as_utc
from db.models import Opportunity
from db.opportunities import apply_change, get_opportunity


def zoho_deal(**fields: Any) -> dict[str, Any]:
    return {"id": "5725767000000700001", "Modified_Time": "2026-12-01T10:00:00-03:00", **fields}


async def test_the_largest_deal_zoho_may_send_is_stored_on_both_databases(
    sessions: async_sessionmaker[AsyncSession], database_url: str
) -> None:
    """PostgreSQL refuses a value beyond its column (SQLite stores anything): the record is brought to
    the columns' sizes first, so the deal's change is stored, never retried for ever."""
    deal = deal_from_zoho(
        zoho_deal(
            Amount="9999999999999999.99",
            Probability=2**31 - 1,
            Deal_Name="N" * 400,
            Stage={"name": "S" * 150},
            Account_Name={"id": "1", "name": "A" * 301},
        )
    )
    assert await apply_change(sessions, deal, datetime.now(UTC)) == "applied"
    stored = await get_opportunity(sessions, deal.deal_id)
    assert stored is not None and stored.amount is not None
    if database_url.startswith("postgresql"):  # SQLite keeps NUMERIC as a float: about 15 digits
        assert stored.amount == Decimal("9999999999999999.99")
    assert (len(stored.deal_name or ""), len(stored.stage or "")) == (300, 100)


async def test_a_nul_character_in_a_deals_text_is_left_out_on_both_databases(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """PostgreSQL stores no NUL (U+0000) in text: a Zoho record holding one (a paste from elsewhere) is
    stored without it, where its change was retried for ever."""
    deal = deal_from_zoho(
        zoho_deal(Deal_Name="Onix\x00 LT", Stage="Qualifica\x00\x00tion", Owner={"id": "1", "name": "\x00"})
    )
    assert await apply_change(sessions, deal, datetime.now(UTC)) == "applied"
    stored = await get_opportunity(sessions, deal.deal_id)
    assert stored is not None
    assert (stored.deal_name, stored.stage, stored.owner_name) == ("Onix LT", "Qualification", None)
    assert [change.to_stage for change in stored.stage_history] == ["Qualification"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"Amount": 1e16}, "deal '5725767000000700001': ValueError in its fields"),
        ({"Amount": "-1E+20"}, "ValueError"),
        ({"Amount": "NaN"}, "ValueError"),
        ({"Probability": 2**31}, "ValueError"),
    ],
)
def test_a_deal_the_database_cannot_store_is_refused_by_name(fields: dict[str, Any], message: str) -> None:
    """Refused as InvalidDeal: its change is parked where support sees it (fetch_deal)."""
    with pytest.raises(InvalidDeal, match=message):
        deal_from_zoho(zoho_deal(**fields))


async def test_a_change_stored_before_is_told_apart_from_an_older_one(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Stored again (an attempt retried after its commit): "current", the database holding it as the
    deal's state; an older change stored before: "repeated"; an older one not yet in the history: "stale"."""
    earlier = "2026-12-01T09:00:00-03:00"
    older = deal_from_zoho(zoho_deal(Stage={"name": "Qualification"}, Modified_Time=earlier))
    newer = deal_from_zoho(zoho_deal(Stage={"name": "Needs Analysis"}))
    at = datetime.now(UTC)
    assert await apply_change(sessions, newer, at) == "applied"
    assert await apply_change(sessions, newer, at) == "current"
    assert await apply_change(sessions, older, at) == "stale"
    assert await apply_change(sessions, older, at) == "repeated"


async def test_a_field_cleared_in_zoho_is_cleared_in_the_database(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Sales empty a deal's amount, closing date and contact in Zoho: the record read after the change
    leaves them empty, and so does the database (it kept the old values under the new time). A stage
    move a webhook reports alone changes only the history. A record of the same second that only
    clears a field is that second's last word too."""
    full = {"Amount": "1000", "Closing_Date": "2026-12-20", "Contact_Name": {"id": "9", "name": "Ana"}}
    at = datetime.now(UTC)
    assert (
        await apply_change(sessions, deal_from_zoho(zoho_deal(Stage="Qualification", **full)), at)
        == "applied"
    )
    cleared = deal_from_zoho(zoho_deal(Stage="Needs Analysis", Modified_Time="2026-12-01T11:00:00-03:00"))
    assert await apply_change(sessions, cleared, at, record_read=True) == "applied"
    stored = await get_opportunity(sessions, cleared.deal_id)
    assert stored is not None
    assert (stored.amount, stored.closing_date, stored.contact_name) == (None, None, None)

    again = deal_from_zoho(
        zoho_deal(Stage="Needs Analysis", Modified_Time="2026-12-01T12:00:00-03:00", **full)
    )
    assert await apply_change(sessions, again, at) == "applied"
    # A stage move a webhook reports alone (the workflow's _stage_of), at the deal's own second: it
    # joins the history, and the deal keeps its fields.
    stage_only = DealState(again.deal_id, again.modified_time, stage="Proposal")
    assert await apply_change(sessions, stage_only, at) == "stale"
    kept = await get_opportunity(sessions, again.deal_id)
    assert kept is not None and (kept.stage, kept.contact_name, kept.amount) == (
        "Needs Analysis",
        "Ana",
        1000,
    )

    same_second = deal_from_zoho(zoho_deal(Stage="Proposal", Modified_Time="2026-12-01T12:00:00-03:00"))
    assert await apply_change(sessions, same_second, at, record_read=True) == "applied"
    stored = await get_opportunity(sessions, again.deal_id)
    assert stored is not None and (stored.amount, stored.contact_name) == (None, None)


async def test_two_moves_within_one_second_are_both_kept_and_zohos_record_settles_which_is_current(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Zoho stamps two moves made within one second alike. A webhook's stage at the current state's time
    joins the history only; Zoho's record read at that time is the later move and becomes the state."""
    first = deal_from_zoho(zoho_deal(Stage="Needs Analysis"))
    second = replace(first, stage="Value Proposition")
    at = datetime.now(UTC)
    assert await apply_change(sessions, first, at) == "applied"
    assert await apply_change(sessions, second, at) == "stale"  # a webhook: history only
    assert await apply_change(sessions, second, at) == "repeated"
    assert await apply_change(sessions, second, at, record_read=True) == "applied"
    assert await apply_change(sessions, second, at, record_read=True) == "current"
    assert await apply_change(sessions, first, at, record_read=False) == "repeated"
    stored = await get_opportunity(sessions, first.deal_id)
    assert stored is not None and stored.stage == "Value Proposition"
    moves = [(move.from_stage, move.to_stage) for move in stored.stage_history]
    assert moves == [(None, "Needs Analysis"), ("Needs Analysis", "Value Proposition")]


async def test_a_late_attempt_of_an_older_read_of_the_same_second_does_not_move_the_deal_back(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Two moves within one second, each read from Zoho after its webhook. The first read's store stalls
    (a frozen worker); Temporal's retry stores it, the second read is stored after it; then the frozen
    attempt wakes and commits. Zoho's times cannot order the two reads: the times they were read at do."""
    read = datetime(2026, 12, 1, 13, 0, 2, tzinfo=UTC)
    first = replace(deal_from_zoho(zoho_deal(Stage="Needs Analysis")), read_at=read)
    second = replace(first, stage="Value Proposition", read_at=read + timedelta(seconds=40))
    at = datetime.now(UTC)
    assert await apply_change(sessions, first, at, record_read=True) == "applied"
    assert await apply_change(sessions, second, at, record_read=True) == "applied"
    assert await apply_change(sessions, first, at, record_read=True) == "repeated"  # the frozen attempt
    stored = await get_opportunity(sessions, first.deal_id)
    assert stored is not None and stored.stage == "Value Proposition"
    unknown = replace(first, read_at=None)  # a state from before reads were timed: taken, as before
    assert await apply_change(sessions, unknown, at, record_read=True) == "applied"


async def test_moves_within_one_second_keep_their_order_after_the_deal_moves_on(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The later move's record stored before the earlier move's webhook came: its stage is the one the
    second ended on, before the deal moves on and after."""
    later = deal_from_zoho(zoho_deal(Stage="Value Proposition"))
    at = datetime.now(UTC)
    assert await apply_change(sessions, later, at, record_read=True) == "applied"
    assert await apply_change(sessions, replace(later, stage="Needs Analysis"), at) == "stale"
    assert await apply_change(sessions, later, at, record_read=True) == "current"  # read again: still last
    moved_on = replace(later, stage="Proposal/Price Quote", modified_time=later.modified_time + timedelta(1))
    for current in ("Value Proposition", "Proposal/Price Quote"):
        stored = await get_opportunity(sessions, later.deal_id)
        assert stored is not None and stored.stage == current
        moves = [(move.from_stage, move.to_stage) for move in stored.stage_history]
        assert moves[:2] == [(None, "Needs Analysis"), ("Needs Analysis", "Value Proposition")]
        assert await apply_change(sessions, moved_on, at, record_read=True) in ("applied", "current")
    assert moves[2:] == [("Value Proposition", "Proposal/Price Quote")]
    # A late attempt's older read of that second, from before its second move: it marks nothing.
    early_read = replace(later, stage="Needs Analysis")
    assert await apply_change(sessions, early_read, at, record_read=True) == "repeated"
    stored = await get_opportunity(sessions, later.deal_id)
    assert stored is not None and [(m.from_stage, m.to_stage) for m in stored.stage_history] == moves


async def test_a_lead_found_by_a_repeated_change_reaches_the_deal_and_its_change_time(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A lookup missed at first, found when the same change comes again ("current"): the link is stored
    and the row counts as changed (the lead warehouse sync pages deals by ``updated_at``)."""
    deal = deal_from_zoho(zoho_deal(Stage="Qualification"))
    first, again = datetime(2026, 12, 1, 14, tzinfo=UTC), datetime(2026, 12, 1, 15, tzinfo=UTC)
    missed = replace(deal, lead_lookup_missed=True)
    assert await apply_change(sessions, missed, first) == "applied"
    found = replace(deal, lead_id="5725767000000123456", lead_lookup_missed=False)
    assert await apply_change(sessions, found, again) == "current"
    async with sessions() as session:
        row = await session.get(Opportunity, deal.deal_id)
    assert row is not None
    assert (row.lead_id, row.lead_lookup_missed) == ("5725767000000123456", False)
    assert as_utc(row.updated_at) == again
