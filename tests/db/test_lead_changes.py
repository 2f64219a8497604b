"""Reading the lead flow's changes for the warehouse: pages that never skip or repeat a change, in the
order the portal recorded them (a dealer's report carrying an old time is still found)."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from core.constants import LeadStatus
from core.timeutil import utcnow
from db import lead_changes
from db.lead_status import record_status
from db.models import LeadStatusChange

STEPS = (LeadStatus.RECEIVED, LeadStatus.ROUTED, LeadStatus.DELIVERED)


async def read_all(
    sessions: async_sessionmaker[AsyncSession], since: datetime | None, until: datetime, limit: int
) -> list[lead_changes.Change]:
    """Every status change of the window, a page of ``limit`` at a time, as the sync reads them."""
    found: list[lead_changes.Change] = []
    after = None
    while True:
        page = await lead_changes.changes(sessions, "status", since, until, after, limit)
        found += page
        if len(page) < limit:
            return found
        after = page[-1].cursor


async def test_pages_hold_each_change_once_even_when_they_share_a_time(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    for number in range(5):
        lead_id = f"57257670000004120{number:02d}"
        for step, status in enumerate(STEPS):
            await record_status(
                sessions, lead_id=lead_id, status=status, workflow_id=f"lead-{lead_id}", at=utcnow(),
                dealer_id="d1" if step else None,
            )  # fmt: skip
    # Ten of the fifteen changes recorded at one instant: only the key tells them apart.
    same = utcnow() - timedelta(seconds=1)
    async with sessions.begin() as session:
        await session.execute(
            update(LeadStatusChange).where(LeadStatusChange.status != "received").values(recorded_at=same)
        )
    until = utcnow()
    for limit in (2, 3, 7, 100):
        found = await read_all(sessions, None, until, limit)
        keys = [change.key for change in found]
        assert len(keys) == len(set(keys)) == 15, limit
        assert [(c.at, int(c.key)) for c in found] == sorted((c.at, int(c.key)) for c in found)
    assert {change.fields["status"] for change in found} == {"received", "routed", "delivered"}
    assert await read_all(sessions, until, until + timedelta(minutes=1), 2) == []


async def test_a_report_with_an_old_time_is_read_in_the_window_that_recorded_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    lead_id = "5725767000000412099"
    common = {"lead_id": lead_id, "workflow_id": f"lead-{lead_id}"}
    await record_status(sessions, status=LeadStatus.RECEIVED, at=utcnow(), **common)
    first_until = utcnow()
    assert len(await read_all(sessions, None, first_until, 10)) == 1
    # The dealer says it accepted three hours ago; the portal records it now.
    three_hours_ago = utcnow() - timedelta(hours=3)
    await record_status(sessions, status=LeadStatus.ACCEPTED, dealer_id="d1", at=three_hours_ago, **common)
    [accepted] = await read_all(sessions, first_until, utcnow(), 10)
    assert accepted.fields["status"] == "accepted"
    assert accepted.fields["changed_at"] == three_hours_ago  # its own time, in the warehouse
