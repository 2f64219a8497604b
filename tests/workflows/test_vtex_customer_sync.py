"""Customer sync end to end: Master Data CL scroll on the simulator, the dev server, the emulator."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from google.cloud.bigquery import ArrayQueryParameter
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import EventType
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest
from temporalio.client import WorkflowHandle
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment, WorkflowEnvironment

from activities.pacing import RequestBudgets
from activities.vtex_customers import (
    CustomerCursors,
    CustomerPageInput,
    CustomerWindow,
    VtexCustomerActivities,
)
from clients.vtex import VtexClient
from core.constants import PROGRESS_QUERY
from db.engine import create_engine, session_factory
from tests.hub import Hub, running_hub
from tests.support import eventually
from warehouse.tables import QUARANTINE, VTEX_CUSTOMERS
from warehouse.vtex_customers import INVALID_EMAIL, MASKED_EMAIL
from workflows.vtex_customer_sync import (
    CustomerSyncInput,
    CustomerSyncResult,
    CustomerSyncWorkflow,
)

CUSTOMERS = 400
DIRECTORY = {"vtex_customers": CUSTOMERS}


async def start_sync(hub: Hub, **overrides: Any) -> WorkflowHandle[CustomerSyncWorkflow, CustomerSyncResult]:
    params = CustomerSyncInput(api_task_queue=hub.settings.vtex_api_task_queue, requests_per_second=50)
    for name, value in overrides.items():
        setattr(params, name, value)
    return await hub.client.start_workflow(
        CustomerSyncWorkflow.run,
        params,
        id=f"vtex-customer-sync-test-{uuid.uuid4().hex[:8]}",
        task_queue=hub.settings.vtex_orders_task_queue,
    )


async def sync_under_way(hub: Hub, pages: int) -> WorkflowHandle[CustomerSyncWorkflow, CustomerSyncResult]:
    """A sync of small pages at 4 a second (its scroll open for several seconds), ``pages`` landed."""
    handle = await start_sync(hub, page_size=20, requests_per_second=4)

    async def landed() -> bool:
        return (await handle.query(PROGRESS_QUERY, result_type=CustomerSyncResult)).pages >= pages

    await eventually(landed, timeout=60)
    return handle


async def directory(hub: Hub) -> dict[str, Any]:
    return dict((await hub.http.get(f"{hub.sims_url}/_control/vtex/customers")).json())


async def control(hub: Hub, action: str, **body: Any) -> dict[str, Any]:
    response = await hub.http.post(f"{hub.sims_url}/_control/vtex/customers/{action}", json=body)
    response.raise_for_status()
    return dict(response.json())


async def kept_ids(hub: Hub, ids: list[str]) -> list[str]:
    """Which of these customers have a row in bronze or quarantine, one entry per row."""
    warehouse = hub.warehouse()
    selects = [
        f"select entity_id from `{warehouse.table_id(warehouse.layers.bronze, table)}`"
        " where entity_id in unnest(@ids)"
        for table in (VTEX_CUSTOMERS, QUARANTINE)
    ]
    try:
        rows = await warehouse.query(" union all ".join(selects), [ArrayQueryParameter("ids", "STRING", ids)])
    finally:
        await warehouse.aclose()
    return sorted(str(row["entity_id"]) for row in rows)


@pytest.fixture
async def hub(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> Any:
    async with running_hub(
        temporal_env.client, sqlite_url, task_queue, simulator=DIRECTORY, **warehouse_settings
    ) as hub:
        yield hub


async def test_first_run_lands_all_then_only_what_changed(hub: Hub) -> None:
    never_updated = (await control(hub, "create", count=1))["ids"]
    before = await directory(hub)
    documents, invalid = before["documents"], before["invalid_emails"]

    first = await (await start_sync(hub, page_size=100)).result()
    assert first.done and first.since is None  # no watermark yet: every customer
    assert first.read == documents
    assert (first.landed, first.quarantined) == (documents - invalid, invalid)
    assert first.checks[MASKED_EMAIL] == before["masked_emails"]  # landed, flagged, not invalid
    assert first.checks[INVALID_EMAIL] == invalid
    assert await kept_ids(hub, never_updated) == never_updated  # updatedIn is null: still landed
    assert await hub.bronze_counts(VTEX_CUSTOMERS) == (documents - invalid, documents - invalid)
    assert (await hub.bronze_counts(QUARANTINE))[0] == invalid
    assert first.watermark == first.until

    updated = (await control(hub, "update", count=5))["ids"]
    created = (await control(hub, "create", count=2))["ids"]
    second = await (await start_sync(hub)).result()
    assert second.since is not None and second.since < first.until  # the overlap re-reads the edge
    # The changed and the new ones land (in bronze, or quarantine for a broken e-mail), nothing else; the
    # one created just before the first run is read again in the overlap, and not landed again.
    # (Unless the update happened to pick that very customer: then it is one of the 7.)
    overlap = len(set(never_updated) - set(updated))
    assert (second.read, second.landed + second.quarantined, second.already_landed) == (
        7 + overlap,
        7,
        overlap,
    )
    assert await kept_ids(hub, updated + created) == sorted(updated * 2 + created)
    assert await hub.bronze_counts(VTEX_CUSTOMERS) == (documents - invalid + second.landed,) * 2
    assert (await hub.bronze_counts(QUARANTINE))[0] == invalid + second.quarantined
    assert second.watermark == second.until > first.until

    third = await (await start_sync(hub)).result()
    assert third.landed == 0
    assert third.read == third.already_landed > 0  # only the overlap was read again


async def test_expired_scroll_is_read_again_without_losing_or_repeating(hub: Hub) -> None:
    before = await directory(hub)
    expected = before["documents"] - before["invalid_emails"]
    handle = await sync_under_way(hub, pages=3)
    assert (await control(hub, "expire-scrolls"))["expired"] == 1
    result = await handle.result()
    assert result.scroll_restarts >= 1
    assert result.already_landed > 0  # the pages before the expiry were served again...
    assert result.landed == expected  # ...and none was landed twice, none was missed
    assert await hub.bronze_counts(VTEX_CUSTOMERS) == (expected, expected)


async def reset_to_after_page(handle: WorkflowHandle[Any, Any], page: int) -> str:
    """Reset the run (as ``temporal workflow reset`` does) to the workflow task that took its ``page``-th
    page; the new run's id."""
    completed, target = 0, None
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            completed += 1
        elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED and completed == page + 1:
            target = event.event_id  # the watermark read is the run's first activity
            break
    assert target is not None
    reset = await handle._client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=handle._client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=handle.id, run_id=handle.result_run_id or ""),
            reason="test: reset to an earlier page",
            workflow_task_finish_event_id=target,
            request_id=uuid.uuid4().hex,
        )
    )
    return reset.run_id


