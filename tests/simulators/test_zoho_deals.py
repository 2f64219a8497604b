"""Zoho Deals in-process: REST get/update, the stage-change control route, counters and reset."""

from __future__ import annotations

import itertools
import re
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest

from simulators.leads import BRT
from tests.simulators.conftest import FakeClock, zoho_token

ZOHO_TIME = r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}-03:00"
# The in-process app's API (http://api.test) cannot be reached: webhooks are tested over real HTTP.
NO_WEBHOOK = {"send_webhook": False}


async def new_deal(client: httpx.AsyncClient, **fields: object) -> dict[str, Any]:
    response = await client.post("/_control/zoho/deals", json=fields)
    assert response.status_code == 200, response.text
    deal: dict[str, Any] = response.json()["deal"]
    return deal


async def move(client: httpx.AsyncClient, deal_id: str, stage: str, **options: object) -> httpx.Response:
    return await client.post(f"/_control/zoho/deals/{deal_id}/stage", json={"stage": stage, **options})


async def shown(client: httpx.AsyncClient, deal_id: str) -> dict[str, Any]:
    response = await client.get(f"/_control/zoho/deals/{deal_id}")
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def counters(client: httpx.AsyncClient) -> dict[str, int]:
    zoho: dict[str, int] = (await client.get("/_control/counters")).json()["zoho"]
    return zoho


async def auth(client: httpx.AsyncClient) -> dict[str, str]:
    return {"Authorization": f"Zoho-oauthtoken {await zoho_token(client)}"}


async def test_create_deal_with_overrides(client: httpx.AsyncClient) -> None:
    deal = await new_deal(client, Deal_Name="Frota 12 S10 - Locadora Sul", Stage="Negotiation/Review")
    assert re.fullmatch(r"5725767\d{12}", deal["id"])
    assert (deal["Deal_Name"], deal["Stage"], deal["Probability"]) == (
        "Frota 12 S10 - Locadora Sul",
        "Negotiation/Review",
        90,
    )
    assert isinstance(deal["Amount"], float)
    assert set(deal["Account_Name"]) == set(deal["Contact_Name"]) == {"id", "name"}
    assert set(deal["Owner"]) == {"id", "name", "email"}
    assert re.fullmatch(ZOHO_TIME, deal["Modified_Time"])
    body = await shown(client, deal["id"])
    assert body["deal"] == deal
    assert body["updates"] == []
    assert body["stage_history"] == [
        {
            "stage": "Negotiation/Review",
            "modified_time": deal["Modified_Time"],
            "modified_by": deal["Modified_By"]["name"],
        }
    ]
    assert (await client.post("/_control/zoho/deals", json=[1])).status_code == 422


async def test_leads_and_deals_share_the_seeded_id_sequence(client: httpx.AsyncClient) -> None:
    lead = (await client.post("/_control/zoho/leads")).json()["lead"]
    deal = await new_deal(client)
    assert (lead["id"], deal["id"]) == ("5725767000000412001", "5725767000000412002")
    await client.post("/_control/reset")
    deal_again = await new_deal(client)
    lead_again = (await client.post("/_control/zoho/leads")).json()["lead"]
    assert (deal_again["id"], lead_again["id"]) == ("5725767000000412001", "5725767000000412002")
    # Deals draw from their own generator: creating one does not change the leads a seed gives.
    assert {k: deal_again[k] for k in ("Deal_Name", "Amount", "Account_Name")} == {
        k: deal[k] for k in ("Deal_Name", "Amount", "Account_Name")
    }
    assert (lead_again["First_Name"], lead_again["City"]) == (lead["First_Name"], lead["City"])


async def test_get_deal_requires_a_live_token(client: httpx.AsyncClient, clock: FakeClock) -> None:
    deal = await new_deal(client)
    url = f"/zoho/crm/v8/Deals/{deal['id']}"
    token = await zoho_token(client)
    for headers in ({}, {"Authorization": f"Bearer {token}"}, {"Authorization": "Zoho-oauthtoken 1000.x"}):
        refused = await client.get(url, headers=headers)
        assert refused.status_code == 401
        assert refused.json()["code"] == "INVALID_TOKEN"
    assert (await client.get(url, headers={"Authorization": f"Zoho-oauthtoken {token}"})).status_code == 200
    clock.advance(3600)
    assert (await client.get(url, headers={"Authorization": f"Zoho-oauthtoken {token}"})).status_code == 401
    refused_put = await client.put(url, json={"data": [{"Amount": 1}], "trigger": []})
    assert refused_put.status_code == 401
    assert (await counters(client))["deal_updates"] == 0


