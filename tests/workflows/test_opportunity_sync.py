"""Opportunity updates replicated in order and exactly once, on the real dev server and databases."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.engine import make_url
from temporalio.client import WorkflowExecutionDescription, WorkflowExecutionStatus
from temporalio.testing import WorkflowEnvironment

import activities.opportunities
from core.constants import DEAL_STAGE, opportunity_workflow_id
from simulators.zoho_deals import deal_webhook_fields
from tests.hub import Hub, running_hub
from tests.support import TcpProxy, eventually

BRT = timezone(timedelta(hours=-3))
PIPELINE = [
    "Qualification",
    "Needs Analysis",
    "Value Proposition",
    "Id. Decision Makers",
    "Perception Analysis",
    "Proposal/Price Quote",
    "Negotiation/Review",
]
T0 = datetime(2026, 11, 24, 9, 0, tzinfo=BRT)


def change(deal_id: str, n: int, stage: str | None = None, **extra: Any) -> dict[str, Any]:
    """The n-th update of a deal, n seconds after T0, as Zoho's merge fields."""
    return {
        "deal_id": deal_id,
        "stage": stage or PIPELINE[n % len(PIPELINE)],
        "modified_time": (T0 + timedelta(seconds=n)).isoformat(),
        "modified_by": f"Vendedor {n}",
        **extra,
    }


async def moved_with_webhook(hub: Hub, deal_id: str, stage: str) -> dict[str, Any]:
    """The deal once its stage move in Zoho, sent as Zoho's webhook, is stored."""
    moved = await hub.http.post(
        f"{hub.sims_url}/_control/zoho/deals/{deal_id}/stage", json={"stage": stage, "send_webhook": True}
    )
    return await hub.wait_for_modified_time(deal_id, moved.json()["deal"]["Modified_Time"])


async def moved_twice_within_one_second(hub: Hub, order: str) -> tuple[str, list[dict[str, str]]]:
    """A deal moved to Needs Analysis, then to Value Proposition within the same second (Zoho stamps both
    moves alike), and the moves' webhooks: sent "in order" or "later first" once both moves are made, or
    the first one "handled between" the moves. Returns the deal's id and the webhooks, in move order."""
    deal_id = await hub.create_deal()
    at = change(deal_id, 1)["modified_time"]
    webhooks = []
    for stage in ("Needs Analysis", "Value Proposition"):
        moved = await hub.http.post(
            f"{hub.sims_url}/_control/zoho/deals/{deal_id}/stage",
            json={"stage": stage, "modified_time": at, "send_webhook": False},
        )
        moved.raise_for_status()
        webhooks.append(deal_webhook_fields(moved.json()["deal"]))
        if order == "handled between" and len(webhooks) == 1:
            assert (await hub.post_deal_webhook(webhooks[0])).status_code == 202
            await hub.wait_for_modified_time(deal_id, at)
    to_send = {"in order": webhooks, "later first": webhooks[::-1], "handled between": webhooks[1:]}[order]
    for webhook in to_send:
        assert (await hub.post_deal_webhook(webhook)).status_code == 202
    return deal_id, webhooks


def expected_history(changes: list[dict[str, Any]]) -> list[tuple[str | None, str]]:
    history: list[tuple[str | None, str]] = []
    previous = None
    for item in sorted(changes, key=lambda c: c["modified_time"]):
        if item["stage"] != previous:
            history.append((previous, item["stage"]))
            previous = item["stage"]
    return history


def history_of(deal: dict[str, Any]) -> list[tuple[str | None, str]]:
    return [(c["from_stage"], c["to_stage"]) for c in deal["stage_history"]]


