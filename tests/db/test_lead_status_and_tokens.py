"""Lead status history and the shared OAuth token lease, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.constants import LeadStatus
from db.lead_status import get_lead, record_status
from db.tokens import DatabaseTokens

T0 = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)


async def test_status_history_is_idempotent(sessions: async_sessionmaker[AsyncSession]) -> None:
    common = {"lead_id": "5725767000000412001", "workflow_id": "lead-5725767000000412001"}
    await record_status(sessions, status=LeadStatus.RECEIVED, at=T0, **common)
    await record_status(sessions, status=LeadStatus.RECEIVED, at=T0, **common)  # retried activity
    await record_status(
        sessions, status=LeadStatus.ROUTED, dealer_id="d1", at=T0 + timedelta(seconds=1), **common
    )
    await record_status(
        sessions,
        status=LeadStatus.DELIVERED,
        dealer_id="d1",
        dealer_lead_id="CRM-1",
        at=T0 + timedelta(seconds=2),
        **common,
    )
    # A zombie attempt of an earlier step finishing late must not move the lead back.
    await record_status(
        sessions, status=LeadStatus.ROUTED, dealer_id="d1", at=T0 + timedelta(seconds=3), **common
    )

    lead = await get_lead(sessions, "5725767000000412001")
    assert lead is not None
    assert (lead.status, lead.dealer_id, lead.dealer_lead_id) == ("delivered", "d1", "CRM-1")
    assert [h.status for h in lead.history] == ["received", "routed", "delivered"]
    assert lead.history[0].at == T0
    assert await get_lead(sessions, "1") is None


async def test_a_runs_start_recorded_again_leaves_a_claimed_lead_routed(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The lead's first workflow task retried after its claim committed records its arrival again: the
    lead stays routed. Waiting for support's decision (a "received" that says why) still sets it."""
    common = {"lead_id": "5725767000000412002", "workflow_id": "lead-5725767000000412002"}
    await record_status(sessions, status=LeadStatus.RECEIVED, at=T0, **common)
    await record_status(
        sessions, status=LeadStatus.ROUTED, dealer_id="d1", at=T0 + timedelta(seconds=1), **common
    )
    await record_status(sessions, status=LeadStatus.RECEIVED, at=T0 + timedelta(seconds=2), **common)
    lead = await get_lead(sessions, "5725767000000412002")
    assert lead is not None
    assert (lead.status, lead.dealer_id) == ("routed", "d1")
    assert [h.status for h in lead.history] == ["received", "routed"]

    awaiting = "awaiting assign_dealer until 2026-11-25T12:00:00+00:00 (d1: rejected)"
    await record_status(
        sessions, status=LeadStatus.RECEIVED, detail=awaiting, at=T0 + timedelta(seconds=3), **common
    )
    lead = await get_lead(sessions, "5725767000000412002")
    assert lead is not None
    assert (lead.status, lead.detail) == ("received", awaiting)


async def test_only_one_process_refreshes(sessions: async_sessionmaker[AsyncSession]) -> None:
    lease = timedelta(seconds=30)
    tokens = DatabaseTokens(sessions)

    async def take(at: datetime, rejected: str | None = None) -> bool:
        return await tokens.take_refresh_lease(
            "zoho:x", at, lease, stale_before=at + timedelta(minutes=5), rejected=rejected
        )

    results = await asyncio.gather(*(take(T0) for _ in range(8)))
    assert results.count(True) == 1
    # Until the lease ends nobody else may refresh; after it, someone can (the holder may have died).
    assert not await take(T0 + timedelta(seconds=29))
    assert await take(T0 + timedelta(seconds=31))

    await tokens.store("zoho:x", "1000.abc", T0 + timedelta(hours=1))
    stored = await tokens.read("zoho:x")
    assert stored is not None and stored.access_token == "1000.abc"
    assert stored.expires_at == T0 + timedelta(hours=1)
    # A process that saw the old (stale) token just before the store must not refresh again...
    assert not await take(T0 + timedelta(seconds=32))
    # ...unless the API rejected the fresh token, or it nears expiry.
    assert await take(T0 + timedelta(seconds=33), rejected="1000.abc")
    await tokens.release_lease("zoho:x")
    assert await take(T0 + timedelta(minutes=56))
