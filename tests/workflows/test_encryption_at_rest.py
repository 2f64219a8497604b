"""Every flow leaves no personal data readable in Temporal: payloads, memos and failures are encrypted.

Each flow runs end to end on the dev server; then each workflow's history and description are read as
anyone with access to Temporal (its database, its API, its UI without the codec server) reads them, and
searched for the customers' e-mails, phones, names and documents (CPF) that the flow handled.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from core.codec import ENCODING, KEY_ID
from core.constants import lead_workflow_id, opportunity_workflow_id, vtex_order_workflow_id
from core.temporal import payload_codec
from tests.hub import Hub, running_hub
from tests.stored import Stored, payloads_in, stored
from tests.support import SMALL_STORE
from tests.workflows.test_vtex_catalog_sync import start_sync as start_catalog_sync
from tests.workflows.test_vtex_customer_sync import start_sync as start_customer_sync
from tests.workflows.test_vtex_order import LIFECYCLE, landed
from warehouse.tables import QUARANTINE, VTEX_CUSTOMERS, VTEX_ORDERS
from workflows.vtex_order_backfill import OrderBackfillInput, start_order_backfill

BACKFILL = (datetime(2026, 10, 20, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
LEAD = {
    "First_Name": "Rosângela",
    "Last_Name": "Vasconcellos",
    "Email": "rosangela.vasconcellos@example.com.br",
    "Phone": "+55 11 3456-7890",
    "Mobile": "+55 11 98123-4567",
    "CPF": "529.982.247-25",
    "State": "SP",
    "City": "Campinas",
}
CONTACT = "Teodoro Bittencourt"
BUYER = {
    "email": "heloisa.magalhaes@example.com.br",
    "firstName": "Heloísa",
    "lastName": "Magalhães",
    "document": "15350946056",
    "phone": "+5521998765432",
}
PERSONAL_FIELDS = ("email", "firstName", "lastName", "document", "phone")


@pytest.fixture
async def hub(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> Any:
    async with running_hub(
        temporal_env.client, sqlite_url, task_queue, simulator=SMALL_STORE, **warehouse_settings
    ) as hub:
        yield hub


async def test_no_flow_leaves_personal_data_readable_in_temporal(hub: Hub) -> None:
    lead_id = await run_lead_rejected_once(hub)
    deal_id = await run_deal(hub)
    order_id = await run_order(hub)
    backfill = await start_order_backfill(
        hub.client, hub.settings, OrderBackfillInput.for_range(hub.settings, *BACKFILL, rate=400)
    )
    assert (await backfill.result()).orders_landed > 0
    catalog = await start_catalog_sync(hub, page_size=20)
    customers = await start_customer_sync(hub, page_size=10)
    await catalog.result()
    assert (await customers.result()).read > 0

    personal = sorted(
        set(LEAD.values()) - {"SP", "Campinas"}
        | {CONTACT}
        | set(BUYER.values())
        | await personal_data_landed(hub)
    )
    workflow_ids = [
        lead_workflow_id(lead_id),
        opportunity_workflow_id(deal_id),
        vtex_order_workflow_id(order_id),
        backfill.id,
        catalog.id,
        customers.id,
    ]
    every = {workflow_id: await stored(hub.client, workflow_id) for workflow_id in workflow_ids}
    for workflow_id, workflow in every.items():
        found = [value for value in personal if readable(value, workflow.plaintext())]
        assert not found, f"{workflow_id} stores {found} where anyone can read it"
        assert_only_ciphertext(workflow)
        assert workflow.search_attribute_values(), f"{workflow_id} has no plain search attributes"

    # The scan looks where the data is: the lead's history does carry it, encrypted.
    lead = every[lead_workflow_id(lead_id)]
    opened = b"".join(p.data for p in await payload_codec(hub.settings).decode(lead.payloads()))
    for value in (LEAD["Email"], LEAD["Mobile"], LEAD["CPF"]):
        assert readable(value, opened)
    assert lead.failures(), "the dealer's refusal should be in the lead's history"
    assert every[backfill.id].description.workflow_execution_info.memo.fields, "no memo was checked"


def assert_only_ciphertext(workflow: Stored) -> None:
    """Every payload (inputs, results, memos, failure attributes) encrypted; failures say nothing plain."""
    payloads = workflow.payloads()
    assert payloads
    for payload in payloads:
        assert payload.metadata.get("encoding") == ENCODING, f"{workflow.workflow_id}: {payload.metadata}"
        assert payload.metadata.get(KEY_ID)
    for failure in workflow.failures():
        assert (failure.message, failure.stack_trace) == ("Encoded failure", "")
        assert payloads_in(failure.encoded_attributes)[0].metadata["encoding"] == ENCODING


def readable(value: str, stored_bytes: bytes) -> bool:
    """Whether ``value`` appears as UTF-8 or as escaped JSON (``\\u00e9``)."""
    escaped = json.dumps(value)[1:-1]
    return value.encode() in stored_bytes or escaped.encode() in stored_bytes


async def run_lead_rejected_once(hub: Hub) -> str:
    """A lead the first dealer refuses (a failure in history) and the next one takes."""
    await hub.fault(target="rest-sp-a", reject=True)
    lead_id = await hub.create_lead(**LEAD)
    assert (await hub.post_webhook(lead_id)).status_code == 202
    delivered = await hub.wait_for_status(lead_id, "delivered")
    assert delivered["dealer_id"] == "rest-sp-b"
    await hub.handle(lead_id).result()
    return lead_id


async def run_deal(hub: Hub) -> str:
    deal_id = await hub.create_deal(Contact_Name={"id": "5725767000000777001", "name": CONTACT})
    modified = (datetime.now(timezone(timedelta(hours=-3))) + timedelta(minutes=1)).replace(microsecond=0)
    change = {"deal_id": deal_id, "stage": "Negotiation/Review", "modified_time": modified.isoformat()}
    assert (await hub.post_deal_webhook(change)).status_code == 202
    deal = await hub.wait_for_modified_time(deal_id, change["modified_time"])
    assert deal["contact_name"] == CONTACT
    return deal_id


async def run_order(hub: Hub) -> str:
    order_id = await hub.create_order(clientProfileData=BUYER)
    await hub.move_order(order_id, *LIFECYCLE)
    rows = await landed(hub, order_id, VTEX_ORDERS, 1)
    assert rows[-1]["payload"]["clientProfileData"]["email"] == BUYER["email"]
    return order_id


async def personal_data_landed(hub: Hub) -> set[str]:
    """The customers' e-mails, names, documents and phones the order and customer flows handled."""
    warehouse = hub.warehouse()
    try:
        rows = []
        for table in (VTEX_ORDERS, VTEX_CUSTOMERS, QUARANTINE):
            rows += await warehouse.query(
                f"select payload from `{warehouse.table_id(warehouse.layers.bronze, table)}`"
            )
    finally:
        await warehouse.aclose()
    documents = [row["payload"].get("clientProfileData") or row["payload"] for row in rows]
    values = {str(doc[field]) for doc in documents for field in PERSONAL_FIELDS if doc.get(field)}
    assert any("@" in value for value in values), "no customer data was landed"
    # Names shorter than four letters could match by chance what Temporal stores in plain (ids, states).
    return {value for value in values if len(value) >= 4}
