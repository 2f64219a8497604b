from __future__ import annotations

import httpx

BASE = "/dealer-rest/dealer-sp/api/v1/leads"
AUTH = {"Authorization": "Bearer dealer-key"}
LEAD = {"external_id": "5725767000000412001", "nome": "Ana Souza", "uf": "SP", "modelo": "Onix"}


def keyed(key: str) -> dict[str, str]:
    return {**AUTH, "Idempotency-Key": key}


async def dealer_counters(client: httpx.AsyncClient, dealer_id: str = "dealer-sp") -> dict[str, int]:
    counters: dict[str, int] = (await client.get("/_control/counters")).json()["dealers"][dealer_id]
    return counters


async def test_idempotent_create_replays_the_first_answer(client: httpx.AsyncClient) -> None:
    first = await client.post(BASE, json=LEAD, headers=keyed("lead-1"))
    assert first.status_code == 201
    assert first.json()["id"].startswith("CRM-")
    assert first.json()["status"] == "created"
    assert first.json()["received"] == LEAD
    assert "Idempotent-Replayed" not in first.headers

    again = await client.post(BASE, json=LEAD, headers=keyed("lead-1"))
    assert again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true"

    listed = (await client.get(BASE, headers=AUTH)).json()["data"]
    assert [lead["id"] for lead in listed] == [first.json()["id"]]
    counters = await dealer_counters(client)
    assert (counters["created"], counters["replays"], counters["requests"]) == (1, 1, 3)
    control = (await client.get("/_control/dealers/dealer-sp/leads")).json()
    assert control["creates_by_external_id"] == {LEAD["external_id"]: 1}
    assert control["leads"][0]["channel"] == "rest"


async def test_key_reused_with_another_body(client: httpx.AsyncClient) -> None:
    await client.post(BASE, json=LEAD, headers=keyed("lead-2"))
    reused = await client.post(BASE, json={**LEAD, "modelo": "S10"}, headers=keyed("lead-2"))
    assert reused.status_code == 422
    assert reused.json()["error"] == "idempotency_key_reused"
    assert (await dealer_counters(client))["created"] == 1


async def test_request_errors(client: httpx.AsyncClient) -> None:
    missing_key = await client.post(BASE, json=LEAD, headers=AUTH)
    assert missing_key.status_code == 400
    assert missing_key.json()["error"] == "missing_idempotency_key"
    for headers in ({"Idempotency-Key": "k"}, {"Authorization": "Bearer ", "Idempotency-Key": "k"}):
        unauthorized = await client.post(BASE, json=LEAD, headers=headers)
        assert unauthorized.status_code == 401
        assert unauthorized.json()["error"] == "unauthorized"
    assert (await client.post(BASE, json=[LEAD], headers=keyed("k"))).status_code == 400
    assert (await client.post(BASE, content=b"{", headers=keyed("k"))).status_code == 400
    assert (await dealer_counters(client))["created"] == 0


async def test_faults_503_then_429_then_created(client: httpx.AsyncClient) -> None:
    spec = {"target": "dealer-sp", "error_5xx_count": 2, "rate_limit_count": 1, "retry_after_seconds": 3}
    await client.post("/_control/faults", json=spec)
    statuses = [(await client.post(BASE, json=LEAD, headers=keyed("lead-3"))).status_code for _ in range(4)]
    assert statuses == [503, 503, 429, 201]
    counters = await dealer_counters(client)
    assert (counters["faults_served"], counters["created"], counters["requests"]) == (3, 1, 4)
    # Faults belong to their target only.
    other = await client.post("/dealer-rest/dealer-rj/api/v1/leads", json=LEAD, headers=keyed("x"))
    assert other.status_code == 201


async def test_rate_limit_answer(client: httpx.AsyncClient) -> None:
    spec = {"target": "dealer-sp", "rate_limit_count": 1, "retry_after_seconds": 9}
    await client.post("/_control/faults", json=spec)
    limited = await client.post(BASE, json=LEAD, headers=keyed("lead-4"))
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "9")
    assert limited.json()["error"] == "rate_limited"


async def test_reject_is_permanent_until_cleared(client: httpx.AsyncClient) -> None:
    await client.post("/_control/faults", json={"target": "dealer-sp", "reject": True})
    for key in ("a", "b", "a"):
        rejected = await client.post(BASE, json=LEAD, headers=keyed(key))
        assert rejected.status_code == 422
        assert rejected.json() == {"error": "lead_rejected", "message": "dealer does not accept this lead"}
    await client.delete("/_control/faults/dealer-sp")
    assert (await client.post(BASE, json=LEAD, headers=keyed("a"))).status_code == 201
    counters = await dealer_counters(client)
    assert (counters["rejected"], counters["created"]) == (3, 1)
