"""The lead flow's records in the warehouse: real lead runs (SLA misses, re-routes, late and out-of-order
dealer reports) on the time-skipping server, LeadWarehouseSyncWorkflow landing their changes in bronze
on the emulator, and dbt's gold against a recomputation from the portal database in Python."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import delete, select
from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.lead_warehouse import LeadWarehouseActivities
from activities.watermarks import WatermarkActivities
from contracts.dbt_build import BuildRequest
from core.deals import DealState
from core.settings import Settings
from core.timeutil import as_utc
from db.engine import create_engine, session_factory
from db.models import (
    Delivery,
    DeliveryRelease,
    Lead,
    LeadStatusChange,
    Opportunity,
    OpportunityStageChange,
    SyncWatermark,
    Withdrawal,
)
from db.opportunities import apply_change
from tests.dbt.test_models import dbt_build
from tests.hub import Hub
from tests.support import skip_time
from tests.workflows.test_dealer_sla import SLA, at_dealer, dealer_reports, sla_hub, zoho_lead
from warehouse.landing import Warehouse
from warehouse.tables import (
    DEAL_STAGE_CHANGES,
    DEALER_FEEDBACK,
    DEALS,
    LEAD_DELIVERIES,
    LEAD_STATUS_CHANGES,
    every_partition,
)
from workflows.lead_warehouse_sync import LeadSyncInput, LeadSyncResult, LeadWarehouseSyncWorkflow

LEAD_TABLES = (LEAD_STATUS_CHANGES, LEAD_DELIVERIES, DEALER_FEEDBACK, DEALS, DEAL_STAGE_CHANGES)
BRT = ZoneInfo("America/Sao_Paulo")
TOOK = {"accepted", "contacted", "qualified", "sold"}
FUNNEL = {"received": 0, "delivered": 1, "accepted": 2, "contacted": 3, "qualified": 4, "sold": 5}


async def run_leads(hub: Hub, env: WorkflowEnvironment) -> list[str]:
    """Four Paraná/Santa Catarina leads through the SLA dealers; the portal database records it all."""
    in_time = await hub.create_lead(State="PR", City="Curitiba", Modelo_de_Interesse="Onix")
    missed = await hub.create_lead(State="PR", City="Londrina", Modelo_de_Interesse="Tracker")
    lost = await hub.create_lead(State="SC", City="Joinville", Modelo_de_Interesse="Onix")
    for lead_id in (in_time, missed, lost):
        assert (await hub.post_webhook(lead_id)).status_code == 202
    await at_dealer(hub, in_time, "sla-a")
    await at_dealer(hub, missed, "sla-a")
    await at_dealer(hub, lost, "poll-sc")
    await skip_time(env, timedelta(minutes=10))
    await dealer_reports(hub, "sla-a", in_time, "accepted")
    await dealer_reports(hub, "poll-sc", lost, "lost")
    await skip_time(env, SLA)  # the missed lead moves on to sla-b
    await at_dealer(hub, missed, "sla-b")
    await dealer_reports(hub, "sla-a", missed, "accepted")  # late: recorded, answered 409, never taken
    await dealer_reports(hub, "sla-b", missed, "contacted")
    # Out of order: "sold" is reported before "contacted", with the dealer's earlier times.
    now = datetime.now(BRT)
    await dealer_reports(hub, "sla-a", in_time, "sold", at=now)
    await dealer_reports(hub, "sla-a", in_time, "contacted", at=now - timedelta(minutes=5))
    for lead_id, status in ((in_time, "sold"), (missed, "contacted"), (lost, "lost")):
        await hub.wait_for_status(lead_id, status)
    # The dealer's time, reported in its own zone, is the same moment in the portal.
    history = (await hub.lead(in_time) or {})["history"]
    [sold] = [change for change in history if change["status"] == "sold"]
    assert datetime.fromisoformat(sold["at"]) == now
    return [in_time, missed, lost]


async def make_deals(database_url: str, lead_ids: list[str]) -> None:
    """Deals as the opportunity flow stores them in the central database: the sold lead's deal won after
    a move, the re-routed lead's lost, one created in Zoho directly and won (unlinked), one converted
    from a lead the hub never saw (unlinked too), and a late move that arrives after a newer one."""
    sold, rerouted, _ = lead_ids
    start = datetime(2026, 12, 1, 12, tzinfo=BRT)
    moves = [
        ("k-1", sold, "Qualification", None, 0, "Equipe Frotas"),
        ("k-1", sold, "Closed Won", Decimal("150000.50"), 50, "Equipe Frotas"),
        ("k-2", rerouted, "Closed Lost", Decimal("90000"), 55, "Gerente Regional"),
        ("k-3", None, "Closed Won", Decimal("80000"), 60, "Vendas Diretas"),
        ("k-4", "5725767000999999999", "Closed Won", None, 70, None),
        ("k-1", sold, "Negotiation/Review", None, 40, "Equipe Frotas"),  # late: before the win, stale
    ]
    engine = create_engine(database_url)
    sessions = session_factory(engine)
    try:
        for deal_id, lead_id, stage, amount, hours, owner in moves:
            state = DealState(
                deal_id, start + timedelta(hours=hours), stage=stage, amount=amount, owner_name=owner,
                deal_name=f"{deal_id} Onix", contact_name="Maria Clara", lead_id=lead_id,
            )  # fmt: skip
            await apply_change(sessions, state, datetime.now(UTC))
    finally:
        await engine.dispose()


async def sync_once(env: WorkflowEnvironment, settings: Settings, warehouse: Warehouse) -> LeadSyncResult:
    """One run of the sync on a warehouse-role worker of its own; the dbt build it asks for is noted."""
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    leads, watermarks = LeadWarehouseActivities(warehouse, sessions), WatermarkActivities(sessions)

    @activity.defn(name="request_dbt_build")
    async def request_dbt_build(request: BuildRequest) -> None:
        requested.append(request.reason)

    requested: list[str] = []
    queue = f"{settings.leads_task_queue}-warehouse"
    try:
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[LeadWarehouseSyncWorkflow],
            activities=[
                leads.land_lead_changes, watermarks.read_watermark, watermarks.advance_watermark,
                request_dbt_build,
            ],
        ):  # fmt: skip
            result = await env.client.execute_workflow(
                LeadWarehouseSyncWorkflow.run,
                LeadSyncInput(page_size=3, build_task_queue=queue),  # pages of 3: the keyset paging
                id=f"lead-warehouse-sync-{len(requested)}-{datetime.now().timestamp()}",
                task_queue=queue,
            )
    finally:
        await engine.dispose()
    assert result.done
    assert requested == (["lead warehouse sync"] if result.landed else [])
    return result


async def bronze_counts(warehouse: Warehouse) -> dict[str, tuple[int, int]]:
    counts = {}
    for table in LEAD_TABLES:
        [row] = await warehouse.query(
            f"select count(*) as n, count(distinct event_key) as keys "
            f"from `{warehouse.table_id(warehouse.layers.bronze, table)}` where {every_partition(table)}"
        )
        counts[table] = (int(row["n"]), int(row["keys"]))
    return counts


async def test_leads_land_once_without_personal_data_and_gold_equals_a_recomputation(
    skipping_env: WorkflowEnvironment,
    sqlite_url: str,
    task_queue: str,
    warehouse_settings: dict[str, Any],
    tmp_path: Path,
) -> None:
    async with sla_hub(skipping_env, sqlite_url, task_queue) as hub:
        lead_ids = await run_leads(hub, skipping_env)
        people = [await zoho_lead(hub, lead_id) for lead_id in lead_ids]
    await make_deals(sqlite_url, lead_ids)
    settings = Settings(
        environment="test", bigquery_timeout_seconds=10, database_url=sqlite_url, **warehouse_settings
    )
    warehouse = Warehouse.from_settings(settings)
    try:
        first = await sync_once(skipping_env, settings, warehouse)
        landed = await bronze_counts(warehouse)
        assert first.landed == sum(rows for rows, _ in landed.values()) > 0
        assert all(rows == keys for rows, keys in landed.values()), landed
        assert first.read["status"] > 3  # pages of 3: the status changes took several
        assert (first.read["deal"], first.read["deal_stage"]) == (4, 6)

        # The same changes landed again (the watermark forgotten: the whole history read) add nothing.
        engine = create_engine(sqlite_url)
        async with session_factory(engine).begin() as session:
            await session.execute(delete(SyncWatermark))
        again = await sync_once(skipping_env, settings, warehouse)
        assert (again.landed, again.already_landed) == (0, first.landed)
        assert await bronze_counts(warehouse) == landed

        await assert_no_personal_data(warehouse, people)
        await dbt_build(settings, tmp_path, models_only=True)
        expected_dealers, expected_funnel = await recompute(session_factory(engine))
        await engine.dispose()
        assert await gold(warehouse, "dealer_performance", "dealer_id, day") == expected_dealers
        assert await gold(warehouse, "lead_funnel", "received_date, state, model, source") == expected_funnel
        assert any(row["source"] for row in expected_funnel)  # Zoho's Lead_Source reached the funnel
    finally:
        await warehouse.aclose()


async def assert_no_personal_data(warehouse: Warehouse, people: list[dict[str, Any]]) -> None:
    """No lead's name, e-mail or phone anywhere in the lead tables of bronze, payload or columns."""
    personal = {
        str(person[field])
        for person in people
        for field in ("First_Name", "Last_Name", "Email", "Mobile", "Phone")
        if person.get(field)
    } | {"Maria Clara", "k-1 Onix"}  # a deal's contact and name
    assert personal
    for table in LEAD_TABLES:
        rows = await warehouse.query(
            f"select to_json_string(t) as row from `{warehouse.table_id(warehouse.layers.bronze, table)}` t"
            f" where {every_partition(table)}"
        )
        text = "\n".join(str(row["row"]) for row in rows)
        assert not [value for value in personal if value in text], table


