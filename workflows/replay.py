"""Replaying a recorded history against the current workflow code, the way the worker runs it.

A workflow change is non-deterministic when a run recorded before it takes another path through the new
code (an activity added before an old one, a timer removed): after a deploy the worker would fail that
run's workflow tasks again and again. Replaying histories finds this before the change ships:
``hub replay`` for one workflow, ``tests/workflows/test_replay.py`` for the saved histories in CI.
"""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from core.settings import Settings
from core.temporal import data_converter
from workflows.dbt_build import DbtBuildWorkflow
from workflows.event_redrive import EventRedriveWorkflow
from workflows.lead_distribution import LeadDistributionWorkflow
from workflows.lead_warehouse_sync import LeadWarehouseSyncWorkflow
from workflows.opportunity_sync import OpportunitySyncWorkflow
from workflows.sandbox import WORKFLOW_RUNNER
from workflows.vtex_catalog_sync import CatalogSyncWorkflow
from workflows.vtex_customer_sync import CustomerSyncWorkflow
from workflows.vtex_feed_reconcile import VtexFeedReconcileWorkflow
from workflows.vtex_hook_config import VtexHookConfigWorkflow
from workflows.vtex_order import VtexOrderWorkflow
from workflows.vtex_order_backfill import OrderBackfillWorkflow
from workflows.zoho_writeback import ZohoWritebackWorkflow

# Every workflow some worker role registers (tests/architecture/test_layers.py checks the roles cover them).
WORKFLOWS: tuple[type, ...] = (
    LeadDistributionWorkflow,
    OpportunitySyncWorkflow,
    VtexOrderWorkflow,
    VtexFeedReconcileWorkflow,
    VtexHookConfigWorkflow,
    OrderBackfillWorkflow,
    CatalogSyncWorkflow,
    CustomerSyncWorkflow,
    LeadWarehouseSyncWorkflow,
    DbtBuildWorkflow,
    ZohoWritebackWorkflow,
    EventRedriveWorkflow,
)


def replayer(settings: Settings, workflows: Sequence[type] = WORKFLOWS) -> Replayer:
    """Every workflow the workers register, in their sandbox, with the project's data converter."""
    return Replayer(
        workflows=workflows, workflow_runner=WORKFLOW_RUNNER, data_converter=data_converter(settings)
    )


async def replay(
    history: WorkflowHistory, settings: Settings, workflows: Sequence[type] = WORKFLOWS
) -> Exception | None:
    """Why the history does not replay with the current code, or None when it does.

    A ``NondeterminismError`` when the code takes another path than the history; an error naming
    ``PayloadKeyError`` when the key ring cannot decrypt the history.
    """
    try:
        result = await replayer(settings, workflows).replay_workflow(history, raise_on_replay_failure=False)
    except Exception as error:  # payloads are decoded before any workflow code runs, and outside it
        return error
    return result.replay_failure