async def test_get_deal_any_version_and_204_for_unknown(client: httpx.AsyncClient) -> None:
    deal = await new_deal(client)
    headers = await auth(client)
    for version in ("v2", "v8"):
        response = await client.get(f"/zoho/crm/{version}/Deals/{deal['id']}", headers=headers)
        assert response.status_code == 200
        assert response.json() == {"data": [deal]}
    unknown = await client.get("/zoho/crm/v8/Deals/5725767000000999999", headers=headers)
    assert (unknown.status_code, unknown.content) == (204, b"")
    # A lead id is not a deal id.
    lead = (await client.post("/_control/zoho/leads")).json()["lead"]
    assert (await client.get(f"/zoho/crm/v8/Deals/{lead['id']}", headers=headers)).status_code == 204
    assert (await client.get(f"/zoho/crm/v9/Deals/{deal['id']}", headers=headers)).status_code == 404
    zoho = await counters(client)
    assert (zoho["deal_gets"], zoho["lead_gets"]) == (4, 0)


async def test_faults_target_zoho_deals_too(client: httpx.AsyncClient) -> None:
    deal = await new_deal(client)
    url = f"/zoho/crm/v8/Deals/{deal['id']}"
    headers = await auth(client)
    await client.post(
        "/_control/faults", json={"target": "zoho", "error_5xx_count": 1, "rate_limit_count": 1}
    )
    assert (await client.get(url, headers=headers)).status_code == 503
    limited = await client.put(url, json={"data": [{"Amount": 1}], "trigger": []}, headers=headers)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "1")
    assert (await client.get(url, headers=headers)).status_code == 200
    zoho = await counters(client)
    assert (zoho["faults_served"], zoho["deal_gets"], zoho["deal_updates"]) == (2, 1, 0)


async def test_update_merges_fields_and_counts_missing_trigger(client: httpx.AsyncClient) -> None:
    deal = await new_deal(client, Stage="Qualification")
    url = f"/zoho/crm/v8/Deals/{deal['id']}"
    headers = await auth(client)

    body = {"data": [{"Amount": 480000.5, "id": "1", "Modified_Time": "2000-01-01T00:00:00-03:00"}]}
    response = await client.put(url, json={**body, "trigger": []}, headers=headers)
    assert response.status_code == 200
    item = response.json()["data"][0]
    assert (item["code"], item["status"], item["details"]["id"]) == ("SUCCESS", "success", deal["id"])
    assert item["details"]["Modified_By"]["name"] == "Integration"
    assert item["details"]["Created_Time"] == deal["Created_Time"]

    # Without "trigger": counted; a new Stage brings its probability and enters the stage history.
    moved = await client.put(url, json={"data": [{"Stage": "Closed Lost"}]}, headers=headers)
    assert moved.status_code == 200
    zoho = await counters(client)
    assert (zoho["deal_updates"], zoho["updates_without_trigger"], zoho["lead_updates"]) == (2, 1, 0)

    body_shown = await shown(client, deal["id"])
    stored = body_shown["deal"]
    assert (stored["id"], stored["Amount"], stored["Stage"], stored["Probability"]) == (
        deal["id"],
        480000.5,
        "Closed Lost",
        0,
    )
    assert stored["Modified_By"] == {"id": "5725767000000318003", "name": "Integration"}
    assert stored["Modified_Time"] == moved.json()["data"][0]["details"]["Modified_Time"]
    times = [item["details"]["Modified_Time"], stored["Modified_Time"]]
    assert datetime.fromisoformat(deal["Modified_Time"]) < datetime.fromisoformat(times[0])
    assert datetime.fromisoformat(times[0]) < datetime.fromisoformat(times[1])
    assert [update["trigger_sent"] for update in body_shown["updates"]] == [True, False]
    assert body_shown["updates"][0]["fields"] == {"Amount": 480000.5}
    assert body_shown["updates"][1]["fields"] == {"Stage": "Closed Lost"}
    assert [entry["stage"] for entry in body_shown["stage_history"]] == ["Qualification", "Closed Lost"]
    assert body_shown["stage_history"][1] == {
        "stage": "Closed Lost",
        "modified_time": stored["Modified_Time"],
        "modified_by": "Integration",
    }


