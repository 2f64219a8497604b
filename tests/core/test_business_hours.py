"""Opening hours: the SLA clock runs only while a dealer is open."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from core.business_hours import from_config

BRT = ZoneInfo("America/Sao_Paulo")
WEEKDAYS = {day: ["08:00-18:00"] for day in ("mon", "tue", "wed", "thu", "fri")}


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=BRT)


def test_an_sla_that_crosses_friday_closing_resumes_monday_at_opening() -> None:
    hours = from_config({"timezone": "America/Sao_Paulo", "weekly": WEEKDAYS})
    friday = at("2026-11-27T17:50")  # a Friday
    assert hours.add_open_time(friday, timedelta(minutes=30)) == at("2026-11-30T08:20")
    assert hours.add_open_time(friday, timedelta(minutes=10)) == at("2026-11-27T18:00")


def test_a_lead_at_night_starts_its_clock_at_opening() -> None:
    hours = from_config({"weekly": WEEKDAYS})
    assert hours.add_open_time(at("2026-12-01T22:15"), timedelta(minutes=30)) == at("2026-12-02T08:30")
    assert not hours.is_open(at("2026-12-01T22:15"))
    assert hours.is_open(at("2026-12-02T08:00"))
    assert not hours.is_open(at("2026-12-02T18:00"))  # closing time is closed


def test_national_holidays_and_the_dealers_own_closed_days_close_the_day() -> None:
    hours = from_config({"weekly": WEEKDAYS, "holidays": "BR", "closed": ["2026-12-24"]})
    # Friday 2026-12-25 is Christmas: from Wednesday 23rd 17:50, Thursday 24th is the dealer's own
    # closed day, then the weekend: the remaining 20 minutes run on Monday 28th.
    assert hours.add_open_time(at("2026-12-23T17:50"), timedelta(minutes=30)) == at("2026-12-28T08:20")
    assert not hours.is_open(at("2026-11-20T10:00"))  # Consciência Negra, a national holiday since 2024
    state = from_config({"weekly": WEEKDAYS, "holidays": "BR-SP"})
    assert not state.is_open(at("2026-07-09T10:00"))  # Revolução Constitucionalista, São Paulo only
    assert hours.is_open(at("2026-07-09T10:00"))


def test_split_days_and_a_dealer_without_hours() -> None:
    hours = from_config({"weekly": {"sat": ["08:00-12:00", "13:00-17:00"]}})
    saturday = at("2026-12-05T11:50")
    assert hours.add_open_time(saturday, timedelta(minutes=30)) == at("2026-12-05T13:20")
    always = from_config(None)
    assert always.add_open_time(saturday, timedelta(minutes=30)) == saturday + timedelta(minutes=30)
    assert always.is_open(at("2026-12-06T03:00"))


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"timezone": "America/Sao_Pablo", "weekly": WEEKDAYS}, "unknown time zone"),
        ({"weekly": {"mon": ["08:00-12:00", "11:00-18:00"]}}, "mon: intervals overlap"),
        ({"weekly": {"monday": ["08:00-12:00"]}}, "unknown weekday 'monday'"),
        ({"weekly": {"mon": ["18:00-08:00"]}}, "opens at or after it closes"),
        ({"weekly": {"mon": ["8h-18h"]}}, "expected HH:MM-HH:MM"),
        ({"weekly": WEEKDAYS, "holidays": "XX"}, "unknown country 'XX'"),
        ({"weekly": WEEKDAYS, "holidays": "BR-ZZ"}, "BR has no subdivision 'ZZ'"),
        ({"weekly": {"mon": ["08:00-25:00"]}}, "expected HH:MM-HH:MM"),
    ],
)
def test_bad_hours_are_refused_naming_what_is_wrong(config: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        from_config(config)


def test_a_calendar_that_never_opens_is_refused() -> None:
    with pytest.raises(ValueError, match="no open hours on any day"):
        from_config({"weekly": {"mon": []}})
    closed_all_year = from_config({"weekly": {"mon": ["08:00-09:00"]}, "closed": []})
    assert closed_all_year.add_open_time(at("2026-12-01T10:00"), timedelta(minutes=30)) == at(
        "2026-12-07T08:30"
    )


def test_open_time_is_elapsed_time_across_daylight_saving() -> None:
    """New York springs forward on 2026-03-08 at 02:00: 3 open hours from 00:30 end at 04:30 local."""
    ny = ZoneInfo("America/New_York")
    hours = from_config({"timezone": "America/New_York", "weekly": {"sun": ["00:00-23:00"]}})
    start = datetime(2026, 3, 8, 0, 30, tzinfo=ny)
    assert hours.add_open_time(start, timedelta(hours=3)) - start.astimezone(UTC) == timedelta(hours=3)
    assert hours.add_open_time(start, timedelta(hours=3)).astimezone(ny).hour == 4


def test_a_lead_in_the_repeated_hour_of_an_autumn_change_counts_only_time_after_it_arrived() -> None:
    """New York falls back on 2026-11-01 at 02:00, so 01:00-02:00 happens twice. A lead arriving at 01:10
    the second time is 40 minutes after 01:30 the first time: the dealer's opening at 01:30 has passed,
    and its 30 minutes count from the lead's arrival."""
    ny = ZoneInfo("America/New_York")
    hours = from_config({"timezone": "America/New_York", "weekly": {"sun": ["01:30-18:00"]}})
    arrived = datetime(2026, 11, 1, 1, 10, fold=1, tzinfo=ny)  # 06:10 UTC (EST)
    assert arrived.astimezone(UTC) == datetime(2026, 11, 1, 6, 10, tzinfo=UTC)
    assert hours.add_open_time(arrived, timedelta(minutes=30)) == datetime(2026, 11, 1, 6, 40, tzinfo=UTC)
    assert hours.is_open(arrived)  # open since 01:30 the first time, as the SLA clock says


