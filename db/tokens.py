"""OAuth access tokens shared by every process through the database.

Zoho issues at most 10 access tokens per refresh token in 10 minutes, so workers must reuse one token
and only one of them may refresh it at a time: a refresh lease taken by a conditional UPDATE, which is
atomic on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.timeutil import as_utc
from core.tokens import StoredToken
from db.models import OAuthToken


class DatabaseTokens:
    """The portal database as the Zoho client's token store (``core.tokens.TokenStore``)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def read(self, name: str) -> StoredToken | None:
        """The stored token, or None if there is none yet."""
        async with self._sessions() as session:
            row = await session.get(OAuthToken, name)
        if row is None or row.access_token is None or row.expires_at is None:
            return None
        return StoredToken(access_token=row.access_token, expires_at=as_utc(row.expires_at))

    async def take_refresh_lease(
        self,
        name: str,
        now: datetime,
        lease: timedelta,
        *,
        stale_before: datetime,
        rejected: str | None = None,
    ) -> bool:
        """True if this caller may refresh the token now; others wait for the new token instead.

        The lease is granted only while the stored token is still stale (missing, expiring before
        ``stale_before``, or the ``rejected`` one), checked in the same atomic UPDATE: a caller that read a
        stale token just before another process stored a fresh one does not refresh again.
        """
        await self._ensure_row(name)
        still_stale = [
            OAuthToken.access_token.is_(None),
            OAuthToken.expires_at.is_(None),
            OAuthToken.expires_at < stale_before,
        ]
        if rejected is not None:
            still_stale.append(OAuthToken.access_token == rejected)
        async with self._sessions.begin() as session:
            result = await session.execute(
                update(OAuthToken)
                .where(
                    OAuthToken.name == name,
                    or_(OAuthToken.refresh_lease_until.is_(None), OAuthToken.refresh_lease_until < now),
                    or_(*still_stale),
                )
                .values(refresh_lease_until=now + lease)
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def store(self, name: str, access_token: str, expires_at: datetime) -> None:
        """Save a fresh token and release the refresh lease."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(OAuthToken)
                .where(OAuthToken.name == name)
                .values(access_token=access_token, expires_at=expires_at, refresh_lease_until=None)
            )

    async def release_lease(self, name: str, *, held_until: datetime | None = None) -> None:
        """Give the lease back after a failed refresh: at once, so another process can try; or at
        ``held_until`` (a refresh refused for now: the others wait instead of asking again)."""
        async with self._sessions.begin() as session:
            await session.execute(
                update(OAuthToken).where(OAuthToken.name == name).values(refresh_lease_until=held_until)
            )

    async def _ensure_row(self, name: str) -> None:
        try:
            async with self._sessions.begin() as session:
                if await session.get(OAuthToken, name) is None:
                    session.add(OAuthToken(name=name))
        except IntegrityError:
            pass  # another process created it first
