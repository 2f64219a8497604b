"""The opportunity sync workflow's contract: one long-lived run per Zoho deal, signalled per change."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from core.constants import DEAL_ID, opportunity_workflow_id

if TYPE_CHECKING:
    from core.settings import Settings

OPPORTUNITY_SYNC_WORKFLOW = "OpportunitySyncWorkflow"
DEAL_CHANGED = "deal_changed"


@dataclass
class DealChange:
    """One webhook: the merge fields Zoho sent (at least the deal id)."""

    deal_id: str
    stage: str | None = None
    modified_time: datetime | None = None  # aware
    modified_by: str | None = None
    amount: Decimal | None = None
    received_at: datetime | None = None


@dataclass
class OpportunitySyncInput:
    deal_id: str
    idle_close_seconds: int = 3600
    batch_window_seconds: float = 2.0
    changes_per_run: int = 500
    # Carried over continue-as-new:
    last_applied: datetime | None = None
    last_stage: str | None = None  # the stage at last_applied (two moves within a second share their time)
    pending: list[DealChange] = field(default_factory=list)

    @classmethod
    def for_deal(cls, settings: Settings, deal_id: str) -> OpportunitySyncInput:
        return cls(
            deal_id=deal_id,
            idle_close_seconds=settings.opportunity_idle_close_seconds,
            batch_window_seconds=settings.opportunity_batch_window_seconds,
            changes_per_run=settings.opportunity_changes_per_run,
        )


@dataclass
class OpportunitySyncResult:
    deal_id: str
    applied: int
    dropped: int
    last_applied: datetime | None


async def signal_deal_change(
    client: Client, settings: Settings, change: DealChange, rpc_timeout: timedelta | None = None
) -> str:
    """Deliver ``change`` to its deal's workflow, starting the workflow if it is not running.

    Returns the workflow id once the signal is in the workflow's history: the change is durable.
    """
    workflow_id = opportunity_workflow_id(change.deal_id)
    await client.start_workflow(
        OPPORTUNITY_SYNC_WORKFLOW,
        OpportunitySyncInput.for_deal(settings, change.deal_id),
        id=workflow_id,
        task_queue=settings.opportunities_task_queue,
        start_signal=DEAL_CHANGED,
        start_signal_args=[change],
        search_attributes=TypedSearchAttributes([SearchAttributePair(DEAL_ID, change.deal_id)]),
        rpc_timeout=rpc_timeout,
    )
    return workflow_id
