"""The deal "on Stage change" webhook over real HTTP, posted to a stand-in for the project's API."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from simulators import create_app, deal_webhook_fields
from tests.simulators.conftest import live_server, make_config
from tests.support import free_port


@pytest.fixture
def received() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def answers() -> list[int]:
    """Status codes the receiver answers with, in order; 202 once they run out."""
    return []


@pytest.fixture
def api_url(received: list[dict[str, Any]], answers: list[int]) -> Iterator[str]:
    receiver = FastAPI()

    @receiver.post("/webhooks/zoho/opportunities")
    async def webhook(request: Request) -> JSONResponse:
        received.append({"headers": dict(request.headers), "body": (await request.body()).decode()})
        status_code = answers.pop(0) if answers else 202
        return JSONResponse({"status": "accepted" if status_code == 202 else "busy"}, status_code=status_code)

    with live_server(lambda _: receiver) as url:
        yield url


@pytest.fixture
async def sim(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    with live_server(lambda base: create_app(make_config(public_base_url=base, api_url=api_url))) as url:
        async with httpx.AsyncClient(base_url=url) as client:
            yield client


async def new_deal(client: httpx.AsyncClient, **fields: object) -> dict[str, Any]:
    response = await client.post("/_control/zoho/deals", json=fields)
    assert response.status_code == 200, response.text
    deal: dict[str, Any] = response.json()["deal"]
    return deal


async def counters(client: httpx.AsyncClient) -> dict[str, int]:
    zoho: dict[str, int] = (await client.get("/_control/counters")).json()["zoho"]
    return zoho


async def test_stage_change_fires_a_form_webhook_by_default(
    sim: httpx.AsyncClient, received: list[dict[str, Any]]
) -> None:
    deal = await new_deal(sim, Amount=1850000.5)
    assert received == []  # creating a deal fires nothing
    body = {"stage": "Proposal/Price Quote", "modified_by": "Carla Mendes"}
    response = await sim.post(f"/_control/zoho/deals/{deal['id']}/stage", json=body)
    assert response.status_code == 200, response.text
    moved, webhook = response.json()["deal"], response.json()["webhook"]
    assert webhook == {"status_code": 202, "body": {"status": "accepted"}}
    [call] = received
    assert call["headers"]["x-zoho-webhook-token"] == "test-webhook-secret"
    assert call["headers"]["content-type"] == "application/x-www-form-urlencoded"
    fields = dict(httpx.QueryParams(call["body"]))
    assert fields == {
        "deal_id": deal["id"],
        "stage": "Proposal/Price Quote",
        "modified_time": moved["Modified_Time"],
        "modified_by": "Carla Mendes",
        "amount": "1850000.50",
    }
    assert fields == deal_webhook_fields(moved)  # project tests can build the very same body
    zoho = await counters(sim)
    assert (zoho["deal_webhooks_sent"], zoho["webhooks_sent"]) == (1, 0)


async def test_json_and_partial_webhooks(sim: httpx.AsyncClient, received: list[dict[str, Any]]) -> None:
    deal = await new_deal(sim)
    url = f"/_control/zoho/deals/{deal['id']}/stage"
    as_json = await sim.post(url, json={"stage": "Needs Analysis", "webhook_format": "json"})
    partial_form = await sim.post(url, json={"stage": "Value Proposition", "partial": True})
    partial_json = await sim.post(
        url, json={"stage": "Closed Won", "partial": True, "webhook_format": "json"}
    )
    assert [r.json()["webhook"]["status_code"] for r in (as_json, partial_form, partial_json)] == [202] * 3
    first, second, third = received

    assert first["headers"]["content-type"] == "application/json"
    assert len(first["body"]) <= 500
    moved = as_json.json()["deal"]
    assert json.loads(first["body"]) == {
        "deal_id": deal["id"],
        "stage": "Needs Analysis",
        "modified_time": moved["Modified_Time"],
        "modified_by": deal["Owner"]["name"],
        "amount": deal_webhook_fields(deal)["amount"],
    }
    assert second["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert dict(httpx.QueryParams(second["body"])) == {"deal_id": deal["id"]}
    assert third["headers"]["content-type"] == "application/json"
    assert json.loads(third["body"]) == {"deal_id": deal["id"]}
    # Partial or not, the deal itself moved: the project fetches it and finds the new stage.
    shown = (await sim.get(f"/_control/zoho/deals/{deal['id']}")).json()
    assert (shown["deal"]["Stage"], shown["deal"]["Probability"]) == ("Closed Won", 100)
    assert [entry["stage"] for entry in shown["stage_history"][1:]] == [
        "Needs Analysis",
        "Value Proposition",
        "Closed Won",
    ]
    assert (await counters(sim))["deal_webhooks_sent"] == 3


async def test_resend_repeats_the_current_state(
    sim: httpx.AsyncClient, received: list[dict[str, Any]]
) -> None:
    deal = await new_deal(sim)
    moved = await sim.post(f"/_control/zoho/deals/{deal['id']}/stage", json={"stage": "Negotiation/Review"})
    url = f"/_control/zoho/deals/{deal['id']}/webhook"
    again = await sim.post(url)
    assert again.json() == {"status_code": 202, "body": {"status": "accepted"}}
    partial = await sim.post(url, json={"format": "json", "partial": True})
    assert partial.status_code == 200
    assert (await sim.post(url, json={"format": "xml"})).status_code == 422

    original, duplicate, only_id = received
    assert duplicate["body"] == original["body"]  # a byte-for-byte duplicate
    assert json.loads(only_id["body"]) == {"deal_id": deal["id"]}
    shown = (await sim.get(f"/_control/zoho/deals/{deal['id']}")).json()
    assert shown["deal"] == moved.json()["deal"]  # resending changes nothing
    assert len(shown["stage_history"]) == 2
    assert (await counters(sim))["deal_webhooks_sent"] == 3


async def test_error_answers_are_reported(
    sim: httpx.AsyncClient, received: list[dict[str, Any]], answers: list[int]
) -> None:
    deal = await new_deal(sim)
    answers.append(503)
    response = await sim.post(f"/_control/zoho/deals/{deal['id']}/stage", json={"stage": "Closed Lost"})
    assert response.status_code == 200
    assert response.json()["webhook"] == {"status_code": 503, "body": {"status": "busy"}}
    assert len(received) == 1
    assert (await counters(sim))["deal_webhooks_sent"] == 1


async def test_unreachable_api_gives_502_and_the_deal_still_changes() -> None:
    app = create_app(make_config(api_url=f"http://127.0.0.1:{free_port()}"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sim.test") as client,
    ):
        deal = await new_deal(client, Stage="Qualification")
        response = await client.post(f"/_control/zoho/deals/{deal['id']}/stage", json={"stage": "Closed Won"})
        assert response.status_code == 502
        failure = response.json()
        assert (failure["error"], failure["deal_id"]) == ("webhook_failed", deal["id"])
        assert (failure["deal"]["Stage"], failure["deal"]["Probability"]) == ("Closed Won", 100)
        shown = (await client.get(f"/_control/zoho/deals/{deal['id']}")).json()
        assert shown["deal"] == failure["deal"]
        assert [entry["stage"] for entry in shown["stage_history"]] == ["Qualification", "Closed Won"]
        resent = await client.post(f"/_control/zoho/deals/{deal['id']}/webhook")
        assert (resent.status_code, resent.json()["error"]) == (502, "webhook_failed")
        assert (await counters(client))["deal_webhooks_sent"] == 0
