"""The webhook sender, over real HTTP: the simulator posts to a receiver standing in for the project's API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from simulators import create_app
from tests.simulators.conftest import live_server, make_config
from tests.support import free_port


@pytest.fixture
def received() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def api_url(received: list[dict[str, Any]]) -> Iterator[str]:
    """A tiny stand-in for the project's webhook endpoint that records what it gets."""
    receiver = FastAPI()

    @receiver.post("/webhooks/zoho/leads")
    async def webhook(request: Request) -> JSONResponse:
        received.append({"headers": dict(request.headers), "body": (await request.body()).decode()})
        return JSONResponse({"status": "accepted"}, status_code=202)

    with live_server(lambda _: receiver) as url:
        yield url


@pytest.fixture
def sim_url(api_url: str) -> Iterator[str]:
    with live_server(lambda base: create_app(make_config(public_base_url=base, api_url=api_url))) as url:
        yield url


async def test_form_webhook_on_create(sim_url: str, received: list[dict[str, Any]]) -> None:
    async with httpx.AsyncClient(base_url=sim_url) as client:
        response = await client.post("/_control/zoho/leads", json={"send_webhook": True, "State": "PR"})
        assert response.status_code == 200
        lead, webhook = response.json()["lead"], response.json()["webhook"]
        assert webhook == {"status_code": 202, "body": {"status": "accepted"}}
        counters = (await client.get("/_control/counters")).json()["zoho"]
    assert counters["webhooks_sent"] == 1
    [call] = received
    assert call["headers"]["x-zoho-webhook-token"] == "test-webhook-secret"
    assert call["headers"]["content-type"] == "application/x-www-form-urlencoded"
    assert dict(httpx.QueryParams(call["body"])) == {
        "lead_id": lead["id"],
        "state": "PR",
        "city": lead["City"],
        "model": lead["Modelo_de_Interesse"],
        "lead_source": lead["Lead_Source"],
    }


async def test_json_webhook_for_existing_lead(sim_url: str, received: list[dict[str, Any]]) -> None:
    async with httpx.AsyncClient(base_url=sim_url) as client:
        created = await client.post("/_control/zoho/leads", json={"City": "São Paulo", "State": "SP"})
        lead = created.json()["lead"]
        assert received == []  # no webhook unless asked
        response = await client.post(f"/_control/zoho/leads/{lead['id']}/webhook", json={"format": "json"})
        assert response.json() == {"status_code": 202, "body": {"status": "accepted"}}
        missing = await client.post("/_control/zoho/leads/42/webhook", json={"format": "json"})
        assert missing.status_code == 404
    [call] = received
    assert call["headers"]["content-type"] == "application/json"
    assert len(call["body"]) <= 500
    assert json.loads(call["body"])["lead_id"] == lead["id"]
    assert json.loads(call["body"])["city"] == "São Paulo"


async def test_unreachable_api_gives_502() -> None:
    app = create_app(make_config(api_url=f"http://127.0.0.1:{free_port()}"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sim.test") as client,
    ):
        lead = (await client.post("/_control/zoho/leads")).json()["lead"]
        response = await client.post(f"/_control/zoho/leads/{lead['id']}/webhook")
        assert response.status_code == 502
        assert response.json()["error"] == "webhook_failed"
        assert (await client.get("/_control/counters")).json()["zoho"]["webhooks_sent"] == 0
