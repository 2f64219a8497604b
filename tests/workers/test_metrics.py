"""The worker's metrics: what the activities count, what the visibility poll reads, one endpoint for all.

Flows run in process on the dev server, the emulator and the simulators; the counts are read from the
worker's registry before and after, so other tests in the same process do not matter.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from prometheus_client import CONTENT_TYPE_PLAIN_0_0_4

from core.metrics import REGISTRY
from tests.hub import Hub
from tests.support import eventually, free_port
from tests.workflows.test_vtex_order import LIFECYCLE, landed
from warehouse.tables import VTEX_ORDER_EVENTS, VTEX_ORDERS
from workers.metrics import VisibilityPoll, metrics_endpoint


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


class Counts:
    """Samples of the worker's registry, and how much each moved since."""

    def __init__(self, *samples: tuple[str, dict[str, str]]) -> None:
        self._before = {
            (name, tuple(sorted(labels.items()))): value(name, **labels) for name, labels in samples
        }

    def moved(self, name: str, **labels: str) -> float:
        return value(name, **labels) - self._before[_key(name, labels)]


def _key(name: str, labels: dict[str, str]) -> tuple[str, tuple[tuple[str, str], ...]]:
    return name, tuple(sorted(labels.items()))


async def test_a_lead_refused_once_counts_both_deliveries_and_its_latency(hub: Hub) -> None:
    counts = Counts(
        ("hub_dealer_deliveries_total", {"dealer": "rest-sp-a", "outcome": "rejected"}),
        ("hub_dealer_deliveries_total", {"dealer": "rest-sp-b", "outcome": "delivered"}),
        ("hub_lead_received_to_delivered_seconds_count", {"dealer": "rest-sp-b"}),
    )
    await hub.fault(target="rest-sp-a", reject=True)
    lead_id = await hub.create_lead(State="SP", City="Campinas")
    assert (await hub.post_webhook(lead_id)).status_code == 202
    await hub.wait_for_status(lead_id, "delivered")
    await hub.handle(lead_id).result()

    assert counts.moved("hub_dealer_deliveries_total", dealer="rest-sp-a", outcome="rejected") == 1
    assert counts.moved("hub_dealer_deliveries_total", dealer="rest-sp-b", outcome="delivered") == 1
    assert counts.moved("hub_lead_received_to_delivered_seconds_count", dealer="rest-sp-b") == 1


async def test_orders_count_rows_landed_quarantined_and_the_time_to_bronze(hub: Hub) -> None:
    counts = Counts(
        ("hub_bronze_rows_total", {"table": VTEX_ORDERS}),
        ("hub_bronze_rows_total", {"table": VTEX_ORDER_EVENTS}),
        ("hub_quarantined_rows_total", {"table": VTEX_ORDERS, "reason": "invalid_order"}),
        ("hub_order_change_latency_seconds_count", {"layer": "bronze"}),
    )
    order_id = await hub.create_order()
    await hub.move_order(order_id, *LIFECYCLE)
    await landed(hub, order_id, VTEX_ORDER_EVENTS, len(LIFECYCLE))
    invalid = await hub.create_order(value=-100)
    await hub.move_order(invalid, "payment-approved")

    async def quarantined() -> bool:
        return counts.moved("hub_quarantined_rows_total", table=VTEX_ORDERS, reason="invalid_order") == 1

    await eventually(quarantined)
    changes = len(LIFECYCLE) + 1
    assert counts.moved("hub_bronze_rows_total", table=VTEX_ORDER_EVENTS) == changes
    assert counts.moved("hub_order_change_latency_seconds_count", layer="bronze") == changes
    assert counts.moved("hub_bronze_rows_total", table=VTEX_ORDERS) >= 1  # versions read (hooks gather)


async def test_the_poll_reads_leads_waiting_and_runs_terminated(hub: Hub) -> None:
    poll = VisibilityPoll(
        hub.client, hub.settings, {"LeadDistributionWorkflow": hub.settings.leads_task_queue}
    )
    waiting = [await hub.create_lead(State="BA", City="Salvador") for _ in range(2)]
    for lead_id in waiting:
        assert (await hub.post_webhook(lead_id)).status_code == 202
        await hub.wait_for_awaiting(lead_id)
    await hub.handle(waiting[0]).terminate("support closed it")

    async def polled() -> bool:
        await poll.poll()
        return (
            value("hub_leads_in_progress", status="awaiting_assignment") == 1
            and value(
                "hub_workflow_runs_closed_last_hour",
                workflow_type="LeadDistributionWorkflow",
                status="terminated",
            )
            == 1
        )

    await eventually(polled, timeout=30, interval=0.5)
    # The lead's webhook sent again starts its next run (as support's reassign does): the terminated
    # run no longer counts as broken off, since nothing waits for its redrive.
    assert (await hub.post_webhook(waiting[0])).status_code == 202

    async def superseded() -> bool:
        await poll.poll()
        labels = {"workflow_type": "LeadDistributionWorkflow", "status": "terminated"}
        return value("hub_workflow_runs_closed_last_hour", **labels) == 0

    await eventually(superseded, timeout=30, interval=0.5)
    assert (
        value(
            "hub_workflow_runs_closed_last_hour", workflow_type="LeadDistributionWorkflow", status="timed_out"
        )
        == 0
    )
    assert value("hub_expected_interval_seconds", flow="vtex-catalog-sync") == (
        hub.settings.vtex_catalog_sync_interval_seconds
    )


def test_the_endpoint_serves_the_hub_metrics_then_the_sdk_ones() -> None:
    with sdk_stand_in(
        b"# TYPE temporal_workflow_completed counter\ntemporal_workflow_completed 3\n"
    ) as sdk_port:
        port = free_port()
        with metrics_endpoint("127.0.0.1", port, sdk_port):
            answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
            missing = httpx.get(f"http://127.0.0.1:{port}/other", timeout=5)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == CONTENT_TYPE_PLAIN_0_0_4
    assert "# TYPE hub_bronze_rows_total counter" in answer.text
    assert answer.text.index("hub_bronze_rows_total") < answer.text.index("temporal_workflow_completed 3")
    assert missing.status_code == 404


def test_the_endpoint_serves_the_hub_metrics_while_the_sdk_does_not_answer() -> None:
    port = free_port()
    with metrics_endpoint("127.0.0.1", port, free_port()):
        answer = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    assert answer.status_code == 200
    assert "hub_bronze_rows_total" in answer.text and "# TYPE temporal_" not in answer.text


@contextmanager
def sdk_stand_in(body: bytes) -> Iterator[int]:
    """An HTTP server answering ``body`` at /metrics, as the SDK's Prometheus endpoint does."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


async def test_the_poll_counts_runs_holding_a_refused_event(hub: Hub) -> None:
    # A warehouse worker's poll counts a parked lead too: with every flows worker gone, it still tells.
    poll = VisibilityPoll(
        hub.client, hub.settings, {"VtexOrderWorkflow": hub.settings.vtex_orders_task_queue}
    )
    lead_id = await hub.create_lead(State="MG", City="Betim")
    await hub.http.post(f"{hub.sims_url}/_control/credentials", json={"target": "zoho", "revoked": True})
    await hub.post_webhook(lead_id)

    async def counted(expected: int) -> bool:
        await poll.poll()
        return value("hub_parked_workflows", partner="zoho") == expected and (
            value("hub_parked_workflows", partner="vtex") == 0
        )

    await eventually(lambda: counted(1), timeout=30, interval=0.5)
    await hub.handle(lead_id).terminate("test over")
    await eventually(lambda: counted(0), timeout=30, interval=0.5)