async def test_a_run_reset_to_an_earlier_page_reads_every_customer_of_its_window(hub: Hub) -> None:
    """Support resets a sync run to after its first page. The run before the reset took more pages with
    the same token, so Master Data's scroll is past them: the reset run scrolls its window again instead
    of going on with the token, and the run that moves the watermark read every customer (it went on
    with the token, and skipped the pages the run before took)."""
    before = await directory(hub)
    expected = before["documents"] - before["invalid_emails"]
    handle = await sync_under_way(hub, pages=4)
    run_id = await reset_to_after_page(handle, 1)
    result = await hub.client.get_workflow_handle(
        handle.id, run_id=run_id, result_type=CustomerSyncResult
    ).result()
    assert result.read >= before["documents"]  # every customer of the window, some twice
    assert result.scroll_restarts >= 1
    assert await hub.bronze_counts(VTEX_CUSTOMERS) == (expected, expected)


async def test_a_rate_limited_scroll_call_goes_on_with_its_token(hub: Hub) -> None:
    """A 429 is refused before it is served: the scroll did not move, so the page is asked for again
    with the same token after Retry-After, not by scrolling the window again from its start."""
    before = await directory(hub)
    handle = await sync_under_way(hub, pages=2)
    await hub.fault(target="vtex", rate_limit_count=2, retry_after_seconds=1)
    result = await handle.result()
    assert (await hub.counters())["vtex"]["faults_served"] == 2
    assert (result.scroll_restarts, result.already_landed) == (0, 0)
    assert result.landed == before["documents"] - before["invalid_emails"]


async def test_sync_waits_out_rate_limits_and_outages(hub: Hub) -> None:
    before = await directory(hub)
    await hub.fault(target="vtex", error_5xx_count=2, rate_limit_count=3, retry_after_seconds=1)
    result = await (await start_sync(hub, page_size=200)).result()
    assert result.landed == before["documents"] - before["invalid_emails"]
    assert (await hub.counters())["vtex"]["faults_served"] == 5


async def test_a_rate_limit_asking_for_a_longer_wait_than_a_page_has_ends_the_attempt(hub: Hub) -> None:
    """Master Data asks for two minutes (Retry-After: 120), more than a page waits in its attempt: the
    attempt ends with that delay for Temporal's retry, and no new scroll is opened within the wait
    (it used to scroll the window again at once, calling Master Data inside the wait it asked for)."""
    window = CustomerWindow(since=None, until=datetime.now(UTC).isoformat())
    warehouse, engine = hub.warehouse(), create_engine(hub.settings.database_url)
    async with httpx.AsyncClient(timeout=10) as http:
        vtex = VtexClient(http, hub.settings)
        customers = VtexCustomerActivities(vtex, warehouse, RequestBudgets(), session_factory(engine))
        try:
            first = await vtex.scroll_customers(where=window.where(), size=20)
            await hub.fault(target="vtex", rate_limit_count=1, retry_after_seconds=120)
            opened = (await hub.counters())["vtex"]["md_scrolls_opened"]
            page = CustomerPageInput(window, first.token, CustomerCursors(), 50, page_size=20)
            with pytest.raises(ApplicationError) as ended:
                await ActivityEnvironment().run(customers.land_customer_page, page)
        finally:
            await warehouse.aclose()
            await engine.dispose()
    assert ended.value.next_retry_delay == timedelta(seconds=120)
    assert (await hub.counters())["vtex"]["md_scrolls_opened"] == opened
