"""Activities of VTEX orders: read orders from the OMS and land them, and their state changes, in bronze."""

from __future__ import annotations

from dataclasses import dataclass

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import external_call
from clients.vtex import VtexClient
from contracts.dbt_build import BuildRequester
from core.metrics import ORDER_CHANGE_LATENCY
from core.timeutil import seconds_since, utcnow
from core.vtex import OrderEvent, change_key
from warehouse.landing import InvalidRecord, Warehouse
from warehouse.tables import VTEX_ORDER_EVENTS, VTEX_ORDERS
from warehouse.vtex_orders import order_event, order_version

ORDER_NOT_FOUND = "OrderNotFound"
WAREHOUSE_REFUSED = "WarehouseRefused"  # BigQuery refused the order's version for good


@dataclass
class LandEventsInput:
    events: list[OrderEvent]


@dataclass
class LandOrderInput:
    order_id: str


@dataclass
class LandOrderResult:
    """What was landed: the order's state and change time as the OMS served them."""

    status: str | None
    last_change: str | None  # change_key of lastChange
    event_key: str
    quarantined: str | None = None  # the reason, when the order failed validation


class VtexOrderActivities:
    """Holds the VTEX client and the warehouse, built once per worker."""

    def __init__(self, vtex: VtexClient, warehouse: Warehouse, builds: BuildRequester) -> None:
        self._vtex = vtex
        self._warehouse = warehouse
        self._builds = builds

    @activity.defn
    async def land_order_events(self, params: LandEventsInput) -> None:
        """Land the state changes in bronze (keyed: a retry adds no row downstream)."""
        records = [order_event(event) for event in params.events]
        with external_call():
            await self._warehouse.land(VTEX_ORDER_EVENTS, records)
        received = sorted(event.received_at for event in params.events if event.received_at)
        landed = utcnow()
        for moment in received:
            ORDER_CHANGE_LATENCY.labels("bronze").observe(seconds_since(moment, landed))
        if received:
            # Gold shows these changes after the next build: it measures hook-to-gold from the oldest.
            await self._builds.request_soon("vtex orders", oldest_received_at=received[0])

    @activity.defn
    async def land_order_version(self, params: LandOrderInput) -> LandOrderResult:
        """Fetch the order from the OMS and land it in ``bronze.vtex_orders``, or in quarantine if invalid.

        Runs on the rate-limited VTEX task queue: it makes exactly one VTEX request per attempt.
        """
        with external_call():
            document = await self._vtex.get_order(params.order_id)
        if document is None:
            raise ApplicationError(
                f"the OMS has no order {params.order_id}", type=ORDER_NOT_FOUND, non_retryable=True
            )
        # A refusal for good from here on is BigQuery's, not the OMS's: the run parks it as such.
        with external_call(permanent_type=WAREHOUSE_REFUSED):
            try:
                record = order_version(document)
            except InvalidRecord as invalid:
                await self._warehouse.quarantine([invalid.quarantine])
                status = document.get("status")
                return LandOrderResult(
                    status=status if isinstance(status, str) else None,
                    last_change=None,
                    event_key=invalid.quarantine.event_key,
                    quarantined=str(invalid),
                )
            await self._warehouse.land(VTEX_ORDERS, [record])
        await self._builds.request_soon("vtex orders")  # silver and gold follow within 2 minutes
        return LandOrderResult(
            status=str(document["status"]),
            last_change=change_key(str(document["lastChange"])),
            event_key=record.event_key,
        )
