"""The codec server speaks Temporal's remote codec protocol to the Web UI's browser and the CLI."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from pydantic import SecretStr

from api.codec_server import create_codec_app
from core.settings import LOCAL_UI_ORIGINS, Settings
from core.temporal import data_converter
from core.tracing import start_tracing, stop_tracing
from tests.support import PRODUCTION_SETTINGS, new_key

UI = LOCAL_UI_ORIGINS[0]
LEAD = {"First_Name": "Graziela", "Email": "graziela.tavares@example.com.br", "Phone": "+55 11 97777-1234"}
TOKEN = "codec-test-token"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def plain_json(value: Any) -> dict[str, Any]:
    """A JSON payload in the protocol's form: protobuf JSON, bytes as base64."""
    return {"metadata": {"encoding": b64(b"json/plain")}, "data": b64(json.dumps(value).encode())}


async def sealed_by_the_hub(settings: Settings, value: Any) -> dict[str, Any]:
    """The payload as the hub's clients and workers write it into Temporal, in the protocol's form."""
    (payload,) = await data_converter(settings).encode([value])
    return {"metadata": {k: b64(v) for k, v in payload.metadata.items()}, "data": b64(payload.data)}


def client_of(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://codec")


@pytest.fixture
async def codec() -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(create_codec_app(Settings(environment="test"))) as client:
        yield client


async def test_decode_shows_what_the_hub_encrypted(codec: httpx.AsyncClient) -> None:
    sealed = await sealed_by_the_hub(Settings(environment="test"), LEAD)
    assert LEAD["Email"] not in base64.b64decode(sealed["data"]).decode(errors="replace")
    response = await codec.post("/decode", json={"payloads": [sealed]}, headers={"X-Namespace": "default"})
    assert response.status_code == 200
    (decoded,) = response.json()["payloads"]
    assert base64.b64decode(decoded["metadata"]["encoding"]) == b"json/plain"
    assert json.loads(base64.b64decode(decoded["data"])) == LEAD


async def test_encode_then_decode_round_trips_and_plain_payloads_pass(codec: httpx.AsyncClient) -> None:
    encoded = (await codec.post("/encode", json={"payloads": [plain_json(LEAD)]})).json()["payloads"]
    assert base64.b64decode(encoded[0]["metadata"]["encoding"]) == b"binary/encrypted"
    decoded = (await codec.post("/decode", json={"payloads": [*encoded, plain_json(1)]})).json()
    assert decoded["payloads"] == [plain_json(LEAD), plain_json(1)]
    assert (await codec.post("/decode", json={"payloads": []})).json() == {"payloads": []}


async def test_faults_get_a_clear_400(codec: httpx.AsyncClient) -> None:
    foreign = await sealed_by_the_hub(
        Settings(environment="test", payload_keys={"elsewhere": new_key()}), LEAD
    )
    response = await codec.post("/decode", json={"payloads": [foreign]})
    assert response.status_code == 400
    assert "key id 'elsewhere', which is not in the key ring" in response.json()["detail"]
    response = await codec.post("/decode", content=b'{"payloads": [{"data": "not base64!"}]}')
    assert response.status_code == 400
    assert "not a payloads JSON body" in response.json()["detail"]
    for body in (b"\xff\xfe", b"[" * 100_000):  # not UTF-8; nested past the JSON reader's depth
        response = await codec.post("/decode", content=body)
        assert response.status_code == 400, body[:4]
        assert "not a payloads JSON body" in response.json()["detail"]
    truncated = {**await sealed_by_the_hub(Settings(environment="test"), LEAD), "data": b64(b"short")}
    response = await codec.post("/decode", json={"payloads": [truncated]})
    assert response.status_code == 400
    assert "too short to be sealed data" in response.json()["detail"]


async def test_another_namespace_is_refused(codec: httpx.AsyncClient) -> None:
    response = await codec.post("/decode", json={"payloads": []}, headers={"X-Namespace": "billing"})
    assert response.status_code == 403


async def test_the_ui_origin_may_call_it_from_a_browser_with_credentials(codec: httpx.AsyncClient) -> None:
    preflight = await codec.options(
        "/decode",
        headers={
            "Origin": UI,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type,x-namespace",
        },
    )
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == UI
    assert preflight.headers["access-control-allow-credentials"] == "true"
    allowed = {h.strip().lower() for h in preflight.headers["access-control-allow-headers"].split(",")}
    assert {"authorization", "content-type", "x-namespace"} <= allowed
    answer = await codec.post("/decode", json={"payloads": []}, headers={"Origin": UI})
    assert answer.headers["access-control-allow-origin"] == UI

    elsewhere = await codec.options(
        "/decode", headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in elsewhere.headers
    answer = await codec.post("/decode", json={"payloads": []}, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in answer.headers


async def test_a_configured_token_is_required() -> None:
    app = create_codec_app(Settings(environment="test", codec_server_token=TOKEN))
    body = {"payloads": [plain_json(LEAD)]}
    async with client_of(app) as codec:
        assert (await codec.post("/decode", json=body)).status_code == 401
        wrong = await codec.post("/decode", json=body, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401
        assert wrong.headers["www-authenticate"] == "Bearer"
        right = await codec.post("/decode", json=body, headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200
        assert (await codec.get("/healthz")).status_code == 200  # health checks need no token


def test_production_refuses_to_start_without_a_token() -> None:
    production = Settings(**PRODUCTION_SETTINGS)
    with pytest.raises(RuntimeError, match="HUB_CODEC_SERVER_TOKEN"):
        create_codec_app(production)
    assert create_codec_app(production.model_copy(update={"codec_server_token": SecretStr(TOKEN)}))


async def test_each_codec_request_is_a_span_without_the_payloads() -> None:
    spans = InMemorySpanExporter()
    assert start_tracing("hub-codec-server-test", exporter=spans, http_clients=False)
    try:
        sealed = await sealed_by_the_hub(Settings(environment="test"), LEAD)
        async with client_of(create_codec_app(Settings(environment="test"))) as codec:
            assert (await codec.post("/decode", json={"payloads": [sealed]})).status_code == 200
            assert (await codec.get("/healthz")).status_code == 200  # probes make no span
    finally:
        stop_tracing()
    (request,) = spans.get_finished_spans()
    assert request.name == "POST /decode"
    text = json.dumps(dict(request.attributes or {}))
    assert not [value for value in LEAD.values() if value in text]
