"""The converted lead's lookup fits in what the deal's read left of its step, so a slow Zoho cannot
make every attempt of the deal's first read time out before it stores the deal without the link."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.opportunities import FetchDealInput, OpportunityActivities

DEAL = "5725767000000700001"


class Zoho:
    """Zoho's deal, and a count of the lookups of its converted lead."""

    def __init__(self) -> None:
        self.lookups = 0

    async def get_deal(self, deal_id: str) -> dict[str, Any]:
        times = {"Modified_Time": "2026-12-01T10:00:00-03:00", "Created_Time": "2026-12-01T09:59:00-03:00"}
        return {"id": deal_id, "Stage": "Qualification", **times}

    async def converted_lead_of(self, deal_id: str, created: datetime) -> str | None:
        self.lookups += 1
        return "5725767000000412001"


def attempt(number: int, step_seconds: float) -> ActivityEnvironment:
    env = ActivityEnvironment()
    env.info = dataclasses.replace(
        env.info, attempt=number, start_to_close_timeout=timedelta(seconds=step_seconds)
    )
    return env


async def test_no_lookup_starts_that_the_step_has_no_time_left_for(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    zoho = Zoho()
    steps = OpportunityActivities(sessions, zoho)  # type: ignore[arg-type]
    with pytest.raises(ApplicationError, match="no answer to the lookup"):  # its next attempt looks again
        await attempt(1, step_seconds=2).run(steps.fetch_deal, FetchDealInput(DEAL))
    deal = await attempt(3, step_seconds=2).run(steps.fetch_deal, FetchDealInput(DEAL))
    assert (deal.lead_id, deal.lead_lookup_missed, zoho.lookups) == (None, True, 0)  # stored without it
    deal = await attempt(1, step_seconds=30).run(steps.fetch_deal, FetchDealInput(DEAL))
    assert (deal.lead_id, deal.lead_lookup_missed, zoho.lookups) == ("5725767000000412001", False, 1)
