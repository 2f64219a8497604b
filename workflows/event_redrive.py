"""Support's redrive of a lead event a subscriber refused for good, once the cause is fixed.

The lead's run does not wait on its subscribers (its dealer's SLA clock runs meanwhile): it parks an
event a subscriber refused in the portal database (``db.refused_events``) and goes on. ``hub parked
redrive`` starts one of these runs per parked event; the Web UI shows its attempts while a subscriber
is away.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from contracts.leads import EVENT_REDRIVE_WORKFLOW

with workflow.unsafe.imports_passed_through():
    from activities.leads import LeadActivities


@workflow.defn(name=EVENT_REDRIVE_WORKFLOW)
class EventRedriveWorkflow:
    @workflow.run
    async def run(self, event_id: str) -> str:
        """``delivered``, ``refused again: ...`` (still parked) or ``nothing parked``."""
        return await workflow.execute_activity_method(
            LeadActivities.redrive_event,
            event_id,
            start_to_close_timeout=timedelta(minutes=1),
            schedule_to_close_timeout=timedelta(hours=1),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
        )