async def gold(warehouse: Warehouse, table: str, order: str) -> list[dict[str, Any]]:
    rows = await warehouse.query(
        f"select * from `{warehouse.table_id(warehouse.layers.gold, table)}` order by {order}"
    )
    return [{key: _plain(value) for key, value in row.items()} for row in rows]


def _plain(value: Any) -> Any:
    return round(float(value), 4) if isinstance(value, float) else value


async def recompute(sessions: Any) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """dealer_performance and lead_funnel from the portal database, by the rules the README states."""
    async with sessions() as session:
        changes = (await session.scalars(select(LeadStatusChange))).all()
        current = (await session.scalars(select(Delivery))).all()
        lost = (await session.scalars(select(Withdrawal))).all()
        released = (await session.scalars(select(DeliveryRelease))).all()
        profiles = {lead_id: profile for lead_id, profile in await _profiles(session)}
        sources = {lead.lead_id: lead.lead_source for lead in (await session.scalars(select(Lead))).all()}
        deals = (await session.scalars(select(Opportunity))).all()
        moves = (await session.scalars(select(OpportunityStageChange))).all()
    taken: dict[tuple[str, str], datetime] = {}
    sold = set()
    for change in changes:
        pair = (change.lead_id, change.dealer_id)
        if change.status in TOOK:
            taken[pair] = min(taken.get(pair, as_utc(change.at)), as_utc(change.at))
        if change.status == "sold":
            sold.add(pair)
    deliveries = [(d.lead_id, d.dealer_id, d.delivered_at, False) for d in current if d.delivered_at]
    deliveries += [(w.lead_id, w.dealer_id, w.delivered_at, True) for w in lost if w.delivered_at]
    deliveries += [(r.lead_id, r.dealer_id, r.delivered_at, False) for r in released if r.delivered_at]
    per_day: dict[tuple[str, Any], list[tuple[bool, datetime | None, datetime, bool]]] = defaultdict(list)
    for lead_id, dealer_id, delivered, withdrawn in deliveries:
        day = as_utc(delivered).astimezone(BRT).date()
        per_day[(dealer_id, day)].append(
            (withdrawn, taken.get((lead_id, dealer_id)), as_utc(delivered), (lead_id, dealer_id) in sold)
        )
    # A won deal counts for the dealer holding its lead, on the day that dealer got it; else unlinked.
    holders = {(d.lead_id): (d.dealer_id, d.delivered_at) for d in current if d.status == "delivered"}
    won_by: dict[tuple[str, Any], list[Decimal]] = defaultdict(list)
    for deal in (deal for deal in deals if deal.stage == "Closed Won"):
        amount = deal.amount if deal.amount is not None else Decimal(0)
        if deal.lead_id in holders:
            dealer_id, delivered = holders[deal.lead_id]
            won_by[(dealer_id, as_utc(delivered).astimezone(BRT).date())].append(amount)
            continue
        won = [as_utc(m.changed_at) for m in moves if m.deal_id == deal.deal_id and m.stage == "Closed Won"]
        won_at = min(won) if won else as_utc(deal.modified_time)
        won_by[("unlinked", won_at.astimezone(BRT).date())].append(amount)
    dealers = []
    for (dealer_id, day), rows in sorted(per_day.items()):
        minutes = sorted(max((t - d).total_seconds(), 0) / 60 for _, t, d, _ in rows if t is not None)
        within = sum(1 for _, t, d, _ in rows if t is not None and t <= d + SLA)  # every dealer: 30 min
        won_deals = won_by.pop((dealer_id, day), [])
        dealers.append({
            "dealer_id": dealer_id, "day": day, "leads_received": len(rows),
            "leads_accepted": len(minutes), "leads_with_sla": len(rows), "accepted_within_sla": within,
            "median_minutes_to_accept": _quantile(minutes, 0.5),
            "p90_minutes_to_accept": _quantile(minutes, 0.9),
            "rerouted_away": sum(1 for w, *_ in rows if w), "leads_sold": sum(1 for *_, s in rows if s),
            "conversion": round(sum(1 for *_, s in rows if s) / len(rows), 4),
            "deals_won": len(won_deals), "won_amount": sum(won_deals, Decimal(0)),
            "deal_conversion": round(len(won_deals) / len(rows), 4),
        })  # fmt: skip
    for (dealer_id, day), won_deals in won_by.items():
        assert dealer_id == "unlinked", "a holder's deal on a day it got no lead"
        dealers.append({
            "dealer_id": dealer_id, "day": day, "leads_received": 0, "leads_accepted": 0,
            "leads_with_sla": 0, "accepted_within_sla": 0, "median_minutes_to_accept": None,
            "p90_minutes_to_accept": None, "rerouted_away": 0, "leads_sold": 0, "conversion": None,
            "deals_won": len(won_deals), "won_amount": sum(won_deals, Decimal(0)), "deal_conversion": None,
        })  # fmt: skip
    dealers.sort(key=lambda row: (row["dealer_id"], row["day"]))
    furthest: dict[str, int] = {}
    received: dict[str, datetime] = {}
    for change in changes:
        furthest[change.lead_id] = max(furthest.get(change.lead_id, 0), FUNNEL.get(change.status, 0))
        if change.status == "received":
            received[change.lead_id] = as_utc(change.at)
    funnel: dict[tuple[Any, ...], list[int]] = defaultdict(lambda: [0] * 6)
    for lead_id, at in received.items():
        profile = profiles.get(lead_id) or {}
        key = (at.astimezone(BRT).date(), profile.get("state"), profile.get("model"), sources.get(lead_id))
        counts = funnel[key]
        for stage in range(furthest[lead_id] + 1):
            counts[stage] += 1
    stages = ("received", "delivered", "accepted", "contacted", "qualified", "sold")
    rows = [
        {
            "received_date": key[0],
            "state": key[1],
            "model": key[2],
            "source": key[3],
            **dict(zip(stages, counts, strict=True)),
        }
        for key, counts in sorted(funnel.items(), key=lambda item: str(item[0]))
    ]
    return dealers, rows


async def _profiles(session: Any) -> list[tuple[str, dict[str, Any] | None]]:
    return [(row.lead_id, row.routing_profile) for row in (await session.scalars(select(Lead))).all()]


def _quantile(values: list[float], fraction: float) -> float | None:
    """PERCENTILE_CONT: linear interpolation between the nearest two."""
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 4)
    position = fraction * (len(values) - 1)
    low = int(position)
    high = min(low + 1, len(values) - 1)
    return round(values[low] + (values[high] - values[low]) * (position - low), 4)