async def test_concurrent_out_of_order_updates_end_newest_without_gaps(hub: Hub) -> None:
    deal_id = await hub.create_deal(Deal_Name="Frota 40 Onix - Locadora Sul")
    changes = [change(deal_id, n) for n in range(20)]
    shuffled = random.Random(7).sample(changes, len(changes))
    responses = await asyncio.gather(
        *(hub.post_deal_webhook(c, form=i % 2 == 0) for i, c in enumerate(shuffled))
    )
    assert {r.status_code for r in responses} == {202}

    deal = await hub.wait_for_modified_time(deal_id, changes[-1]["modified_time"])
    assert deal["stage"] == changes[-1]["stage"]
    assert deal["deal_name"] == "Frota 40 Onix - Locadora Sul"  # fetched from Zoho
    assert history_of(deal) == expected_history(changes)
    assert [c["changed_by"] for c in deal["stage_history"]] == [f"Vendedor {n}" for n in range(20)]

    # The same updates again (Zoho retrying its webhooks): dropped, nothing duplicated.
    await asyncio.gather(*(hub.post_deal_webhook(c) for c in changes[:5]))

    async def dropped() -> bool:
        described = await hub.client.get_workflow_handle(opportunity_workflow_id(deal_id)).describe()
        memo = await described.memo()
        return int(memo.get("dropped", 0)) >= 5

    await eventually(dropped)
    again = await hub.opportunity(deal_id)
    assert again is not None and history_of(again) == expected_history(changes)


async def test_a_webhook_handled_after_a_later_edit_keeps_zohos_newer_record(hub: Hub) -> None:
    """The rule's webhook for a stage move is handled after the deal was edited again in Zoho (its
    amount: an edit that moves no stage fires no webhook). The database keeps Zoho's newer record, not
    the webhook's older amount, and the stage move joins the history at its own time."""
    deal_id = await hub.create_deal(Amount=150000)
    moved = await hub.http.post(
        f"{hub.sims_url}/_control/zoho/deals/{deal_id}/stage",
        json={"stage": "Closed Won", "send_webhook": False},
    )
    webhook = deal_webhook_fields(moved.json()["deal"])
    edited = await hub.http.patch(
        f"{hub.sims_url}/_control/zoho/deals/{deal_id}", json={"fields": {"Amount": 162500.5}}
    )
    edited.raise_for_status()
    assert (await hub.post_deal_webhook(webhook)).status_code == 202

    moved_at = datetime.fromisoformat(webhook["modified_time"])

    async def won_at_its_time() -> dict[str, Any] | None:
        deal = await hub.opportunity(deal_id)
        history = deal["stage_history"] if deal else []
        won = [c for c in history if c["to_stage"] == "Closed Won"]
        return deal if won and datetime.fromisoformat(won[0]["changed_at"]) == moved_at else None

    # Zoho's record is stored first, then the webhook's stage move joins the history at its own time.
    deal = await eventually(won_at_its_time)
    assert datetime.fromisoformat(deal["modified_time"]) == datetime.fromisoformat(
        edited.json()["deal"]["Modified_Time"]
    )
    assert (deal["stage"], Decimal(str(deal["amount"]))) == ("Closed Won", Decimal("162500.5"))
    assert history_of(deal) == [(None, "Closed Won")]  # the amount edit moved no stage


