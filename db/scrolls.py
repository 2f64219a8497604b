"""Master Data scroll calls, claimed by count: a call is made only by a run that knows where the scroll is.

Master Data moves a scroll on with every call it serves. A customer sync's run holds the token and the
number of calls made with it. A run reset to an earlier page (``temporal workflow reset``) holds the same
token with a smaller count while Master Data has moved on: its next call would be served the pages after
those the run before the reset took, and skip the ones between. So each call is claimed here first: a
claim that does not find the count it expects finds the token used past what its run knows, and the run
scrolls its window again from the start (pages read again are not landed twice).
"""

from __future__ import annotations

import hashlib
from datetime import timedelta

from sqlalchemy import delete, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.timeutil import utcnow
from db.engine import lock_for_writing
from db.models import ScrollCall

# Master Data forgets a token left unused for 20 minutes; its row is kept a day, then dropped.
KEPT = timedelta(days=1)


def token_digest(token: str) -> str:
    """What a token is kept under: its SHA-256, since the token itself reads the scroll."""
    return hashlib.sha256(token.encode()).hexdigest()


async def claim_scroll_call(sessions: async_sessionmaker[AsyncSession], token: str, made: int) -> int | None:
    """Claim the next call with ``token``, of which the caller knows ``made`` calls were made.

    Returns the calls made with it once this one is (``made + 1``), or None where the token was used past
    ``made``: by the run a reset replaced, or by an attempt that is still running.
    """
    digest, now = token_digest(token), utcnow()
    try:
        async with sessions.begin() as session:
            await lock_for_writing(session)
            if made == 0:
                await session.execute(delete(ScrollCall).where(ScrollCall.used_at < now - KEPT))
                session.add(ScrollCall(token_digest=digest, calls=1, used_at=now))
                return 1
            claimed = await session.execute(
                update(ScrollCall)
                .where(ScrollCall.token_digest == digest, ScrollCall.calls == made)
                .values(calls=made + 1, used_at=now)
            )
            return made + 1 if claimed.rowcount == 1 else None  # type: ignore[attr-defined]
    except IntegrityError:  # a first call with this token was claimed already
        return None
