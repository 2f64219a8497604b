"""A new lead's first steps tried in the worker (patch first-steps-tried-locally), on the time-skipping
test server with stand-in activities registered under the real names: a step that fails in its local
try runs as an activity, and the lead goes on as it would have."""

from __future__ import annotations

import uuid

from temporalio import activity
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.leads import ClaimLeadInput, ClaimLeadResult, RecordStatusInput
from contracts.leads import LeadDistributionInput
from tests.stored import activity_types, local_activity_types
from tests.workflows.test_assign_deadline import StandIns
from workflows.lead_distribution import LeadDistributionWorkflow


class FailingLocally(StandIns):
    """Stand-ins whose "received" record and claim fail when run as local activities."""

    def __init__(self) -> None:
        super().__init__()
        self.claims: list[bool] = []  # is_local, per call

    @activity.defn(name="record_lead_status")
    async def record_lead_status(self, params: RecordStatusInput) -> None:
        if activity.info().is_local:
            raise ApplicationError("database is locked")
        await super().record_lead_status(params)

    @activity.defn(name="claim_lead")
    async def claim_lead(self, params: ClaimLeadInput) -> ClaimLeadResult:
        self.claims.append(activity.info().is_local)
        if activity.info().is_local:
            raise ApplicationError("database is locked")
        return ClaimLeadResult(dealer_id="dealer-a", idempotency_key="lead-1-dealer-a")


async def test_a_record_and_a_claim_that_fail_in_the_worker_run_as_activities(
    skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    stand_ins = FailingLocally()
    activities = [
        stand_ins.record_lead_status,
        stand_ins.fetch_lead,
        stand_ins.claim_lead,
        stand_ins.deliver_lead,
        stand_ins.update_zoho_lead,
        stand_ins.publish_event,
    ]
    workflows = [LeadDistributionWorkflow]
    async with Worker(skipping_env.client, task_queue=task_queue, workflows=workflows, activities=activities):
        handle = await skipping_env.client.start_workflow(
            LeadDistributionWorkflow.run,
            LeadDistributionInput(lead_id="5725767000000777002"),
            id=f"lead-{uuid.uuid4().hex}",
            task_queue=task_queue,
        )
        result = await handle.result()
        history = await handle.fetch_history()
    assert (result.status, result.dealer_id) == ("delivered", "dealer-a")
    assert activity_types(history.events) == ["record_lead_status", "claim_lead", "deliver_lead"]
    assert local_activity_types(history.events)[:3] == ["record_lead_status", "fetch_lead", "claim_lead"]
    assert stand_ins.statuses == ["received"]  # the activity's; the local try recorded nothing
    assert stand_ins.claims == [True, False]  # tried once in the worker, then as the activity
    assert stand_ins.delivered_to == ["dealer-a"]