async def test_update_errors(client: httpx.AsyncClient) -> None:
    headers = await auth(client)
    unknown = await client.put(
        "/zoho/crm/v8/Deals/123", json={"data": [{"Amount": 1}], "trigger": []}, headers=headers
    )
    assert unknown.status_code == 400
    assert unknown.json()["data"][0] == {
        "code": "INVALID_DATA",
        "details": {"id": "123"},
        "message": "the id given seems to be invalid",
        "status": "error",
    }
    deal = await new_deal(client)
    url = f"/zoho/crm/v8/Deals/{deal['id']}"
    assert (await client.put(url, content=b"{oops", headers=headers)).json()["code"] == "INVALID_DATA"
    missing = await client.put(url, json={"data": [], "trigger": []}, headers=headers)
    assert (missing.status_code, missing.json()["code"]) == (400, "MANDATORY_NOT_FOUND")
    assert (await counters(client))["deal_updates"] == 0


async def test_stage_change_sets_stage_probability_and_who(client: httpx.AsyncClient) -> None:
    deal = await new_deal(client, Stage="Qualification")
    response = await move(
        client, deal["id"], "Proposal/Price Quote", modified_by="Carla Mendes", **NO_WEBHOOK
    )
    assert response.status_code == 200
    assert response.json()["webhook"] is None
    moved = response.json()["deal"]
    assert (moved["Stage"], moved["Probability"]) == ("Proposal/Price Quote", 75)
    assert moved["Modified_By"]["name"] == "Carla Mendes"
    assert re.fullmatch(r"5725767\d{12}", moved["Modified_By"]["id"])
    assert {key: moved[key] for key in ("Deal_Name", "Amount", "Created_Time")} == {
        key: deal[key] for key in ("Deal_Name", "Amount", "Created_Time")
    }

    # By default the owner moved it; a known user keeps their id.
    by_owner = (await move(client, deal["id"], "Negotiation/Review", **NO_WEBHOOK)).json()["deal"]
    assert by_owner["Modified_By"] == {"id": deal["Owner"]["id"], "name": deal["Owner"]["name"]}
    renata = await move(client, deal["id"], "Closed Won", modified_by="Renata Moreira", **NO_WEBHOOK)
    assert renata.json()["deal"]["Modified_By"] == {"id": "5725767000000318001", "name": "Renata Moreira"}
    assert renata.json()["deal"]["Probability"] == 100

    body = await shown(client, deal["id"])
    assert body["deal"] == renata.json()["deal"]
    assert [(e["stage"], e["modified_by"]) for e in body["stage_history"]] == [
        ("Qualification", deal["Modified_By"]["name"]),
        ("Proposal/Price Quote", "Carla Mendes"),
        ("Negotiation/Review", deal["Owner"]["name"]),
        ("Closed Won", "Renata Moreira"),
    ]
    assert body["stage_history"][-1]["modified_time"] == body["deal"]["Modified_Time"]
    assert body["updates"] == []  # the project's updates only
    zoho = await counters(client)
    assert (zoho["deal_webhooks_sent"], zoho["deal_updates"]) == (0, 0)


async def test_modified_time_strictly_increases(client: httpx.AsyncClient) -> None:
    deal = await new_deal(client)
    times = [deal["Modified_Time"]]
    for stage in ("Needs Analysis", "Value Proposition", "Id. Decision Makers", "Perception Analysis"):
        moved = (await move(client, deal["id"], stage, **NO_WEBHOOK)).json()["deal"]
        assert re.fullmatch(ZOHO_TIME, moved["Modified_Time"])
        times.append(moved["Modified_Time"])
    parsed = [datetime.fromisoformat(time) for time in times]
    assert all(earlier < later for earlier, later in itertools.pairwise(parsed))
    # Changes within one second still get distinct, increasing times: one second apart.
    assert parsed[-1] - parsed[1] >= timedelta(seconds=3)

    # A deal last modified in the future: "now" is not later, so current + 1 second.
    future = (datetime.now(BRT) + timedelta(hours=2)).replace(microsecond=0)
    ahead = await new_deal(client, Modified_Time=future.isoformat())
    moved = (await move(client, ahead["id"], "Closed Lost", **NO_WEBHOOK)).json()["deal"]
    assert moved["Modified_Time"] == (future + timedelta(seconds=1)).isoformat()


