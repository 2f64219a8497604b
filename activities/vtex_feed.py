"""Activities of the VTEX safety nets: the Feed v3 reconciler and the hook configuration re-assertion."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError
from temporalio import activity
from temporalio.client import Client

from activities.errors import external_call
from clients.vtex import FEED_MAX_LOT, FeedItem, VtexClient
from contracts.orders import signal_order_event
from core.settings import Settings
from core.vtex import OrderEvent
from warehouse.landing import QuarantineRecord, Warehouse
from warehouse.tables import VTEX_ORDER_EVENTS

log = logging.getLogger("activities.vtex_feed")
INVALID_FEED_ITEM = "invalid_feed_item"  # the quarantine code of a feed item that is not an order change


@dataclass
class ReadFeedInput:
    max_lot: int = FEED_MAX_LOT


@dataclass
class ReadFeedResult:
    items: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class DeliverFeedInput:
    items: list[dict[str, Any]]


@dataclass
class DeliverFeedResult:
    handles: list[str]  # every item handled (delivered or quarantined): safe to commit
    delivered: int = 0
    quarantined: int = 0


@dataclass
class CommitFeedInput:
    handles: list[str]


@dataclass
class HookConfig:
    """The hook configuration saved in VTEX: where it sends the Orders hooks (asked for, and saved)."""

    url: str


class VtexFeedActivities:
    """Holds the VTEX client, the warehouse and the settings; signals order workflows through Temporal."""

    def __init__(self, vtex: VtexClient, warehouse: Warehouse, settings: Settings, temporal: Client) -> None:
        self._vtex = vtex
        self._warehouse = warehouse
        self._settings = settings
        self._temporal = temporal  # feed items go to their order's workflow

    @activity.defn
    async def read_order_feed(self, params: ReadFeedInput) -> ReadFeedResult:
        """The next lot of Feed v3 items (one VTEX request)."""
        with external_call():
            return ReadFeedResult(items=await self._vtex.read_feed(params.max_lot))

    @activity.defn
    async def deliver_feed_items(self, params: DeliverFeedInput) -> DeliverFeedResult:
        """Hand each item to its order's workflow (signal-with-start); malformed items go to quarantine.

        Items the hook delivered too are recognised by their event key in the order's workflow.
        """
        result = DeliverFeedResult(handles=[])
        invalid: list[QuarantineRecord] = []
        for item in params.items:
            try:
                event = FeedItem.model_validate(item).event()
            except ValidationError as error:
                invalid.append(_quarantined(item, str(error.errors()[0]["msg"])))
                result.quarantined += 1
            else:
                await self._signal(event)
                result.delivered += 1
            if isinstance(item.get("handle"), str):
                result.handles.append(item["handle"])
        with external_call():
            await self._warehouse.quarantine(invalid)
        return result

    @activity.defn
    async def commit_order_feed(self, params: CommitFeedInput) -> None:
        """Remove handled items from the feed (one VTEX request)."""
        if not params.handles:
            return
        with external_call():
            await self._vtex.commit_feed(params.handles)

    @activity.defn
    async def save_hook_config(self, params: HookConfig) -> HookConfig:
        """Save the Orders hook again, so VTEX never deletes it for idleness (one VTEX request)."""
        header = self._settings.vtex_hook_secret_header
        secret = self._settings.vtex_hook_secret.get_secret_value()
        with external_call():
            await self._vtex.save_hook_config(params.url, {header: secret})
        return HookConfig(url=params.url)

    async def _signal(self, event: OrderEvent) -> None:
        await signal_order_event(self._temporal, self._settings, event)


def _quarantined(item: dict[str, Any], reason: str) -> QuarantineRecord:
    order_id = item.get("orderId") if isinstance(item.get("orderId"), str) else None
    key = f"feed:{item.get('eventId') or item.get('handle') or order_id}"
    return QuarantineRecord(
        "vtex", VTEX_ORDER_EVENTS, key, f"feed item: {reason}", item, order_id, INVALID_FEED_ITEM
    )
