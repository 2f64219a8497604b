"""Demo: the dealer's SLA. A lead its dealer does not accept in time moves to the next dealer; a lead
that arrives at night goes to the best dealer anyway, and its SLA starts when that dealer opens."""

from __future__ import annotations

import asyncio
import time
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx

from core.settings import Settings
from db import routing
from db.engine import one_off_sessions

# dealer-pr-curitiba (config/dealers.example.yaml) must accept within one minute; nobody accepts for it.
SLA_LEAD = {"State": "PR", "City": "Curitiba", "Modelo_de_Interesse": "Onix"}
SLA_DEALERS = ("dealer-pr-curitiba", "dealer-pr-londrina")  # where the lead goes first, then next
MOVE_WAIT_SECONDS = 240.0  # the one-minute SLA, then the withdrawal and the second delivery
# dealer-mg-bh, the only dealer in Minas Gerais, opens at 08:00 and must accept within 30 minutes.
NIGHT_LEAD = routing.LeadProfile(state="MG", city="Belo Horizonte", model="Onix")
FRIDAY = 4  # date.weekday()


async def send_sla_lead(http: httpx.AsyncClient, simulators_url: str) -> str:
    """Create the Curitiba lead in Zoho with its webhook; the rest of the demo runs while its SLA does."""
    response = await http.post(
        f"{simulators_url}/_control/zoho/leads", json={**SLA_LEAD, "send_webhook": True}
    )
    response.raise_for_status()
    created: dict[str, Any] = response.json()
    return str(created.get("lead", created)["id"])


async def show_sla_lead(http: httpx.AsyncClient, api_url: str, lead_id: str) -> bool:
    """Wait until the lead left the dealer that did not accept it and reached the next one; print both."""
    print(f"\nLead {lead_id} (Curitiba/PR) went to {SLA_DEALERS[0]}, which must accept within 1 minute "
          "and does not; waiting for the lead to move on...", flush=True)  # fmt: skip
    deadline = time.monotonic() + MOVE_WAIT_SECONDS
    lead: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = await http.get(f"{api_url}/v1/leads/{lead_id}")
        if response.status_code == 200:
            lead = response.json()
            went = [(d["dealer_id"], d["status"]) for d in lead["deliveries"]]
            if went == [(SLA_DEALERS[0], "withdrawn"), (SLA_DEALERS[1], "delivered")]:
                break
        await asyncio.sleep(1)
    else:
        print(f"  not moved on after {MOVE_WAIT_SECONDS:.0f} s: {lead.get('status')} {lead.get('detail')}")
        return False
    for delivery in lead["deliveries"]:
        print(f"  {delivery['dealer_id']:<20} {delivery['status']:<10} chosen: {delivery['reason']}")
        if delivery["withdrawal_reason"]:
            print(f"  {'':<31} withdrawn: {delivery['withdrawal_reason']} (its CRM: "
                  f"{delivery['withdrawal_at_crm']})")  # fmt: skip
    print(f"  status history: {' -> '.join(change['status'] for change in lead['history'])}")
    return True


async def show_night_lead(settings: Settings) -> bool:
    """Route a Belo Horizonte lead arriving next Friday at 23:10, claiming nothing: the best dealer is
    closed, takes it anyway, and must accept it by opening time plus its SLA."""
    zone = ZoneInfo(settings.business_timezone)
    at = datetime.combine(_next(FRIDAY, datetime.now(zone).date()), datetime.min.time(), zone)
    at += timedelta(hours=23, minutes=10)
    async with one_off_sessions(settings.database_url) as sessions:
        explained = await routing.explain(sessions, NIGHT_LEAD, at.date(), at)
    chosen = next((v for v in explained.verdicts if v.dealer_id == explained.chosen), None)
    if chosen is None or chosen.accept_by is None:
        print(f"\nA night lead from Belo Horizonte on {at:%a %d %b %H:%M}: no dealer with an SLA takes it")
        return False
    state = "open" if chosen.open_now else "closed"
    print(f"\nA lead from Belo Horizonte arriving {at:%a %d %b at %H:%M} (hub routing simulate --state MG "
          f"--model Onix --at {at.isoformat()}):\n  {chosen.dealer_id} is {state} and takes it anyway "
          f"({chosen.why});\n  its SLA starts at opening: accept by "
          f"{chosen.accept_by.astimezone(zone):%a %d %b %H:%M}.")  # fmt: skip
    return not chosen.open_now


def _next(weekday: int, today: date) -> date:
    return today + timedelta(days=(weekday - today.weekday()) % 7)