@pytest.mark.parametrize("order", ["in order", "later first", "handled between"])
async def test_two_moves_within_one_second_both_join_the_history_and_the_later_is_current(
    hub: Hub, order: str
) -> None:
    """Zoho stamps two stage moves made within one second with the same Modified_Time. The second is not
    the first sent again: Zoho's record says which came last, that stage is the deal's, and both moves
    are in its history in the order they were made, however the webhooks came."""
    deal_id, webhooks = await moved_twice_within_one_second(hub, order)

    async def both_moves_and_zohos_last_word() -> dict[str, Any] | None:
        # The second move's webhook, at the current state's own second, first joins the history only;
        # the read of Zoho's record a batch window later makes its stage the deal's.
        deal = await hub.opportunity(deal_id)
        settled = deal and len(deal["stage_history"]) == 2 and deal["stage"] == "Value Proposition"
        return deal if settled else None

    deal = await eventually(both_moves_and_zohos_last_word)
    assert history_of(deal) == [(None, "Needs Analysis"), ("Needs Analysis", "Value Proposition")]
    assert {c["changed_at"] for c in deal["stage_history"]} == {deal["modified_time"]}
    assert datetime.fromisoformat(deal["modified_time"]) == datetime.fromisoformat(
        webhooks[0]["modified_time"]
    )

    async def shown_to_support() -> bool:  # the run sets it once the read's activity answered
        described = await hub.client.get_workflow_handle(opportunity_workflow_id(deal_id)).describe()
        return described.typed_search_attributes.get(DEAL_STAGE) == "Value Proposition"

    await eventually(shown_to_support)
    # The deal moves on: the two moves of that second keep their order.
    deal = await moved_with_webhook(hub, deal_id, "Id. Decision Makers")
    assert history_of(deal) == [
        (None, "Needs Analysis"),
        ("Needs Analysis", "Value Proposition"),
        ("Value Proposition", "Id. Decision Makers"),
    ]


async def test_a_change_the_database_holds_already_is_applied_by_a_new_run(hub: Hub) -> None:
    """A change stored by an attempt whose worker died before Temporal heard of it, or sent again after
    the deal's run ended: the database's current state is that change, so the run counts it applied
    and support sees the deal's stage (DealStage), where it used to drop it as repeated."""
    deal_id = await hub.create_deal()
    first = change(deal_id, 1, "Needs Analysis")
    assert (await hub.post_deal_webhook(first)).status_code == 202
    await hub.wait_for_modified_time(deal_id, first["modified_time"])
    handle = hub.client.get_workflow_handle(opportunity_workflow_id(deal_id))
    ended = (await handle.describe()).run_id
    await handle.terminate("a run that ended")

    assert (await hub.post_deal_webhook(first)).status_code == 202

    async def staged() -> WorkflowExecutionDescription | None:
        described = await handle.describe()
        stage = described.typed_search_attributes.get(DEAL_STAGE)
        return described if described.run_id != ended and stage else None

    described = await eventually(staged)
    assert described.typed_search_attributes.get(DEAL_STAGE) == "Needs Analysis"
    assert "dropped" not in await described.memo()


async def test_fifty_deals_interleaved(hub: Hub) -> None:
    deal_ids = await asyncio.gather(*(hub.create_deal() for _ in range(50)))
    stages = ["Needs Analysis", "Proposal/Price Quote", "Closed Won"]
    updates = [change(d, n, stages[n]) for n in range(3) for d in deal_ids]
    random.Random(3).shuffle(updates)
    limit = asyncio.Semaphore(25)

    async def send(update: dict[str, Any]) -> int:
        async with limit:
            return (await hub.post_deal_webhook(update)).status_code

    assert set(await asyncio.gather(*(send(u) for u in updates))) == {202}
    for deal_id in deal_ids:
        deal = await hub.wait_for_modified_time(deal_id, change(deal_id, 2, "Closed Won")["modified_time"])
        assert deal["stage"] == "Closed Won"
        assert history_of(deal) == [(None, stages[0]), (stages[0], stages[1]), (stages[1], stages[2])]


async def test_partial_webhook_fetches_the_deal(hub: Hub) -> None:
    deal_id = await hub.create_deal(Deal_Name="Frota 12 S10")
    response = await hub.http.post(
        f"{hub.sims_url}/_control/zoho/deals/{deal_id}/stage",
        json={"stage": "Negotiation/Review", "send_webhook": True, "partial": True},
    )
    assert response.json()["webhook"]["status_code"] == 202
    zoho_deal = response.json()["deal"]
    deal = await hub.wait_for_modified_time(deal_id, zoho_deal["Modified_Time"])
    assert (deal["stage"], deal["deal_name"]) == ("Negotiation/Review", "Frota 12 S10")
    assert deal["amount"] is not None


