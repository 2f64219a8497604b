"""Nothing acknowledged is dropped: an event a partner refuses for good is parked in its run (search
attribute ``Parked``, memo, metric) and lands once after ``hub parked redrive``, in every flow."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus

from cli.command import Context
from cli.parked import redrive_run
from core.constants import vtex_order_workflow_id
from tests.cli.conftest import HubCli
from tests.hub import Hub
from tests.support import eventually
from warehouse.tables import VTEX_ORDERS


async def revoke(hub: Hub, partner: str, revoked: bool = True) -> None:
    response = await hub.http.post(
        f"{hub.sims_url}/_control/credentials", json={"target": partner, "revoked": revoked}
    )
    response.raise_for_status()


async def parked_run(hub: Hub, workflow_id: str, partner: str) -> bool:
    query = f"WorkflowId = '{workflow_id}' AND Parked = '{partner}' AND ExecutionStatus = 'Running'"
    return await hub.count_workflows(query) == 1


async def redrive_parked(hub: Hub, hub_cli: HubCli, workflow_id: str, partner: str) -> None:
    listed = await hub_cli(hub.settings, "--json", "parked", "list", "--partner", partner)
    assert listed.code == 0, listed.err
    [row] = [row for row in listed.lines("parked") if row["workflow_id"] == workflow_id]
    assert row["partner"] == partner and "refused" in row["reason"]
    done = await hub_cli(hub.settings, "--json", "parked", "redrive", "--partner", partner, "--yes")
    assert done.code == 0, done.err
    assert {r["workflow_id"]: r["action"] for r in done.lines("parked")}[workflow_id] == "redriven"


async def test_a_lead_read_refused_by_zoho_is_parked_then_delivered_once(hub: Hub, hub_cli: HubCli) -> None:
    lead_id = await hub.create_lead(State="MG", City="Betim")
    await revoke(hub, "zoho")
    await hub.post_webhook(lead_id)
    await eventually(lambda: parked_run(hub, f"lead-{lead_id}", "zoho"))
    lead = await hub.lead(lead_id)
    assert lead is not None and lead["status"] == "received"  # not "failed as not found"

    # Redriven before the cause is fixed: the read is refused again, and the command says so.
    early = await hub_cli(hub.settings, "--json", "parked", "redrive", "--partner", "zoho", "--yes")
    assert early.code == 1
    action = {r["workflow_id"]: r["action"] for r in early.lines("parked")}[f"lead-{lead_id}"]
    assert action.startswith("still parked: ") and "refused" in action
    await eventually(lambda: parked_run(hub, f"lead-{lead_id}", "zoho"))

    await revoke(hub, "zoho", revoked=False)
    await redrive_parked(hub, hub_cli, f"lead-{lead_id}", "zoho")
    result = await hub.handle(lead_id).result()
    assert (result.status, result.dealer_id) == ("delivered", "rest-mg")
    assert (await hub.dealer_leads("rest-mg"))["creates_by_external_id"] == {lead_id: 1}
    assert not await parked_run(hub, f"lead-{lead_id}", "zoho")


async def parked_deal_change(hub: Hub, name: str) -> tuple[str, str]:
    """A deal whose stage move Zoho refuses to serve (credentials revoked): its run parks the change.
    The deal's id, and the Modified_Time of the move."""
    deal_id = await hub.create_deal(Deal_Name=name)
    await revoke(hub, "zoho")
    moved = await hub.http.post(
        f"{hub.sims_url}/_control/zoho/deals/{deal_id}/stage",
        json={"stage": "Negotiation/Review", "partial": True},
    )
    assert moved.json()["webhook"]["status_code"] == 202
    await eventually(lambda: parked_run(hub, f"opportunity-{deal_id}", "zoho"))
    return deal_id, str(moved.json()["deal"]["Modified_Time"])


