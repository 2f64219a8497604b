"""A dealer's opening hours: when it is open, and when an SLA counted in open time ends.

Opening hours are per weekday in the dealer's time zone; national holidays (the ``holidays`` package)
and the dealer's own closed days close the whole day. An SLA clock runs only while the dealer is open:
a lead that arrives at night starts its clock at the next opening.

The holidays of a few years are resolved when the rules are loaded (``holiday_calendar``) and stored with
the hours, so the worker routing leads does without the package: Brazil's calendar costs a process about
17 MiB. A day outside the stored years (rules loaded long ago) is asked of the package, loaded then.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import cache, lru_cache
from itertools import pairwise
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    import holidays

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# How far ahead a deadline is looked for: a calendar with no open hour in a year is a configuration error.
HORIZON_DAYS = 366
# The years of holidays stored when rules are loaded: the year before (a lead delivered before New Year)
# to this many years ahead.
HOLIDAY_YEARS_AHEAD = 5


@dataclass(frozen=True)
class OpeningHours:
    """Open intervals per weekday (``"mon"`` .. ``"sun"``), each ``(opens, closes)`` in local time."""

    timezone: str = "America/Sao_Paulo"
    weekly: dict[str, tuple[tuple[time, time], ...]] = field(default_factory=dict)
    holiday_country: str | None = None  # e.g. "BR": its national holidays close the day
    holiday_subdivision: str | None = None  # e.g. "SP": state holidays too
    closed_days: frozenset[date] = frozenset()
    # The region's holidays resolved at load, and the years (first, last) they cover.
    holiday_dates: frozenset[date] = frozenset()
    holiday_years: tuple[int, int] | None = None

    @property
    def always_open(self) -> bool:
        return not self.weekly

    def intervals_on(self, day: date) -> tuple[tuple[time, time], ...]:
        """The day's open intervals, earliest first; none on a holiday or a closed day."""
        if day in self.closed_days or self._is_holiday(day):
            return ()
        return self.weekly.get(WEEKDAYS[day.weekday()], ())

    def _is_holiday(self, day: date) -> bool:
        if not self.holiday_country:
            return False
        if self.holiday_years and self.holiday_years[0] <= day.year <= self.holiday_years[1]:
            return day in self.holiday_dates
        return day in _holidays(self.holiday_country, self.holiday_subdivision, day.year)

    def is_open(self, at: datetime) -> bool:
        """Whether the dealer is open at ``at`` (an aware datetime)."""
        if self.always_open:
            return True
        zone, instant = ZoneInfo(self.timezone), at.astimezone(UTC)
        day = instant.astimezone(zone).date()
        return any(
            _first_shown(day, opens, zone) <= instant < _closing(day, closes, zone)
            for opens, closes in self.intervals_on(day)
        )

    def add_open_time(self, start: datetime, duration: timedelta) -> datetime:
        """The moment ``duration`` of open time has passed since ``start`` (aware; returned in UTC).

        Friday 17:50 plus 30 minutes, closing at 18:00 and opening Monday at 08:00, is Monday 08:20.
        """
        started = start.astimezone(UTC)
        if self.always_open:
            return started + duration
        zone = ZoneInfo(self.timezone)
        first_day = started.astimezone(zone).date()
        left = duration
        for offset in range(HORIZON_DAYS):
            day = first_day + timedelta(days=offset)
            for opens, closes in self.intervals_on(day):
                begin = max(_first_shown(day, opens, zone), started)
                end = _closing(day, closes, zone)
                if begin >= end:
                    continue
                if begin + left <= end:
                    return begin + left
                left -= end - begin
        raise ValueError(f"no open hours within {HORIZON_DAYS} days of {start.isoformat()}")


def _closing(day: date, closes: time, zone: ZoneInfo) -> datetime:
    """When an interval of ``day`` closes: ``24:00`` (``time.max``) is the next day's first moment, so a
    dealer open around the clock is open through a change of the clocks at midnight too."""
    if closes == time.max:
        return _first_shown(day + timedelta(days=1), time(0), zone)
    return _first_shown(day, closes, zone)


