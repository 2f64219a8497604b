"""Support moves a lead whose dealer accepted it while its run reads the dealer's CRM for what comes
next (a dealer that only answers status reads).

A module of its own: the time-skipping server is one per module, and this test's clock stays apart.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio.client import WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

from core.constants import lead_workflow_id
from tests.cli.conftest import HubCli
from tests.cli.test_one_dealer_per_lead import creates
from tests.support import skip_time
from tests.workflows.test_dealer_sla import at_dealer, dealer_reports, sla_hub


async def test_reassign_ends_the_run_that_only_reads_an_accepted_lead(
    skipping_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, hub_cli: HubCli
) -> None:
    """A dealer that only answers status reads accepted the lead; its run reads on for what comes next.
    Support can still move the lead: that run is ended, with the reason, and the lead moves."""
    async with sla_hub(skipping_env, sqlite_url, task_queue) as hub:
        lead_id = await hub.create_lead(State="SC", City="Joinville")
        await hub.post_webhook(lead_id)
        await at_dealer(hub, lead_id, "poll-sc")
        await dealer_reports(hub, "poll-sc", lead_id, "accepted", callback=False)
        await skip_time(skipping_env, timedelta(minutes=2))
        await at_dealer(hub, lead_id, "poll-sc", status="accepted")
        reading = await hub.handle(lead_id).describe()
        assert reading.status == WorkflowExecutionStatus.RUNNING

        moved = await hub_cli(
            hub.settings, "leads", "reassign", lead_id, "sla-a", "--reason", "dealer closed", "--by", "ana"
        )
        assert moved.code == 0, moved.err
        await at_dealer(hub, lead_id, "sla-a")
        ended = await hub.client.get_workflow_handle(
            lead_workflow_id(lead_id), run_id=reading.run_id
        ).describe()
        assert ended.status == WorkflowExecutionStatus.TERMINATED
        assert await creates(hub, "sla-a") == {lead_id: 1}