async def test_a_deal_change_refused_by_zoho_is_parked_then_applied_once(hub: Hub, hub_cli: HubCli) -> None:
    deal_id, moved_at = await parked_deal_change(hub, "Frota 8 Tracker")
    assert await hub.opportunity(deal_id) is None  # held, not dropped

    await revoke(hub, "zoho", revoked=False)
    await redrive_parked(hub, hub_cli, f"opportunity-{deal_id}", "zoho")
    deal = await hub.wait_for_modified_time(deal_id, moved_at)
    assert deal["stage"] == "Negotiation/Review"
    assert [c["to_stage"] for c in deal["stage_history"]] == ["Negotiation/Review"]


async def test_a_parked_deal_run_cancelled_by_hand_is_redriven_with_the_change_it_held(
    hub: Hub, hub_cli: HubCli
) -> None:
    """Support cancels a parked run in the Web UI: the run closes with the change it held, and the
    redrive of broken-off runs finds it like a terminated one and delivers the change again."""
    since = datetime.now(UTC).isoformat()
    deal_id, moved_at = await parked_deal_change(hub, "Frota 4 Onix")
    workflow_id = f"opportunity-{deal_id}"
    handle = hub.client.get_workflow_handle(workflow_id)
    await handle.cancel()

    async def canceled() -> bool:
        return (await handle.describe()).status == WorkflowExecutionStatus.CANCELED

    await eventually(canceled)
    await revoke(hub, "zoho", revoked=False)
    done = await hub_cli(hub.settings, "opportunities", "redrive", "--since", since, "--json", "--yes")
    assert done.code == 0, done.err
    [row] = [r for r in done.lines("deal") if r["workflow_id"] == workflow_id]
    assert (row["ended"], row["action"]) == ("canceled", "redriven (1 change(s) delivered again)")
    deal = await hub.wait_for_modified_time(deal_id, moved_at)
    assert deal["stage"] == "Negotiation/Review"


async def test_a_malformed_deal_record_is_parked_not_retried_forever(hub: Hub, hub_cli: HubCli) -> None:
    deal_id = await hub.create_deal(Deal_Name="Frota 3 Spin", Probability="high")
    sent = await hub.http.post(
        f"{hub.sims_url}/_control/zoho/deals/{deal_id}/webhook", json={"partial": True}
    )
    assert sent.json()["status_code"] == 202
    await eventually(lambda: parked_run(hub, f"opportunity-{deal_id}", "zoho"))
    described = await hub.client.get_workflow_handle(f"opportunity-{deal_id}").describe()
    assert not described.raw_description.pending_activities  # failed for good, not retrying

    # Someone fixes the record in Zoho (a stage change sets its probability), then support redrives.
    fixed = await hub.http.post(
        f"{hub.sims_url}/_control/zoho/deals/{deal_id}/stage",
        json={"stage": "Proposal/Price Quote", "send_webhook": False},
    )
    await redrive_parked(hub, hub_cli, f"opportunity-{deal_id}", "zoho")
    deal = await hub.wait_for_modified_time(deal_id, fixed.json()["deal"]["Modified_Time"])
    assert (deal["stage"], deal["probability"]) == ("Proposal/Price Quote", 75)


async def test_an_order_the_oms_refuses_is_parked_then_landed_once(hub: Hub, hub_cli: HubCli) -> None:
    order_id = await hub.create_order()
    await revoke(hub, "vtex")
    await hub.move_order(order_id, "payment-pending")
    workflow_id = vtex_order_workflow_id(order_id)
    await eventually(lambda: parked_run(hub, workflow_id, "vtex"))
    assert await hub.bronze(VTEX_ORDERS, order_id) == []

    await revoke(hub, "vtex", revoked=False)
    await redrive_parked(hub, hub_cli, workflow_id, "vtex")

    async def version_landed() -> list[dict[str, object]] | None:
        return await hub.bronze(VTEX_ORDERS, order_id) or None

    rows = await eventually(version_landed, timeout=60)
    assert len(rows) == 1
    assert not await parked_run(hub, workflow_id, "vtex")