@lru_cache(maxsize=4096)  # routing asks it for each dealer's hours, for each lead
def _first_shown(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The moment (UTC) the dealer's clock first shows ``wall`` on ``day``: the first of a time an autumn
    change repeats, and for a time a spring change skips, the change itself (the clock jumps past it).

    Times are compared and subtracted as such moments: aware datetimes of one zone do both as wall
    clocks, which would count a change's hour twice or not at all, and in a repeated hour take an opening
    that already passed for one still to come.
    """
    local = datetime.combine(day, wall, zone)  # fold 0: the first of a repeated time
    instant = local.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) == local.replace(tzinfo=None):
        return instant
    # Skipped: read with the offset after the change it is a moment before the change, with the offset
    # before it one after. The change lies between (whole seconds apart in every zone's rules).
    before, after = int(local.replace(fold=1).timestamp()), int(instant.timestamp())
    offset_after = instant.astimezone(zone).utcoffset()
    while after - before > 1:
        middle = (before + after) // 2
        if datetime.fromtimestamp(middle, zone).utcoffset() == offset_after:
            after = middle
        else:
            before = middle
    return datetime.fromtimestamp(after, UTC)


@cache
def _holidays(country: str, subdivision: str | None, year: int) -> holidays.HolidayBase:
    import holidays  # every country's calendar: loaded only where a day is not among the stored ones

    return holidays.country_holidays(country, subdiv=subdivision, years=year)


def holiday_calendar(region: str, today: date) -> dict[str, object]:
    """The stored form of the region's holidays (``"BR"``, ``"BR-SP"``) from the year before ``today``'s
    to ``HOLIDAY_YEARS_AHEAD`` years after: ``{"region": "BR-SP", "years": [first, last], "dates":
    ["2026-01-01", ...]}``.
    Raises ValueError for a region the holidays package does not know."""
    country, subdivision = _holiday_region(region)
    assert country is not None
    first, last = today.year - 1, today.year + HOLIDAY_YEARS_AHEAD
    days = sorted(day for year in range(first, last + 1) for day in _holidays(country, subdivision, year))
    return {"region": region, "years": [first, last], "dates": [day.isoformat() for day in days]}


# A day's end as a closing time ("22:00-24:00"): the last moment of the day.
END_OF_DAY = "24:00"


def parse_interval(text: str) -> tuple[time, time]:
    """``"08:00-18:00"`` as (opens, closes), ``24:00`` closing at the day's end; raises ValueError naming
    what is wrong."""
    opens_text, sep, closes_text = text.partition("-")
    if not sep:
        raise ValueError(f"{text!r}: expected HH:MM-HH:MM")
    try:
        opens = time.fromisoformat(opens_text.strip())
        closes = time.max if closes_text.strip() == END_OF_DAY else time.fromisoformat(closes_text.strip())
    except ValueError:
        raise ValueError(f"{text!r}: expected HH:MM-HH:MM") from None
    if opens >= closes:
        raise ValueError(f"{text!r}: opens at or after it closes")
    return opens, closes


def check_intervals(day: str, intervals: list[tuple[time, time]]) -> None:
    """Refuse overlapping intervals within a day."""
    ordered = sorted(intervals)
    for (_, closes), (next_opens, _) in pairwise(ordered):
        if next_opens < closes:
            raise ValueError(f"{day}: intervals overlap")


def from_config(config: dict[str, object] | None) -> OpeningHours:
    """Opening hours from their stored form (the dealer's ``hours`` in the rules file); None: always open.

    ``{"timezone": "America/Sao_Paulo", "weekly": {"mon": ["08:00-18:00"]}, "holidays": "BR-SP",
    "holiday_calendar": {"region": "BR-SP", "years": [2025, 2031], "dates": [...]}, "closed": [...]}``;
    without a ``holiday_calendar`` for that region (rules stored by an earlier version) the package
    answers for every day. Raises ValueError naming what is wrong.
    """
    if not config:
        return OpeningHours()
    zone = str(config.get("timezone") or "America/Sao_Paulo")
    try:
        ZoneInfo(zone)
    except (KeyError, ValueError):
        raise ValueError(f"unknown time zone {zone!r}") from None
    weekly: dict[str, tuple[tuple[time, time], ...]] = {}
    raw_weekly = config.get("weekly") or {}
    if not isinstance(raw_weekly, dict):
        raise ValueError("weekly: expected a mapping of weekday to intervals")
    for day, texts in raw_weekly.items():
        if day not in WEEKDAYS:
            raise ValueError(f"weekly: unknown weekday {day!r} (use {', '.join(WEEKDAYS)})")
        intervals = [parse_interval(str(text)) for text in (texts or [])]
        check_intervals(day, intervals)
        weekly[day] = tuple(sorted(intervals))
    if raw_weekly and not any(weekly.values()):
        raise ValueError("weekly: no open hours on any day (leave hours out for a dealer always open)")
    country, subdivision, holiday_dates, holiday_years = _holidays_of(config)
    closed_days = config.get("closed") or []
    if not isinstance(closed_days, list):
        raise ValueError("closed: expected a list of dates")

    closed = frozenset(date.fromisoformat(str(day)) for day in closed_days)
    return OpeningHours(zone, weekly, country, subdivision, closed, holiday_dates, holiday_years)


def _holidays_of(
    config: dict[str, object],
) -> tuple[str | None, str | None, frozenset[date], tuple[int, int] | None]:
    """The holiday region, and its holidays resolved when the rules were stored with the years they
    cover (none stored: the package answers every day)."""
    region, calendar = config.get("holidays"), config.get("holiday_calendar")
    if not region or not isinstance(calendar, dict) or calendar.get("region") != region:
        # None stored, or stored for another region (a hand-edited row): the package answers.
        return (*_holiday_region(region), frozenset(), None)
    # The region was checked against the package when its calendar was stored.
    country, _, subdivision = str(region).partition("-")
    try:
        first, last = calendar["years"]
        dates = frozenset(date.fromisoformat(day) for day in calendar["dates"])
        return country, subdivision or None, dates, (int(first), int(last))
    except (KeyError, TypeError, ValueError):
        raise ValueError("holiday_calendar: expected {region, years: [first, last], dates: [...]}") from None


def _holiday_region(value: object) -> tuple[str | None, str | None]:
    """``"BR"`` or ``"BR-SP"`` as (country, subdivision), checked against the holidays package."""
    if not value:
        return None, None
    import holidays

    country, _, subdivision = str(value).partition("-")
    supported = holidays.list_supported_countries()
    if country not in supported:
        raise ValueError(f"holidays: unknown country {country!r}")
    if subdivision and subdivision not in supported[country]:
        raise ValueError(f"holidays: {country} has no subdivision {subdivision!r}")
    return country, subdivision or None
