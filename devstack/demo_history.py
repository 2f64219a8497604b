"""Demo: the last months of the simulated shop's order history backfilled, so that gold has customers
with several orders, days of sales and best-selling products to show."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import WorkflowAlreadyStartedError

from cli.progress import follow
from core.constants import PROGRESS_QUERY
from core.settings import Settings
from simulators.config import SimulatorConfig
from workflows.vtex_order_backfill import (
    BackfillProgress,
    OrderBackfillInput,
    OrderBackfillWorkflow,
    backfill_workflow_id,
    start_order_backfill,
)

HISTORY_DAYS = 183  # about 2,900 of the simulator's 10,000 orders: enough for repeat buyers
# VTEX requests per second (about one per order): the account's whole budget, as nothing else runs.
BACKFILL_RATE = 100.0
PROGRESS_EVERY_SECONDS = 10.0

Backfill = WorkflowHandle[OrderBackfillWorkflow, BackfillProgress]


async def start_history(client: Client, settings: Settings) -> Backfill:
    """Start backfilling the history's last months (or follow that backfill if it is running)."""
    end = datetime.fromisoformat(SimulatorConfig().vtex_history_end)
    since, until = end - timedelta(days=HISTORY_DAYS), end - timedelta(seconds=1)
    params = OrderBackfillInput.for_range(settings, since, until, BACKFILL_RATE)
    try:
        handle = await start_order_backfill(client, settings, params)
    except WorkflowAlreadyStartedError:
        handle = client.get_workflow_handle_for(
            OrderBackfillWorkflow.run, backfill_workflow_id(params.start, params.end)
        )
    print(
        f"Backfilling the shop's orders from {since:%Y-%m-%d} to {until:%Y-%m-%d} in the background"
        f" ({handle.id}; hub backfill orders does the same for any range)",
        flush=True,
    )
    return handle


async def finish_history(handle: Backfill) -> bool:
    """Wait for the backfill, showing its progress; True once it is done."""
    print(f"\nWaiting for {handle.id}...", flush=True)

    def show(progress: BackfillProgress) -> None:
        if not progress.done:
            landed, rate = progress.orders_landed, progress.orders_per_second
            print(f"  {landed} orders landed ({rate:.0f}/s)", flush=True)

    final = await follow(handle, PROGRESS_QUERY, BackfillProgress, show, every=PROGRESS_EVERY_SECONDS)
    print(
        f"Order history: {final.orders_landed} orders landed, {final.already_landed} already there,"
        f" {final.quarantined} quarantined; {final.vtex_requests} VTEX requests in {final.seconds:.0f} s"
        f" ({final.orders_per_second:.0f} orders/s)",
        flush=True,
    )
    return final.done