async def test_given_modified_time_must_not_be_earlier(client: httpx.AsyncClient) -> None:
    deal = await new_deal(client, Modified_Time="2026-11-24T09:00:00-03:00")
    # Any offset is accepted and shown the Zoho way, in Brasília time at second precision.
    given = {"modified_time": "2026-11-24T12:00:05.750Z", **NO_WEBHOOK}
    moved = (await move(client, deal["id"], "Needs Analysis", **given)).json()["deal"]
    assert moved["Modified_Time"] == "2026-11-24T09:00:05-03:00"
    for earlier in ("2026-11-24T09:00:04-03:00", "2026-11-24T08:00:00-03:00"):
        refused = await move(client, deal["id"], "Closed Won", modified_time=earlier, **NO_WEBHOOK)
        assert refused.status_code == 409
        assert refused.json()["error"] == "modified_time_earlier"
        assert refused.json()["current_modified_time"] == "2026-11-24T09:00:05-03:00"
    # A second move within the same second shares its time, as Zoho stamps it.
    same = {"modified_time": "2026-11-24T09:00:05-03:00", **NO_WEBHOOK}
    again = (await move(client, deal["id"], "Value Proposition", **same)).json()["deal"]
    assert again["Modified_Time"] == "2026-11-24T09:00:05-03:00"
    body = await shown(client, deal["id"])
    assert (body["deal"]["Stage"], len(body["stage_history"])) == ("Value Proposition", 3)


@pytest.mark.parametrize(
    "body",
    [
        {"stage": "Won"},
        {"stage": "Closed Won", "modified_time": "2026-11-24T09:00:00"},  # no offset
        {"stage": "Closed Won", "webhook_format": "xml"},
        {"stage": "Closed Won", "modified_by": ""},
        {"stage": "Closed Won", "sendWebhook": False},
        {},
    ],
)
async def test_invalid_stage_changes_are_refused(client: httpx.AsyncClient, body: dict[str, Any]) -> None:
    deal = await new_deal(client)
    response = await client.post(f"/_control/zoho/deals/{deal['id']}/stage", json=body)
    assert response.status_code == 422
    assert (await shown(client, deal["id"]))["deal"] == deal


async def test_unknown_deal_on_control_routes(client: httpx.AsyncClient) -> None:
    missing = "5725767000000999999"
    for response in (
        await client.get(f"/_control/zoho/deals/{missing}"),
        await move(client, missing, "Closed Won", **NO_WEBHOOK),
        await client.post(f"/_control/zoho/deals/{missing}/webhook"),
    ):
        assert response.status_code == 404
        assert response.json() == {"error": "deal_not_found", "deal_id": missing}


async def test_reset_forgets_deals_and_their_counters(client: httpx.AsyncClient) -> None:
    deal = await new_deal(client)
    headers = await auth(client)
    await client.get(f"/zoho/crm/v8/Deals/{deal['id']}", headers=headers)
    await client.put(f"/zoho/crm/v8/Deals/{deal['id']}", json={"data": [{"Amount": 2}]}, headers=headers)
    zoho = await counters(client)
    assert (zoho["deal_gets"], zoho["deal_updates"], zoho["updates_without_trigger"]) == (1, 1, 1)

    assert (await client.post("/_control/reset")).status_code == 200

    assert set((await counters(client)).values()) == {0}
    assert (await client.get(f"/_control/zoho/deals/{deal['id']}")).status_code == 404
    headers = await auth(client)  # tokens are forgotten too
    assert (await client.get(f"/zoho/crm/v8/Deals/{deal['id']}", headers=headers)).status_code == 204
