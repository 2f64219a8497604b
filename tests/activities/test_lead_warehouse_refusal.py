"""A lead warehouse sync page that BigQuery refuses for good fails by name, as the other syncs' pages
do: retried as if the warehouse were away, the run stayed "running" and skipped every later run."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.errors import PERMANENT_FAILURE
from activities.lead_warehouse import LeadChangesPageInput, LeadWarehouseActivities
from clients.errors import PermanentError
from core.constants import LeadStatus
from core.timeutil import utcnow
from db.lead_status import record_status


class RefusingWarehouse:
    """BigQuery answering every landing with a refusal for good (access denied)."""

    async def landed_keys(self, *args: Any, **kwargs: Any) -> set[str]:
        return set()

    async def land_at(self, *args: Any, **kwargs: Any) -> Any:
        raise PermanentError("bigquery", "403 Access Denied: Table bronze.lead_status_changes", 403)


async def test_a_page_bigquery_refuses_for_good_fails_by_name(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    await record_status(
        sessions, lead_id="L1", status=LeadStatus.RECEIVED, workflow_id="lead-L1", at=utcnow()
    )
    steps = LeadWarehouseActivities(RefusingWarehouse(), sessions)  # type: ignore[arg-type]
    page = LeadChangesPageInput("status", None, (utcnow() + timedelta(seconds=1)).isoformat(), None, None)
    with pytest.raises(ApplicationError) as refused:
        await ActivityEnvironment().run(steps.land_lead_changes, page)
    assert refused.value.type == PERMANENT_FAILURE and refused.value.non_retryable
    assert "Access Denied" in str(refused.value)
