"""Support's redrive of a lead's fields Zoho refused for good, once the cause is fixed.

The lead's own run does not wait on Zoho (its dealer's SLA clock runs meanwhile): it parks what Zoho
refused in the portal database (``db.zoho_writebacks``) and goes on. ``hub parked redrive`` starts one
of these runs per parked lead; the Web UI shows its attempts while Zoho is away.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from contracts.leads import ZOHO_WRITEBACK_WORKFLOW

with workflow.unsafe.imports_passed_through():
    from activities.leads import LeadActivities


@workflow.defn(name=ZOHO_WRITEBACK_WORKFLOW)
class ZohoWritebackWorkflow:
    @workflow.run
    async def run(self, lead_id: str) -> str:
        """``written``, ``refused again: ...`` (still parked), ``nothing parked`` or ``WRITEBACK_DROPPED``."""
        return await workflow.execute_activity_method(
            LeadActivities.redrive_zoho_writeback,
            lead_id,
            start_to_close_timeout=timedelta(minutes=1),
            schedule_to_close_timeout=timedelta(hours=1),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
        )
