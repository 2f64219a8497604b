"""Time helpers: the database keeps UTC; SQLite hands datetimes back without a zone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


def as_utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime (naive values from SQLite are UTC)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def within_utc_range(value: datetime) -> datetime:
    """``value`` unchanged if it has a UTC time; ValueError if, once in UTC, it falls outside the years
    1 to 9999 (``0001-01-01T00:00:00+01:00``): a time no later step could compare, store or print."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("outside the years 1 to 9999 once in UTC") from None
    return value


# How far a partner's clock may run from the hub's: a dealer's report or CRM record, a Zoho webhook.
CLOCK_SKEW = timedelta(minutes=5)


def utcnow() -> datetime:
    return datetime.now(UTC)


def seconds_since(iso_time: str, now: datetime | None = None) -> float:
    """Seconds from ``iso_time`` (ISO 8601 with a zone) to ``now`` (default: now); never negative."""
    elapsed = ((now or utcnow()) - datetime.fromisoformat(iso_time)).total_seconds()
    return max(elapsed, 0.0)
