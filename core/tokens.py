"""OAuth access tokens shared by every process: what the Zoho client needs of their store (``db.tokens``)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol


@dataclass(frozen=True)
class StoredToken:
    access_token: str
    expires_at: datetime


class TokenStore(Protocol):
    """One shared token per name, and a refresh lease that lets one process at a time refresh it."""

    async def read(self, name: str) -> StoredToken | None: ...

    async def take_refresh_lease(
        self,
        name: str,
        now: datetime,
        lease: timedelta,
        *,
        stale_before: datetime,
        rejected: str | None = None,
    ) -> bool: ...

    async def store(self, name: str, access_token: str, expires_at: datetime) -> None: ...

    async def release_lease(self, name: str, *, held_until: datetime | None = None) -> None: ...
