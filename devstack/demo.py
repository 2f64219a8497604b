"""Demo: realistic Zoho leads sent as webhooks through the running stack, and what became of each."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx
from temporalio.client import Client, WorkflowExecutionStatus

from contracts.leads import ASSIGN_DEALER_UPDATE, AssignDealerInput
from core.constants import LEAD_STATUS, lead_workflow_id
from core.settings import Settings
from core.temporal import connect
from devstack.demo_gold import run_gold_demo
from devstack.demo_history import finish_history, start_history
from devstack.demo_orders import run_order_demo
from devstack.demo_sla import send_sla_lead, show_night_lead, show_sla_lead
from devstack.demo_syncs import run_sync_demo

FINAL = {"delivered", "unrouted", "failed"}
DEMO_LEADS: list[dict[str, str]] = [
    {"State": "SP", "City": "São Paulo", "Modelo_de_Interesse": "Onix"},
    {"State": "SP", "City": "São Paulo", "Modelo_de_Interesse": "Tracker"},
    {"State": "SP", "City": "Campinas", "Modelo_de_Interesse": "Equinox"},
    {"State": "RJ", "City": "Rio de Janeiro", "Modelo_de_Interesse": "Spin"},
    {"State": "MG", "City": "Belo Horizonte", "Modelo_de_Interesse": "S10"},
    {"State": "BA", "City": "Salvador", "Modelo_de_Interesse": "Onix"},  # no dealer covers BA
]
SUPPORT_CHOICE = "dealer-sp-interior"  # the dealer support assigns to the lead nobody covers


@dataclass
class DemoLead:
    lead_id: str
    where: str
    webhook_status: int
    status: str = "?"
    dealer_id: str = ""
    note: str = ""


async def run_demo(settings: Settings, api_url: str, simulators_url: str, ui_url: str) -> bool:
    """Send the demo leads, follow each to its end, print a table. True if every lead was delivered and
    accepted, and the SLA and night leads went as their dealers' rules say."""
    headers = {"Authorization": f"Bearer {settings.read_api_token.get_secret_value()}"}
    client = await connect(settings)
    history = await start_history(client, settings)  # lands while the rest of the demo runs
    async with httpx.AsyncClient(timeout=15, headers=headers) as http:
        sla_lead_id = await send_sla_lead(http, simulators_url)
        leads = [await _send(http, simulators_url, fields, i) for i, fields in enumerate(DEMO_LEADS)]
        print(f"\nSent {len(leads)} Zoho lead webhooks; following them...", flush=True)
        await asyncio.gather(*(_follow(http, client, api_url, simulators_url, lead) for lead in leads))
        counters = (await http.get(f"{simulators_url}/_control/counters")).json()

    print(f"\n{'lead id':<21} {'where / model':<34} {'webhook':<8} {'status':<10} {'dealer':<20} note")
    for lead in leads:
        print(
            f"{lead.lead_id:<21} {lead.where:<34} {lead.webhook_status:<8} {lead.status:<10} "
            f"{lead.dealer_id:<20} {lead.note}"
        )
    created = sum(d.get("created", 0) for d in counters.get("dealers", {}).values())
    zoho = counters.get("zoho", {})
    events = sum(subscriber.get("received", 0) for subscriber in counters.get("events", {}).values())
    print(
        f"\nDealer CRMs created {created} leads; Zoho got {zoho.get('lead_updates', 0)} updates "
        f'({zoho.get("updates_without_trigger", 0)} without "trigger": []); '
        f"subscribers got {events} signed events."
    )
    print(
        f"Read any lead's history in the Temporal Web UI: {ui_url}/namespaces/{settings.temporal_namespace}"
        f'/workflows/{lead_workflow_id(leads[0].lead_id)}  (or filter: LeadStatus="delivered")'
    )
    night_ok = await show_night_lead(settings)
    deal_ok = await _demo_deal(settings, api_url, simulators_url, leads[0].lead_id)
    orders_ok = await run_order_demo(settings, simulators_url)
    syncs_ok = await run_sync_demo(settings)
    history_ok = await finish_history(history)
    gold_ok = await run_gold_demo(settings)
    async with httpx.AsyncClient(timeout=15, headers=headers) as http:
        sla_ok = await show_sla_lead(http, api_url, sla_lead_id)  # its SLA ran during the rest
    flows_ok = deal_ok and orders_ok and syncs_ok and history_ok and gold_ok and sla_ok and night_ok
    return flows_ok and all(lead.status == "accepted" for lead in leads)


DEAL_STAGES = ["Needs Analysis", "Proposal/Price Quote", "Negotiation/Review", "Closed Won"]