async def restrict(hub: Hub, field: str, values: list[str] | None) -> None:
    """The Zoho org's admin restricts a picklist to ``values`` (None: lifts it)."""
    response = await hub.http.post(
        f"{hub.sims_url}/_control/zoho/picklists", json={"field": field, "values": values}
    )
    response.raise_for_status()


async def test_a_lead_outcome_zoho_refuses_is_parked_for_support_and_written_by_the_redrive(
    hub: Hub, hub_cli: HubCli
) -> None:
    """Zoho's admin removed "delivered" from Status_Distribuicao: the lead still reaches its dealer (its
    run does not wait on Zoho), the refused fields wait in the portal database, and once the value is
    back, ``hub parked redrive`` writes them. One Zoho will never take (the lead deleted) is discarded."""
    await restrict(hub, "Status_Distribuicao", ["received", "failed", "unrouted"])
    lead_id, gone_id = await delivered_lead(hub, "Contagem"), await delivered_lead(hub, "Betim")
    zoho = (await hub.http.get(f"{hub.sims_url}/_control/zoho/leads/{lead_id}")).json()["lead"]
    assert zoho.get("Status_Distribuicao") != "delivered"

    listed = await hub_cli(hub.settings, "--json", "parked", "list", "--partner", "zoho")
    assert listed.code == 0, listed.err
    rows = {row["lead_id"]: row for row in listed.lines("parked")}
    assert rows.keys() == {lead_id, gone_id}
    row = rows[lead_id]
    assert (row["workflow_id"], row["workflow_type"]) == (f"zoho-writeback-{lead_id}", "Zoho write-back")
    assert "INVALID_DATA" in row["reason"] and "Concessionaria_Id, Status_Distribuicao" in row["reason"]
    dropped = await hub_cli(hub.settings, "parked", "discard", gone_id)
    assert dropped.code == 0 and "Concessionaria_Id, Status_Distribuicao discarded" in dropped.out
    assert (await hub_cli(hub.settings, "parked", "discard", gone_id)).code == 1  # nothing left

    again = await hub_cli(hub.settings, "--json", "parked", "redrive", "--partner", "zoho", "--yes")
    assert again.code == 1  # still refused: it stays parked
    [outcome] = [r["action"] for r in again.lines("parked")]
    assert outcome.startswith("refused again") and "INVALID_DATA" in outcome

    await restrict(hub, "Status_Distribuicao", None)
    done = await hub_cli(hub.settings, "--json", "parked", "redrive", "--partner", "zoho", "--yes")
    assert done.code == 0, done.err
    assert [r["action"] for r in done.lines("parked")] == ["written"]
    zoho = (await hub.http.get(f"{hub.sims_url}/_control/zoho/leads/{lead_id}")).json()["lead"]
    assert (zoho["Status_Distribuicao"], zoho["Concessionaria_Id"]) == ("delivered", "rest-mg")
    after = await hub_cli(hub.settings, "parked", "list", "--partner", "zoho")
    assert after.code == 0 and "no parked events" in after.out


async def delivered_lead(hub: Hub, city: str) -> str:
    lead_id = await hub.create_lead(State="MG", City=city)
    await hub.post_webhook(lead_id)
    result = await hub.handle(lead_id).result()
    assert (result.status, result.dealer_id) == ("delivered", "rest-mg")
    return lead_id


async def test_parked_runs_are_listed_while_the_portal_database_is_away(hub: Hub, hub_cli: HubCli) -> None:
    away = hub.settings.model_copy(update={"database_url": "postgresql://hub@127.0.0.1:9/portal"})
    listed = await hub_cli(away, "parked", "list")
    assert listed.code == 1
    assert "the portal database could not be read" in listed.out and "no parked events" in listed.out
    dropped = await hub_cli(away, "parked", "discard", "5725767000000000001")
    assert dropped.code == 1 and "cannot reach the portal database" in dropped.err + dropped.out