async def test_a_webhook_time_from_the_future_is_left_out_and_the_deal_read(hub: Hub) -> None:
    """A wrong offset in the webhook's template: a Modified_Time hours ahead would stay the deal's newest
    and turn every real change after it into a late one. It is left out: the deal is read from Zoho and
    stored as Zoho has it, and the next real change applies."""
    deal_id = await hub.create_deal(Deal_Name="Frota 2 Cruze")
    moved = await hub.http.post(
        f"{hub.sims_url}/_control/zoho/deals/{deal_id}/stage",
        json={"stage": "Needs Analysis", "send_webhook": False},
    )
    record = moved.json()["deal"]
    ahead = (datetime.now(UTC) + timedelta(hours=3)).isoformat()
    answer = await hub.post_deal_webhook({"deal_id": deal_id, "stage": "Closed Won", "modified_time": ahead})
    assert answer.status_code == 202
    deal = await hub.wait_for_modified_time(deal_id, record["Modified_Time"])
    assert deal["stage"] == "Needs Analysis"  # Zoho's record, not the webhook's stage at a future time

    deal = await moved_with_webhook(hub, deal_id, "Negotiation/Review")
    assert deal["stage"] == "Negotiation/Review"


async def test_locked_database_delays_but_loses_nothing(hub: Hub, sqlite_url: str) -> None:
    import sqlite3

    deal_id = await hub.create_deal()
    path = make_url(sqlite_url).database
    assert path is not None
    lock = sqlite3.connect(Path(path), timeout=1, isolation_level=None)
    lock.execute("BEGIN EXCLUSIVE")  # nobody else may read or write until we commit
    try:
        changes = [change(deal_id, n) for n in range(5)]
        responses = await asyncio.gather(*(hub.post_deal_webhook(c) for c in changes))
        assert {r.status_code for r in responses} == {202}  # durable in Temporal, not yet in the database
        await asyncio.sleep(4)
    finally:
        lock.execute("COMMIT")
        lock.close()
    deal = await hub.wait_for_modified_time(deal_id, changes[-1]["modified_time"])
    assert history_of(deal) == expected_history(changes)


@pytest.fixture
async def proxied_postgres(postgres_url: str) -> AsyncIterator[tuple[str, TcpProxy]]:
    url = make_url(postgres_url)
    proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432)
    await proxy.start()
    yield url.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False), proxy
    await proxy.stop()


@pytest.mark.postgres
async def test_database_down_for_a_while_loses_nothing(
    temporal_env: WorkflowEnvironment, proxied_postgres: tuple[str, TcpProxy], task_queue: str
) -> None:
    url, proxy = proxied_postgres
    async with running_hub(temporal_env.client, url, task_queue) as hub:
        deal_id = await hub.create_deal()
        first = change(deal_id, 0)
        await hub.post_deal_webhook(first)
        await hub.wait_for_modified_time(deal_id, first["modified_time"])

        await proxy.stop()  # the database goes away
        changes = [change(deal_id, n) for n in range(1, 6)]
        responses = await asyncio.gather(*(hub.post_deal_webhook(c) for c in changes))
        assert {r.status_code for r in responses} == {202}
        await asyncio.sleep(5)
        await proxy.start()  # and comes back

        deal = await hub.wait_for_modified_time(deal_id, changes[-1]["modified_time"], timeout=90)
        assert history_of(deal) == expected_history([first, *changes])


