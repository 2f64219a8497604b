"""The VTEX order workflow's contract: one run per order, signalled by hooks and the feed reconciler."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from core.constants import ORDER_ID, VTEX_API_TASK_QUEUE, vtex_order_workflow_id
from core.vtex import OrderEvent

if TYPE_CHECKING:
    from core.settings import Settings

VTEX_ORDER_WORKFLOW = "VtexOrderWorkflow"
ORDER_CHANGED = "order_changed"
STATUS_QUERY = "status"


@dataclass
class VtexOrderInput:
    order_id: str
    api_task_queue: str = VTEX_API_TASK_QUEUE
    idle_close_seconds: int = 7 * 24 * 3600
    batch_window_seconds: float = 0.0
    final_linger_seconds: float = 300.0
    events_per_run: int = 200
    # Carried over continue-as-new:
    state: str | None = None
    last_applied: str | None = None
    seen: list[str] = field(default_factory=list)
    pending: list[OrderEvent] = field(default_factory=list)

    @classmethod
    def for_order(cls, settings: Settings, order_id: str) -> VtexOrderInput:
        return cls(
            order_id=order_id,
            api_task_queue=settings.vtex_api_task_queue,
            idle_close_seconds=settings.vtex_order_idle_close_seconds,
            batch_window_seconds=settings.vtex_order_batch_window_seconds,
            final_linger_seconds=settings.vtex_order_final_linger_seconds,
            events_per_run=settings.vtex_order_events_per_run,
        )


@dataclass
class VtexOrderStatus:
    """What support sees through the ``status`` query, and what the run returns."""

    order_id: str
    state: str | None
    last_applied: str | None  # change time of the newest state landed (core.vtex.change_key)
    events_landed: int = 0
    versions_landed: int = 0
    ignored: int = 0
    quarantined: int = 0


async def signal_order_event(
    client: Client, settings: Settings, event: OrderEvent, rpc_timeout: timedelta | None = None
) -> str:
    """Deliver ``event`` to its order's workflow, starting the workflow if it is not running.

    Returns the workflow id once the signal is in the workflow's history: the change is durable. The
    hook endpoint and the Feed v3 reconciler both deliver through here.
    """
    workflow_id = vtex_order_workflow_id(event.order_id)
    await client.start_workflow(
        VTEX_ORDER_WORKFLOW,
        VtexOrderInput.for_order(settings, event.order_id),
        id=workflow_id,
        task_queue=settings.vtex_orders_task_queue,
        start_signal=ORDER_CHANGED,
        start_signal_args=[event],
        search_attributes=TypedSearchAttributes([SearchAttributePair(ORDER_ID, event.order_id)]),
        rpc_timeout=rpc_timeout,
    )
    return workflow_id