async def test_a_limit_below_one_is_refused_before_anything_is_read(
    hub: Hub, hub_cli: HubCli, capsys: pytest.CaptureFixture[str]
) -> None:
    for limit in ("0", "-5"):
        with pytest.raises(SystemExit) as refused:
            await hub_cli(hub.settings, "parked", "list", "--limit", limit)
        assert refused.value.code == 2
        assert "must be 1 or more" in capsys.readouterr().err


async def subscriber_refuses(hub: Hub, refuses: bool) -> None:
    faults = f"{hub.sims_url}/_control/faults"
    if refuses:
        (await hub.http.post(faults, json={"target": "events/portal", "reject": True})).raise_for_status()
    else:
        (await hub.http.delete(f"{faults}/events/portal")).raise_for_status()


async def test_a_lead_event_the_subscriber_refuses_is_parked_for_support_and_sent_by_the_redrive(
    hub: Hub, hub_cli: HubCli
) -> None:
    """The car maker's portal refuses the hub's events for good (its schema changed, say): the lead still
    reaches its dealer, its event waits in the portal database, and once the portal takes events again,
    ``hub parked redrive`` sends it: the portal has it once. One no subscriber will take is discarded."""
    await subscriber_refuses(hub, True)
    lead_id, gone_id = await delivered_lead(hub, "Contagem"), await delivered_lead(hub, "Betim")

    async def both_parked() -> list[dict[str, Any]]:
        listed = await hub_cli(hub.settings, "--json", "parked", "list", "--partner", "subscribers")
        assert listed.code == 0, listed.err
        rows = listed.lines("parked")
        return rows if {row["lead_id"] for row in rows} == {lead_id, gone_id} else []

    rows = {row["lead_id"]: row for row in await eventually(both_parked)}
    row = rows[lead_id]
    assert (row["workflow_type"], row["partner"]) == ("lead event", "subscribers")
    assert row["workflow_id"] == f"event-redrive-{row['event_id']}"
    assert row["reason"].startswith("LeadDistribuidoComSucesso, http://127.0.0.1:") and "422" in row["reason"]
    dropped = await hub_cli(hub.settings, "parked", "discard-event", rows[gone_id]["event_id"])
    assert dropped.code == 0 and "discarded" in dropped.out
    assert (await hub_cli(hub.settings, "parked", "discard-event", rows[gone_id]["event_id"])).code == 1

    again = await hub_cli(hub.settings, "--json", "parked", "redrive", "--partner", "subscribers", "--yes")
    assert again.code == 1  # still refused: it stays parked
    [outcome] = [r["action"] for r in again.lines("parked")]
    assert outcome.startswith("refused again") and "422" in outcome

    await subscriber_refuses(hub, False)
    done = await hub_cli(hub.settings, "--json", "parked", "redrive", "--partner", "subscribers", "--yes")
    assert done.code == 0, done.err
    assert [r["action"] for r in done.lines("parked")] == ["delivered"]
    events = (await hub.http.get(f"{hub.sims_url}/_control/events/portal")).json()["events"]
    distributed = [e for e in events if e["type"] == "LeadDistribuidoComSucesso"]
    assert [e["data"]["lead_id"] for e in distributed] == [lead_id]
    after = await hub_cli(hub.settings, "parked", "list", "--partner", "subscribers")
    assert after.code == 0 and "no parked events" in after.out


class WentOnAsNew:
    """A parked run that, redriven, continued as new at once (its changes per run reached)."""

    async def signal(self, *args: Any) -> None:
        return None

    async def describe(self) -> Any:
        return type("Described", (), {"status": WorkflowExecutionStatus.CONTINUED_AS_NEW})()

    async def fetch_history_events(self) -> Any:
        for _ in ():
            yield _


async def test_a_redriven_run_that_went_on_as_a_new_one_counts_as_redriven() -> None:
    """It took the redrive with it: not "failed: the run continued_as_new", which made the command exit 1."""
    client = type("Client", (), {"get_workflow_handle": lambda self, *a, **k: WentOnAsNew()})()
    ctx = Context(settings=None, client=client, out=None)  # type: ignore[arg-type]
    assert await redrive_run(ctx, "opportunity-1", "run-1") == "redriven"
