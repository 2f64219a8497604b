"""Times on the command line: dates, ISO 8601 times and durations back from now (``24h``)."""

from __future__ import annotations

import argparse
import re
from datetime import UTC, date, datetime, time, timedelta

from core.timeutil import within_utc_range

UNITS = {"m": timedelta(minutes=1), "h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
DURATION = re.compile(r"(\d+)([mhdw])")


def moment(text: str, *, end_of_day: bool = False) -> datetime:
    """A date (``2024-11-01``, the day's first or last millisecond) or an ISO 8601 time, in UTC."""
    try:
        day = date.fromisoformat(text)
    except ValueError:
        try:
            value = datetime.fromisoformat(text)
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"not a date or ISO 8601 time: {text!r}") from error
        if not value.tzinfo:
            return value.replace(tzinfo=UTC)
        try:
            return within_utc_range(value)  # as the API checks its times
        except ValueError as error:
            raise argparse.ArgumentTypeError(f"{text!r}: {error}") from None
    start = datetime.combine(day, time(), tzinfo=UTC)
    return start + timedelta(days=1) - timedelta(milliseconds=1) if end_of_day else start


def since(text: str, now: datetime | None = None) -> datetime:
    """``30m``, ``24h``, ``7d``, ``2w`` back from now, or a date or ISO 8601 time as ``moment`` reads it."""
    matched = DURATION.fullmatch(text.strip())
    if matched is None:
        return moment(text)
    amount, unit = matched.groups()
    return (now or datetime.now(UTC)) - int(amount) * UNITS[unit]


def visibility_time(value: datetime) -> str:
    """A time as Temporal's list filter compares it (RFC 3339, UTC)."""
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