async def test_idle_workflow_closes_and_long_ones_continue_as_new(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    async with running_hub(
        temporal_env.client,
        sqlite_url,
        task_queue,
        opportunity_idle_close_seconds=3,
        opportunity_changes_per_run=2,
        opportunity_batch_window_seconds=1.0,
    ) as hub:
        deal_id = await hub.create_deal()
        handle = hub.client.get_workflow_handle(opportunity_workflow_id(deal_id))
        sent = []
        for n in range(5):  # one at a time: each its own batch
            sent.append(change(deal_id, n))
            await hub.post_deal_webhook(sent[-1])
            await hub.wait_for_modified_time(deal_id, sent[-1]["modified_time"])

        async def closed() -> bool:
            return (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED

        await eventually(closed, timeout=30)
        runs = await hub.count_workflows(f"WorkflowId = '{opportunity_workflow_id(deal_id)}'")
        assert runs >= 3  # 5 updates, 2 per run: continued as new at least twice

        # After the idle close, the next update starts a new run and is applied.
        late = change(deal_id, 9, "Closed Won")
        assert (await hub.post_deal_webhook(late)).status_code == 202
        deal = await hub.wait_for_modified_time(deal_id, late["modified_time"])
        assert history_of(deal) == expected_history([*sent, late])


async def resent_to_the_next_run(hub: Hub) -> tuple[str, str, str]:
    """A change applied by a deal's run that then continued as new (a hub of one change per run), and the
    same change sent again to the next run. Returns the workflow's id, the id of the run that had it
    sent again, and the note that run dropped it with."""
    deal_id = await hub.create_deal()
    workflow_id = opportunity_workflow_id(deal_id)
    first = change(deal_id, 1, "Needs Analysis")
    assert (await hub.post_deal_webhook(first)).status_code == 202
    await hub.wait_for_modified_time(deal_id, first["modified_time"])

    async def continued() -> bool:
        return await hub.count_workflows(f"WorkflowId = '{workflow_id}'") >= 2

    await eventually(continued)
    assert (await hub.post_deal_webhook(first)).status_code == 202  # to the next run

    async def dropped() -> list[tuple[str, str]]:
        runs = hub.client.list_workflows(f"WorkflowId = '{workflow_id}'")
        return [
            (run.run_id, str(memo["last_dropped"]))
            async for run in runs
            if "last_dropped" in (memo := await run.memo())
        ]

    [(run_id, note)] = await eventually(dropped)  # that run then continued as new too
    return workflow_id, run_id, note


async def test_the_next_run_knows_the_stage_of_the_last_applied_second(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    """A run continued as new carries the stage it applied last with its time: the same change sent again
    to the next run is dropped as stored before, not taken for a second move within that second."""
    async with running_hub(
        temporal_env.client,
        sqlite_url,
        task_queue,
        opportunity_changes_per_run=1,
        opportunity_batch_window_seconds=1.0,
    ) as hub:
        _, _, note = await resent_to_the_next_run(hub)
    assert note.endswith("(Needs Analysis): repeated: this change was stored before")


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"stage": "Qualification"}, 422, "deal_id: Field required"),
        ({"deal_id": "x1"}, 422, "deal_id: String should match pattern"),
        ({"deal_id": "1", "modified_time": "2026-11-24T09:00:00"}, 422, "modified_time"),
        ({"deal_id": "1", "amount": "muito"}, 422, "amount"),
        # More than the central database stores (NUMERIC(18, 2)): refused, not stuck in its run.
        ({"deal_id": "1", "amount": "1e16"}, 422, "amount: Value error, Amount is beyond 16 digits"),
        ({"deal_id": "1", "amount": "NaN"}, 422, "amount"),
        # Rounded to the cent as the database would: seventeen digits.
        ({"deal_id": "1", "amount": "9999999999999999.995"}, 422, "Amount is beyond 16 digits"),
    ],
)
async def test_bad_deal_webhooks_are_refused(
    hub: Hub, fields: dict[str, Any], status: int, message: str
) -> None:
    response = await hub.post_deal_webhook(fields)
    assert response.status_code == status
    assert message in response.json()["detail"]


async def test_deal_webhook_needs_secret_and_size_limit(hub: Hub) -> None:
    url = f"{hub.api_url}/webhooks/zoho/opportunities"
    assert (await hub.http.post(url, data={"deal_id": "1"})).status_code == 401
    big = {"deal_id": "1", "note": "x" * (hub.settings.webhook_max_body_bytes + 1)}
    headers = {hub.settings.zoho_webhook_secret_header: "test-webhook-secret"}
    assert (await hub.http.post(url, json=big, headers=headers)).status_code == 413


