from __future__ import annotations

import time
from datetime import datetime

import httpx
import pytest

from tests.simulators.conftest import ZOHO_CREDENTIALS, FakeClock, zoho_token

TOKEN_URL = "/zoho/oauth/v2/token"


async def new_lead(client: httpx.AsyncClient, **fields: object) -> dict[str, object]:
    response = await client.post("/_control/zoho/leads", json=fields)
    assert response.status_code == 200, response.text
    lead: dict[str, object] = response.json()["lead"]
    return lead


async def counters(client: httpx.AsyncClient) -> dict[str, int]:
    zoho: dict[str, int] = (await client.get("/_control/counters")).json()["zoho"]
    return zoho


async def test_token_from_query_string_and_from_form(client: httpx.AsyncClient) -> None:
    by_query = await client.post(TOKEN_URL, params=ZOHO_CREDENTIALS)
    by_form = await client.post(TOKEN_URL, data=ZOHO_CREDENTIALS)
    for response in (by_query, by_form):
        assert response.status_code == 200
        body = response.json()
        assert body["access_token"].startswith("1000.")
        assert body["api_domain"] == "http://sim.test/zoho"
        assert (body["token_type"], body["expires_in"]) == ("Bearer", 3600)
    assert by_query.json()["access_token"] != by_form.json()["access_token"]
    assert (await counters(client))["tokens_issued"] == 2


@pytest.mark.parametrize(
    ("field", "value", "error"),
    [
        ("client_id", "other-client", "invalid_client"),
        ("client_secret", "wrong", "invalid_client"),
        ("refresh_token", "wrong", "invalid_code"),
        ("grant_type", "authorization_code", "unsupported_grant_type"),
    ],
)
async def test_token_errors_answer_200_with_error_key(
    client: httpx.AsyncClient, field: str, value: str, error: str
) -> None:
    response = await client.post(TOKEN_URL, params={**ZOHO_CREDENTIALS, field: value})
    assert response.status_code == 200
    assert response.json() == {"error": error}
    assert (await counters(client))["tokens_issued"] == 0