def test_a_closing_in_the_repeated_hour_is_the_first_time_the_clock_shows_it() -> None:
    ny = ZoneInfo("America/New_York")
    hours = from_config(
        {"timezone": "America/New_York", "weekly": {"sun": ["00:00-01:30"], "mon": ["09:00-18:00"]}}
    )
    second_time = datetime(2026, 11, 1, 1, 10, fold=1, tzinfo=ny)  # after 01:30 the first time: closed
    assert not hours.is_open(second_time)
    assert hours.is_open(datetime(2026, 11, 1, 1, 10, tzinfo=ny))  # 01:10 the first time
    monday_0910 = datetime(2026, 11, 2, 9, 10, tzinfo=ny)
    assert hours.add_open_time(second_time, timedelta(minutes=10)) == monday_0910


def test_an_opening_in_the_hour_a_spring_change_skips_is_the_change() -> None:
    """New York's clocks jump from 02:00 to 03:00 on 2026-03-08: a dealer opening at 02:30 opens at the
    jump (03:00, 07:00 UTC), when its clock has passed 02:30."""
    ny = ZoneInfo("America/New_York")
    hours = from_config({"timezone": "America/New_York", "weekly": {"sun": ["02:30-18:00"]}})
    jump = datetime(2026, 3, 8, 7, 0, tzinfo=UTC)
    assert not hours.is_open(jump - timedelta(seconds=1)) and hours.is_open(jump)
    assert jump.astimezone(ny).hour == 3
    before_opening = datetime(2026, 3, 8, 1, 0, tzinfo=ny)
    assert hours.add_open_time(before_opening, timedelta(minutes=30)) == jump + timedelta(minutes=30)


def test_a_dealer_always_open_counts_in_utc() -> None:
    start = at("2026-12-01T22:15")
    assert from_config(None).add_open_time(start, timedelta(minutes=30)).utcoffset() == timedelta(0)
    assert from_config(None).add_open_time(start, timedelta(minutes=30)) == start + timedelta(minutes=30)


def test_a_dealer_open_around_the_clock_closes_on_its_holidays() -> None:
    """Open day and night ("00:00-24:00" every day), closed on Christmas: an SLA running into Christmas
    Eve's midnight resumes the day after."""
    every_day = {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    hours = from_config({"weekly": every_day, "holidays": "BR"})
    assert hours.is_open(at("2026-12-24T23:59")) and not hours.is_open(at("2026-12-25T12:00"))
    resumed = hours.add_open_time(at("2026-12-24T23:50"), timedelta(minutes=30))
    assert abs(resumed - at("2026-12-26T00:20")) < timedelta(milliseconds=1)  # 24:00 is the day's last moment


def test_around_the_clock_holds_through_a_change_of_the_clocks_at_midnight() -> None:
    """Santiago's clocks go back at midnight (2026-04-05 00:00 -03 is 2026-04-04 23:00 -04): a dealer open
    "00:00-24:00" stays open through the repeated hour; 24:00 is the next day's first moment."""
    every_day = {day: ["00:00-24:00"] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    hours = from_config({"timezone": "America/Santiago", "weekly": every_day})
    santiago = ZoneInfo("America/Santiago")
    repeated = datetime(2026, 4, 4, 23, 30, tzinfo=santiago).replace(fold=1)  # -04, after the change
    assert hours.is_open(repeated)
    start = datetime(2026, 4, 4, 22, 0, tzinfo=santiago)
    elapsed = start.astimezone(UTC) + timedelta(hours=3)  # (aware arithmetic in a zone is wall time)
    assert hours.add_open_time(start, timedelta(hours=3)) == elapsed