async def test_a_deal_knows_the_lead_it_was_converted_from(hub: Hub) -> None:
    """Zoho keeps the link on the lead ($converted_detail.deal): the hub finds it when it first
    replicates the deal, keeps it through later changes, and leaves other deals unlinked."""
    lead_id = await hub.create_lead(State="SP", City="Campinas")
    converted = await hub.http.post(
        f"{hub.sims_url}/_control/zoho/leads/{lead_id}/convert", json={"Stage": "Qualification"}
    )
    converted.raise_for_status()
    assert converted.json()["webhook"]["status_code"] == 202
    deal = converted.json()["deal"]
    assert converted.json()["lead"]["$converted_detail"]["deal"] == deal["id"]
    replicated = await hub.wait_for_modified_time(deal["id"], deal["Modified_Time"])
    assert replicated["lead_id"] == lead_id
    lists = (await hub.counters())["zoho"]["lead_lists"]

    # Later changes keep the link without asking Zoho again.
    won = await moved_with_webhook(hub, deal["id"], "Closed Won")
    assert (won["stage"], won["lead_id"]) == ("Closed Won", lead_id)
    assert (await hub.counters())["zoho"]["lead_lists"] == lists

    # A deal created in Zoho directly, just after that conversion: no lead.
    other_id = await hub.create_deal(Deal_Name="Frota 3 Spin", Created_Time=deal["Created_Time"])
    created = await hub.http.post(
        f"{hub.sims_url}/_control/zoho/deals/{other_id}/stage",
        json={"stage": "Needs Analysis", "send_webhook": True},
    )
    other = await hub.wait_for_modified_time(other_id, created.json()["deal"]["Modified_Time"])
    assert other["lead_id"] is None


async def test_a_lead_lookup_slower_than_its_budget_stores_the_deal_without_the_link(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Zoho answering slowly: the lookup of the converted lead (several pages, each a call) would take
    every attempt of the deal's first read past its timeout, and the deal would never be stored. Past
    its budget in three attempts the lookup gives up, and the deal is stored without the link; the
    deal's next change, with Zoho answering again, looks again and links it."""
    monkeypatch.setattr(activities.opportunities, "LEAD_LOOKUP_SECONDS", 1)
    lead_id = await hub.create_lead(State="SP", City="Campinas")
    slow = {"target": "zoho", "latency_ms": 1500}
    (await hub.http.post(f"{hub.sims_url}/_control/faults", json=slow)).raise_for_status()
    converted = await hub.http.post(
        f"{hub.sims_url}/_control/zoho/leads/{lead_id}/convert", json={"Stage": "Qualification"}
    )
    assert converted.json()["webhook"]["status_code"] == 202
    deal = converted.json()["deal"]
    replicated = await hub.wait_for_modified_time(deal["id"], deal["Modified_Time"])
    assert (replicated["stage"], replicated["lead_id"]) == ("Qualification", None)
    history = await hub.client.get_workflow_handle(opportunity_workflow_id(deal["id"])).fetch_history()
    failed = [e for e in history.events if e.HasField("activity_task_started_event_attributes")]
    assert max(e.activity_task_started_event_attributes.attempt for e in failed) >= 3  # looked again

    (await hub.http.delete(f"{hub.sims_url}/_control/faults")).raise_for_status()
    won = await moved_with_webhook(hub, deal["id"], "Closed Won")
    assert (won["stage"], won["lead_id"]) == ("Closed Won", lead_id)
    lists = (await hub.counters())["zoho"]["lead_lists"]

    # Found once, the link stays, and later changes do not ask Zoho again.
    again = await moved_with_webhook(hub, deal["id"], "Closed Lost")
    assert (again["stage"], again["lead_id"]) == ("Closed Lost", lead_id)
    assert (await hub.counters())["zoho"]["lead_lists"] == lists