async def test_at_most_ten_tokens_per_refresh_token_in_ten_minutes(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    for _ in range(10):
        assert "access_token" in (await client.post(TOKEN_URL, params=ZOHO_CREDENTIALS)).json()
        clock.advance(30)
    refused = await client.post(TOKEN_URL, params=ZOHO_CREDENTIALS)
    assert refused.status_code == 400
    assert refused.json()["error"] == "Access Denied"
    assert "too many requests" in refused.json()["error_description"]
    # The first token leaves the 10-minute window: one more can be issued, and only one.
    clock.advance(600 - 10 * 30 + 1)
    assert (await client.post(TOKEN_URL, params=ZOHO_CREDENTIALS)).status_code == 200
    assert (await client.post(TOKEN_URL, params=ZOHO_CREDENTIALS)).status_code == 400
    assert (await counters(client))["tokens_issued"] == 11


async def test_get_lead_requires_a_live_token(client: httpx.AsyncClient, clock: FakeClock) -> None:
    lead = await new_lead(client)
    url = f"/zoho/crm/v8/Leads/{lead['id']}"
    token = await zoho_token(client)
    for headers in ({}, {"Authorization": f"Bearer {token}"}, {"Authorization": "Zoho-oauthtoken 1000.nope"}):
        refused = await client.get(url, headers=headers)
        assert refused.status_code == 401
        assert refused.json() == {
            "code": "INVALID_TOKEN",
            "details": {},
            "message": "invalid oauth token",
            "status": "error",
        }
    assert (await client.get(url, headers={"Authorization": f"Zoho-oauthtoken {token}"})).status_code == 200
    clock.advance(3600)
    assert (await client.get(url, headers={"Authorization": f"Zoho-oauthtoken {token}"})).status_code == 401


async def test_get_lead_any_version_and_204_for_unknown(client: httpx.AsyncClient) -> None:
    lead = await new_lead(client, State="MG", City="Belo Horizonte")
    auth = {"Authorization": f"Zoho-oauthtoken {await zoho_token(client)}"}
    for version in ("v2", "v8"):
        response = await client.get(f"/zoho/crm/{version}/Leads/{lead['id']}", headers=auth)
        assert response.status_code == 200
        assert response.json() == {"data": [lead]}
    unknown = await client.get("/zoho/crm/v8/Leads/5725767000000999999", headers=auth)
    assert (unknown.status_code, unknown.content) == (204, b"")
    assert (await client.get(f"/zoho/crm/v9/Leads/{lead['id']}", headers=auth)).status_code == 404
    assert (await counters(client))["lead_gets"] == 3


async def test_update_merges_fields_and_counts_missing_trigger(client: httpx.AsyncClient) -> None:
    lead = await new_lead(client)
    url = f"/zoho/crm/v8/Leads/{lead['id']}"
    auth = {"Authorization": f"Zoho-oauthtoken {await zoho_token(client)}"}

    with_trigger = {
        "data": [{"Lead_Status": "Contacted", "id": "1", "Concessionaria": "dealer-sp"}],
        "trigger": [],
    }
    response = await client.put(url, json=with_trigger, headers=auth)
    assert response.status_code == 200
    item = response.json()["data"][0]
    assert (item["code"], item["message"], item["status"]) == ("SUCCESS", "record updated", "success")
    assert item["details"]["id"] == lead["id"]
    assert item["details"]["Modified_By"]["name"] == "Integration"
    assert item["details"]["Created_Time"] == lead["Created_Time"]
    datetime.fromisoformat(item["details"]["Modified_Time"])
    assert (await counters(client))["updates_without_trigger"] == 0

    response = await client.put(url, json={"data": [{"Lead_Status": "Pre-Qualified"}]}, headers=auth)
    assert response.status_code == 200
    modified = response.json()["data"][0]["details"]["Modified_Time"]
    zoho = await counters(client)
    assert (zoho["lead_updates"], zoho["updates_without_trigger"]) == (2, 1)

    stored = (await client.get(f"/_control/zoho/leads/{lead['id']}")).json()
    assert stored["lead"]["id"] == lead["id"]  # the body cannot change the id
    assert stored["lead"]["Lead_Status"] == "Pre-Qualified"
    assert stored["lead"]["Concessionaria"] == "dealer-sp"
    assert stored["lead"]["Modified_Time"] == modified
    assert [update["trigger_sent"] for update in stored["updates"]] == [True, False]
    assert stored["updates"][0]["fields"] == {"Lead_Status": "Contacted", "Concessionaria": "dealer-sp"}


async def test_update_errors(client: httpx.AsyncClient) -> None:
    auth = {"Authorization": f"Zoho-oauthtoken {await zoho_token(client)}"}
    unknown = await client.put(
        "/zoho/crm/v8/Leads/123", json={"data": [{"City": "x"}], "trigger": []}, headers=auth
    )
    assert unknown.status_code == 400
    assert unknown.json()["data"][0]["code"] == "INVALID_DATA"
    lead = await new_lead(client)
    url = f"/zoho/crm/v8/Leads/{lead['id']}"
    assert (await client.put(url, content=b"{oops", headers=auth)).json()["code"] == "INVALID_DATA"
    assert (await client.put(url, json={"trigger": []}, headers=auth)).json()["code"] == "MANDATORY_NOT_FOUND"
    assert (await counters(client))["lead_updates"] == 0


async def test_faults_503_then_429_then_normal(client: httpx.AsyncClient) -> None:
    lead = await new_lead(client)
    url = f"/zoho/crm/v8/Leads/{lead['id']}"
    auth = {"Authorization": f"Zoho-oauthtoken {await zoho_token(client)}"}
    spec = {"target": "zoho", "error_5xx_count": 1, "rate_limit_count": 2, "retry_after_seconds": 7}
    assert (await client.post("/_control/faults", json=spec)).status_code == 200
    # The token endpoint is the accounts server, another host: faults do not touch it.
    assert (await client.post(TOKEN_URL, params=ZOHO_CREDENTIALS)).status_code == 200

    assert (await client.get(url, headers=auth)).status_code == 503
    for _ in range(2):
        limited = await client.get(url, headers=auth)
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "7"
        assert limited.json()["code"] == "TOO_MANY_REQUESTS"
    assert (await client.get(url, headers=auth)).status_code == 200
    assert (await counters(client))["faults_served"] == 3


async def test_latency_fault(client: httpx.AsyncClient) -> None:
    lead = await new_lead(client)
    auth = {"Authorization": f"Zoho-oauthtoken {await zoho_token(client)}"}
    await client.post("/_control/faults", json={"target": "zoho", "latency_ms": 150})
    started = time.perf_counter()
    response = await client.get(f"/zoho/crm/v8/Leads/{lead['id']}", headers=auth)
    assert response.status_code == 200
    assert time.perf_counter() - started >= 0.15
