from __future__ import annotations

import httpx

from simulators.__main__ import build_config, parse_args

LEAD_URL = "/dealer-rest/dealer-sp/api/v1/leads"
HEADERS = {"Authorization": "Bearer k", "Idempotency-Key": "k1"}


async def test_faults_are_listed_and_cleared_per_target(client: httpx.AsyncClient) -> None:
    for target in ("zoho", "dealer-sp", "dealer-rj"):
        await client.post("/_control/faults", json={"target": target, "error_5xx_count": 5})
    assert set((await client.get("/_control/faults")).json()) == {"zoho", "dealer-sp", "dealer-rj"}
    await client.delete("/_control/faults/dealer-sp")
    assert set((await client.get("/_control/faults")).json()) == {"zoho", "dealer-rj"}
    assert (await client.post(LEAD_URL, json={"a": 1}, headers=HEADERS)).status_code == 201
    await client.delete("/_control/faults")
    assert (await client.get("/_control/faults")).json() == {}


async def test_invalid_fault_spec_is_refused(client: httpx.AsyncClient) -> None:
    response = await client.post("/_control/faults", json={"target": "zoho", "error_5xx_count": -1})
    assert response.status_code == 422


async def test_reset_forgets_everything(client: httpx.AsyncClient) -> None:
    lead = (await client.post("/_control/zoho/leads")).json()["lead"]
    await client.post(LEAD_URL, json={"a": 1}, headers=HEADERS)
    await client.post("/_control/faults", json={"target": "zoho", "latency_ms": 10})
    assert (await client.get("/_control/counters")).json()["dealers"]["dealer-sp"]["created"] == 1

    assert (await client.post("/_control/reset")).status_code == 200

    counters = (await client.get("/_control/counters")).json()
    assert counters["dealers"] == {} and counters["events"] == {}
    assert set(counters["zoho"].values()) == {0}
    assert (await client.get("/_control/faults")).json() == {}
    assert (await client.get(f"/_control/zoho/leads/{lead['id']}")).status_code == 404
    # The same key creates again: idempotency records are gone too.
    assert (await client.post(LEAD_URL, json={"a": 1}, headers=HEADERS)).status_code == 201


async def test_seeded_app_creates_the_same_leads(client: httpx.AsyncClient) -> None:
    first = (await client.post("/_control/zoho/leads")).json()["lead"]
    await client.post("/_control/reset")
    again = (await client.post("/_control/zoho/leads")).json()["lead"]
    assert first["id"] == again["id"] == "5725767000000412001"
    assert (first["First_Name"], first["City"]) == (again["First_Name"], again["City"])


def test_cli_flags_override_defaults() -> None:
    args = parse_args(["--port", "8200", "--api-url", "http://127.0.0.1:9000", "--webhook-secret", "s3cret"])
    config = build_config(args)
    assert config.public_base_url == "http://127.0.0.1:8200"
    assert config.api_url == "http://127.0.0.1:9000"
    assert config.zoho_webhook_secret == "s3cret"
    assert "s3cret" not in repr(config)
    explicit = build_config(parse_args(["--public-base-url", "http://sim:8100"]))
    assert explicit.public_base_url == "http://sim:8100"
