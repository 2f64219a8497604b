"""The whole system in one test process: simulators and API over HTTP, a worker, the dev server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI
from google.cloud.bigquery import ScalarQueryParameter
from temporalio.client import Client, WorkflowHandle

from api.app import create_app
from contracts.leads import LeadDistributionResult
from core.constants import lead_workflow_id
from core.settings import Settings, WorkerRole
from db.engine import create_engine, session_factory
from db.rules import RulesFile, apply_rules
from simulators import SimulatorConfig
from simulators import create_app as create_simulators
from tests.support import eventually, port_of, reserved_port, serve
from warehouse.errors import WarehouseUnavailable
from warehouse.landing import Warehouse
from workers.main import role_workers
from workflows.lead_distribution import LeadDistributionWorkflow

# When the deals tests create were last modified in Zoho: before any change a test sends.
DEAL_CREATED = "2026-01-05T09:00:00-03:00"

WEBHOOK_SECRET = "test-webhook-secret"
ROOT = Path(__file__).resolve().parents[1]
READ_TOKEN = "test-read-token"
VTEX_ACCOUNT = "teststore"
VTEX_APP_TOKEN = "test-vtex-app-token"
VTEX_HOOK_SECRET = "test-vtex-hook-secret"
FINAL = {"delivered", "unrouted", "failed"}


def test_rules(sims_url: str) -> RulesFile:
    """Dealers of every CRM kind, reachable on the simulators."""

    def rest(dealer_id: str, **routing: Any) -> dict[str, Any]:
        return {
            "id": dealer_id,
            "name": dealer_id,
            "crm": {"kind": "rest", "url": f"{sims_url}/dealer-rest/{dealer_id}"},
            "routing": {"daily_capacity": 100, **routing},
            "field_mapping": {
                "external_id": "id",
                "first_name": "First_Name",
                "last_name": "Last_Name",
                "email": "Email",
                "vehicle_model": "Modelo_de_Interesse",
                "source": "=zoho-crm",
            },
        }

    soap = {
        "id": "soap-rj",
        "name": "soap-rj",
        "crm": {"kind": "soap", "url": f"{sims_url}/dealer-soap/soap-rj?wsdl"},
        "routing": {"states": ["RJ"], "daily_capacity": 100},
        "field_mapping": {"Nome": "First_Name", "Sobrenome": "Last_Name", "UF": "State", "Origem": "=Zoho"},
    }
    return RulesFile.model_validate(
        {
            "dealers": [
                rest("rest-sp-a", states=["SP"], priority=10),
                rest("rest-sp-b", states=["SP"], priority=20),
                rest("rest-mg", states=["MG"]),
                soap,
            ]
        }
    )


@dataclass
class Hub:
    settings: Settings
    client: Client
    api_url: str
    sims_url: str
    http: httpx.AsyncClient
    api: FastAPI | None = None  # the API's app, served in this process

    async def create_lead(self, **fields: Any) -> str:
        """A lead in the Zoho simulator (no webhook yet); returns its id."""
        response = await self.http.post(f"{self.sims_url}/_control/zoho/leads", json=fields)
        response.raise_for_status()
        return str(response.json()["lead"]["id"])

    async def post_webhook(
        self, lead_id: str, *, form: bool = True, secret: str = WEBHOOK_SECRET
    ) -> httpx.Response:
        """The lead webhook as Zoho sends it: merge fields, shared secret in a custom header."""
        headers = {self.settings.zoho_webhook_secret_header: secret}
        url = f"{self.api_url}/webhooks/zoho/leads"
        if form:
            return await self.http.post(
                url, data={"lead_id": lead_id, "lead_source": "Site"}, headers=headers
            )
        return await self.http.post(url, json={"lead_id": lead_id}, headers=headers)

    async def lead(self, lead_id: str) -> dict[str, Any] | None:
        response = await self.http.get(
            f"{self.api_url}/v1/leads/{lead_id}", headers={"Authorization": f"Bearer {READ_TOKEN}"}
        )
        return response.json() if response.status_code == 200 else None

    async def wait_for_status(self, lead_id: str, *statuses: str, timeout: float = 60) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            lead = await self.lead(lead_id)
            return lead if lead and lead["status"] in statuses else None

        return await eventually(check, timeout=timeout)

    async def wait_for_awaiting(self, lead_id: str) -> dict[str, Any]:
        async def check() -> dict[str, Any] | None:
            lead = await self.lead(lead_id)
            return lead if lead and (lead["detail"] or "").startswith("awaiting assign_dealer") else None

        return await eventually(check)

    async def create_deal(self, **fields: Any) -> str:
        """A deal in the Zoho simulator; returns its id. Last modified long ago unless ``Modified_Time``
        says otherwise: the webhooks tests compose are then newer than Zoho's record, as Zoho's own are
        (the hub keeps a record newer than a webhook as the deal's state)."""
        fields.setdefault("Modified_Time", DEAL_CREATED)
        response = await self.http.post(f"{self.sims_url}/_control/zoho/deals", json=fields)
        response.raise_for_status()
        return str(response.json()["deal"]["id"])

    async def post_deal_webhook(self, fields: dict[str, Any], *, form: bool = True) -> httpx.Response:
        """A deal-stage webhook as Zoho's workflow rule sends it."""
        headers = {self.settings.zoho_webhook_secret_header: WEBHOOK_SECRET}
        url = f"{self.api_url}/webhooks/zoho/opportunities"
        if form:
            return await self.http.post(url, data=fields, headers=headers)
        return await self.http.post(url, json=fields, headers=headers)

    async def opportunity(self, deal_id: str) -> dict[str, Any] | None:
        response = await self.http.get(
            f"{self.api_url}/v1/opportunities/{deal_id}", headers={"Authorization": f"Bearer {READ_TOKEN}"}
        )
        return response.json() if response.status_code == 200 else None

    async def wait_for_modified_time(
        self, deal_id: str, modified_time: str, timeout: float = 60
    ) -> dict[str, Any]:
        """The opportunity once the database holds the state of ``modified_time``."""
        wanted = datetime.fromisoformat(modified_time)

        async def check() -> dict[str, Any] | None:
            deal = await self.opportunity(deal_id)
            return deal if deal and datetime.fromisoformat(deal["modified_time"]) >= wanted else None

        return await eventually(check, timeout=timeout)

    async def counters(self) -> dict[str, Any]:
        return dict((await self.http.get(f"{self.sims_url}/_control/counters")).json())

    async def dealer_leads(self, dealer_id: str) -> dict[str, Any]:
        return dict((await self.http.get(f"{self.sims_url}/_control/dealers/{dealer_id}/leads")).json())

    async def fault(self, **spec: Any) -> None:
        (await self.http.post(f"{self.sims_url}/_control/faults", json=spec)).raise_for_status()

    async def create_order(self, **overrides: Any) -> str:
        """An order in the VTEX simulator (no hook yet); returns its id."""
        response = await self.http.post(
            f"{self.sims_url}/_control/vtex/orders", json={"overrides": overrides}
        )
        response.raise_for_status()
        return str(response.json()["order"]["orderId"])

    async def move_order(self, order_id: str, *states: str, delivery: str = "in_order") -> dict[str, Any]:
        """Move the order through ``states``; the simulator sends the hooks as ``delivery`` says."""
        response = await self.http.post(
            f"{self.sims_url}/_control/vtex/orders/{order_id}/states",
            json={"states": list(states), "delivery": delivery},
        )
        response.raise_for_status()
        return dict(response.json())

    async def post_order_hook(self, payload: dict[str, Any], **headers: str) -> httpx.Response:
        """An Orders hook as VTEX delivers it, with the configured secret header unless given."""
        sent = {self.settings.vtex_hook_secret_header: VTEX_HOOK_SECRET, **headers}
        return await self.http.post(f"{self.api_url}/webhooks/vtex/orders", json=payload, headers=sent)

    def warehouse(self) -> Warehouse:
        return Warehouse.from_settings(self.settings)

    async def bronze_counts(self, table: str) -> tuple[int, int]:
        """``count(*)`` and ``count(distinct event_key)`` of a bronze table."""
        warehouse = self.warehouse()
        try:
            rows = await warehouse.query(
                "select count(*) as n, count(distinct event_key) as keys"
                f" from `{warehouse.table_id(warehouse.layers.bronze, table)}`"
            )
        finally:
            await warehouse.aclose()
        return int(rows[0]["n"]), int(rows[0]["keys"])

    async def bronze(self, table: str, order_id: str) -> list[dict[str, Any]]:
        """Rows of ``bronze.<table>`` for one order, oldest change first."""
        warehouse = self.warehouse()
        try:
            return await warehouse.query(
                f"select * from `{warehouse.table_id(warehouse.layers.bronze, table)}`"
                " where entity_id = @id order by source_updated_at, ingested_at",
                [ScalarQueryParameter("id", "STRING", order_id)],
            )
        except WarehouseUnavailable:
            return []  # not created yet
        finally:
            await warehouse.aclose()

    def handle(self, lead_id: str) -> WorkflowHandle[LeadDistributionWorkflow, LeadDistributionResult]:
        return self.client.get_workflow_handle_for(LeadDistributionWorkflow.run, lead_workflow_id(lead_id))

    async def count_workflows(self, query: str) -> int:
        return (await self.client.count_workflows(query)).count


async def contacted_event(hub: Hub, lead_id: str, dealer_id: str) -> bool:
    """Whether the subscribers got the lead's "contacted" at ``dealer_id``."""
    events = (await hub.http.get(f"{hub.sims_url}/_control/events/portal")).json()["events"]
    return any(
        e["type"] == "LeadStatusAtualizado"
        and (e["data"]["lead_id"], e["data"]["dealer_id"], e["data"]["status"])
        == (lead_id, dealer_id, "contacted")
        for e in events
    )


def hub_settings(
    database_url: str, temporal_address: str, sims_url: str, task_queue: str, **extra: Any
) -> Settings:
    values: dict[str, Any] = {
        "environment": "test",
        "database_url": database_url,
        "temporal_address": temporal_address,
        "leads_task_queue": task_queue,
        "opportunities_task_queue": f"{task_queue}-opportunities",
        "opportunity_batch_window_seconds": 1.0,
        "zoho_api_base_url": f"{sims_url}/zoho",
        "zoho_accounts_url": f"{sims_url}/zoho",
        "zoho_webhook_secret": WEBHOOK_SECRET,
        "read_api_token": READ_TOKEN,
        "event_subscribers": [f"{sims_url}/events/portal"],
        "dealer_api_keys": {d: f"key-{d}" for d in ("rest-sp-a", "rest-sp-b", "rest-mg")},
        "dealer_delivery_attempt_timeout_seconds": 10,
        "assign_dealer_deadline_seconds": 600,
        "vtex_account": VTEX_ACCOUNT,
        "vtex_api_base_url": f"{sims_url}/vtex",
        "vtex_app_token": VTEX_APP_TOKEN,
        "vtex_hook_secret": VTEX_HOOK_SECRET,
        "vtex_orders_task_queue": f"{task_queue}-vtex-orders",
        "vtex_api_task_queue": f"{task_queue}-vtex-api",
        "vtex_order_final_linger_seconds": 2.0,
        "bigquery_timeout_seconds": 5.0,
        "dbt_task_queue": f"{task_queue}-dbt",
        "dbt_builds_enabled": False,  # the dbt tests turn builds on
        **extra,
    }
    return Settings(**values)


def environment_of(settings: Settings) -> dict[str, str]:
    """The settings as HUB_* variables, for a worker started as a separate process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump(mode="json").items():
        secret = getattr(settings, name)
        if hasattr(secret, "get_secret_value"):
            value = secret.get_secret_value()
        elif name in ("dealer_api_keys", "dealer_webhook_secrets", "payload_keys"):
            value = {key: each.get_secret_value() for key, each in secret.items()}
        if isinstance(value, list | dict):
            value = json.dumps(value)
        env[f"HUB_{name.upper()}"] = str(value)
    return env


@asynccontextmanager
async def running_hub(
    client: Client,
    database_url: str,
    task_queue: str,
    *,
    worker: bool = True,
    role: WorkerRole = "all",
    rules: Callable[[str], RulesFile] = test_rules,
    simulator: dict[str, Any] | None = None,
    **settings_extra: Any,
) -> AsyncIterator[Hub]:
    """Start simulators (``simulator`` overrides their config), API and (unless ``worker=False``) a
    worker of ``role``, with the dealers of ``rules(simulators_url)``."""
    sims_socket, api_socket = reserved_port(), reserved_port()
    sims_port, api_port = port_of(sims_socket), port_of(api_socket)
    sims_url = f"http://127.0.0.1:{sims_port}"
    sims_config = SimulatorConfig(
        public_base_url=sims_url,
        api_url=f"http://127.0.0.1:{api_port}",
        zoho_webhook_secret=WEBHOOK_SECRET,
        vtex_account=VTEX_ACCOUNT,
        vtex_app_token=VTEX_APP_TOKEN,
        vtex_hook_secret=VTEX_HOOK_SECRET,
        **(simulator or {}),
    )
    target = client.service_client.config.target_host
    hook_url = f"http://127.0.0.1:{api_port}/webhooks/vtex/orders"
    settings = hub_settings(
        database_url, target, sims_url, task_queue, **{"vtex_hook_url": hook_url, **settings_extra}
    )
    engine = create_engine(database_url)
    await apply_rules(session_factory(engine), rules(sims_url))
    await engine.dispose()
    async with AsyncExitStack() as stack:
        await stack.enter_async_context(serve(create_simulators(sims_config), sims_socket))
        api = create_app(settings, temporal=client)
        api_url = await stack.enter_async_context(serve(api, api_socket))
        if worker:
            workers = await stack.enter_async_context(role_workers(client, settings, role))
            for each in workers:
                await stack.enter_async_context(each)
        http = await stack.enter_async_context(httpx.AsyncClient(timeout=30))
        yield Hub(settings=settings, client=client, api_url=api_url, sims_url=sims_url, http=http, api=api)
        await asyncio.sleep(0)


def start_worker_process(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """``python -m workers.main`` as its own process (to be killed), its output appended to ``log``."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "workers.main"], cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT
        )
