"""Master Data scroll calls claimed by count (``db.scrolls``), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.timeutil import utcnow
from db.models import ScrollCall
from db.scrolls import KEPT, claim_scroll_call, token_digest


async def test_a_call_is_claimed_only_by_a_run_that_knows_every_call_made_with_the_token(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    assert await claim_scroll_call(sessions, "token-a", 0) == 1
    assert await claim_scroll_call(sessions, "token-a", 1) == 2
    # A run reset to before those calls knows fewer: Master Data has moved on without it.
    assert await claim_scroll_call(sessions, "token-a", 0) is None
    assert await claim_scroll_call(sessions, "token-a", 1) is None
    assert await claim_scroll_call(sessions, "token-a", 2) == 3
    assert await claim_scroll_call(sessions, "token-b", 0) == 1  # each token counts apart
    # Two attempts claiming the same call at once: one makes it.
    both = await asyncio.gather(*(claim_scroll_call(sessions, "token-a", 3) for _ in range(2)))
    assert sorted(both, key=str) == [4, None]
    async with sessions() as session:
        kept = set(await session.scalars(select(ScrollCall.token_digest)))
    assert kept == {token_digest("token-a"), token_digest("token-b")}  # the digests, not the tokens


async def test_tokens_unused_for_a_day_are_dropped(sessions: async_sessionmaker[AsyncSession]) -> None:
    async with sessions.begin() as session:
        session.add(ScrollCall(token_digest=token_digest("old"), calls=7, used_at=utcnow() - KEPT * 2))
        session.add(
            ScrollCall(token_digest=token_digest("recent"), calls=2, used_at=utcnow() - timedelta(hours=1))
        )
    assert await claim_scroll_call(sessions, "new", 0) == 1
    async with sessions() as session:
        kept = set(await session.scalars(select(ScrollCall.token_digest)))
    assert kept == {token_digest("recent"), token_digest("new")}