async def _demo_deal(settings: Settings, api_url: str, simulators_url: str, lead_id: str) -> bool:
    """The first demo lead converted to a deal in Zoho, which moves through the pipeline to a win,
    replicated stage by stage (gold counts the win for the dealer holding the lead)."""
    headers = {"Authorization": f"Bearer {settings.read_api_token.get_secret_value()}"}
    async with httpx.AsyncClient(timeout=15, headers=headers) as http:
        created = await http.post(
            f"{simulators_url}/_control/zoho/leads/{lead_id}/convert", json={"Stage": "Qualification"}
        )
        created.raise_for_status()
        deal = created.json()["deal"]
        print(
            f"\nLead {lead_id} converted in Zoho: deal {deal['id']} ({deal['Deal_Name']}) moves through"
            f" {len(DEAL_STAGES)} stages ..."
        )
        for stage in DEAL_STAGES:
            body = {"stage": stage, "modified_by": "Carla Mendes", "send_webhook": True}
            moved = await http.post(f"{simulators_url}/_control/zoho/deals/{deal['id']}/stage", json=body)
            moved.raise_for_status()
        for _ in range(150):
            response = await http.get(f"{api_url}/v1/opportunities/{deal['id']}")
            if response.status_code == 200 and response.json()["stage"] == DEAL_STAGES[-1]:
                break
            await asyncio.sleep(0.2)
        else:
            print("  not replicated after 30 s")
            return False
    replicated = response.json()
    print(
        f"Central database: stage {replicated['stage']}, amount {replicated['amount']},"
        f" converted from lead {replicated['lead_id'] or '- (none found)'}; history:"
    )
    for change in replicated["stage_history"]:
        print(f"  {change['changed_at']}  {change['from_stage'] or '-':<22} -> {change['to_stage']:<22} "
              f"by {change['changed_by']}")  # fmt: skip
    return True


async def _reported(http: httpx.AsyncClient, api_url: str, lead_id: str) -> str:
    """The lead's status once the dealer's report reached the portal (a few seconds at most)."""
    status = "delivered"
    for _ in range(50):
        status = (await http.get(f"{api_url}/v1/leads/{lead_id}")).json()["status"]
        if status != "delivered":
            break
        await asyncio.sleep(0.2)
    return status


async def _send(http: httpx.AsyncClient, simulators_url: str, fields: dict[str, str], index: int) -> DemoLead:
    fmt = "form" if index % 2 == 0 else "json"
    response = await http.post(
        f"{simulators_url}/_control/zoho/leads", json={**fields, "send_webhook": True, "webhook_format": fmt}
    )
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    lead = body.get("lead", body)
    webhook = body.get("webhook") or {}
    where = f"{fields['City']}/{fields['State']} {fields['Modelo_de_Interesse']}"
    return DemoLead(lead_id=str(lead["id"]), where=where, webhook_status=int(webhook.get("status_code", 0)))


async def _passed_on(client: Client, lead_id: str, status: str) -> None:
    """Until the lead's run ended, or shows ``status`` with nothing under way: a dealer whose CRM is read
    is read on after it accepts (its run goes on for hours), once the acceptance went to Zoho."""
    handle = client.get_workflow_handle(lead_workflow_id(lead_id))
    while True:
        described = await handle.describe()
        raw = described.raw_description
        if described.status != WorkflowExecutionStatus.RUNNING:
            return
        idle = not raw.pending_activities and not raw.HasField("pending_workflow_task")
        if idle and described.typed_search_attributes.get(LEAD_STATUS) == status:
            return
        await asyncio.sleep(0.2)


async def _follow(
    http: httpx.AsyncClient, client: Client, api_url: str, simulators_url: str, lead: DemoLead
) -> None:
    assigned = False
    for _ in range(300):
        response = await http.get(f"{api_url}/v1/leads/{lead.lead_id}")
        if response.status_code == 200:
            body = response.json()
            lead.status, lead.dealer_id = body["status"], body.get("dealer_id") or ""
            if lead.status in FINAL:
                if lead.status == "delivered":
                    # What the dealer's salesperson does: accept the lead, in time. The dealer's CRM
                    # reports it to the hub's dealer webhook; Zoho's Lead_Status follows.
                    accept = f"{simulators_url}/_control/dealers/{lead.dealer_id}/leads/{lead.lead_id}/status"
                    (await http.post(accept, json={"status": "accepted"})).raise_for_status()
                    lead.status = await _reported(http, api_url, lead.lead_id)
                    lead.note = lead.note or "accepted by the dealer in time"
                # The Zoho write-back and the event follow the final status: wait for them too.
                await _passed_on(client, lead.lead_id, lead.status)
                return
            if not assigned and (body.get("detail") or "").startswith("awaiting assign_dealer"):
                # What a support person does in the Temporal UI or CLI: decide the dealer.
                handle = client.get_workflow_handle(lead_workflow_id(lead.lead_id))
                await handle.execute_update(
                    ASSIGN_DEALER_UPDATE, AssignDealerInput(SUPPORT_CHOICE, "demo-support")
                )
                lead.note = f"no dealer covers it; support assigned {SUPPORT_CHOICE}"
                assigned = True
        await asyncio.sleep(0.2)
    lead.note = lead.note or "still in progress after 60 s"
