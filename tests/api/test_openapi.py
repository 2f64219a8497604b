"""The served OpenAPI document tells senders everything, and the API keeps every promise it makes there.

Schemathesis generates requests from ``/openapi.json`` (valid and invalid bodies, both content types)
and sends them over HTTP to the API on the real Temporal dev server: no answer may be a 5xx, and every
answer must be one the document declares, in the declared shape.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from temporalio.testing import WorkflowEnvironment

from tests.hub import READ_TOKEN, VTEX_HOOK_SECRET, WEBHOOK_SECRET, Hub, running_hub

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
EXAMPLES_PER_OPERATION = 25


@pytest.fixture
async def api_only(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str, warehouse_settings: dict[str, Any]
) -> AsyncIterator[Hub]:
    """The API on the real dev server with no worker: accepted events wait in Temporal, harmlessly."""
    # The read API's warehouse views answer from an emulator where silver and gold are not built yet.
    async with running_hub(
        temporal_env.client, sqlite_url, task_queue, worker=False, **warehouse_settings
    ) as hub:
        yield hub


async def test_openapi_declares_bodies_and_security(api_only: Hub) -> None:
    document = (await api_only.http.get(f"{api_only.api_url}/openapi.json")).json()
    schemes = document["components"]["securitySchemes"]
    assert schemes["ZohoWebhookSecret"] == {
        "type": "apiKey",
        "in": "header",
        "name": api_only.settings.zoho_webhook_secret_header,
        "description": schemes["ZohoWebhookSecret"]["description"],
    }
    assert schemes["VtexHookSecret"]["name"] == api_only.settings.vtex_hook_secret_header
    assert schemes["ReadApiToken"]["scheme"] == "bearer"
    for path in ("/webhooks/zoho/leads", "/webhooks/zoho/opportunities"):
        operation = document["paths"][path]["post"]
        assert set(operation["requestBody"]["content"]) == {
            "application/x-www-form-urlencoded",
            "application/json",
        }
        assert operation["security"] == [{"ZohoWebhookSecret": []}]
        assert {"400", "401", "413", "415", "422", "503"} <= set(operation["responses"])
    vtex = document["paths"]["/webhooks/vtex/orders"]["post"]
    assert vtex["security"] == [{"VtexHookSecret": []}]
    assert document["components"]["schemas"]["OrderHook"]["required"] == ["OrderId", "State", "Origin"]
    lead_fields = document["components"]["schemas"]["ZohoLeadWebhook"]["properties"]
    assert {"lead_id", "state", "city", "model", "lead_source"} <= set(lead_fields)
    deal_fields = document["components"]["schemas"]["ZohoDealWebhook"]["properties"]
    assert {"deal_id", "stage", "modified_time", "modified_by", "amount"} <= set(deal_fields)
    read = document["paths"]["/v1/leads/{lead_id}"]["get"]
    assert read["security"] == [{"ReadApiToken": []}]
    assert read["responses"]["200"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/LeadView"
    }


# What uvicorn answers a request that is not valid HTTP, before any application code runs.
MALFORMED_HTTP = "Invalid HTTP request received."


def fuzz(base_url: str, headers: dict[str, str]) -> list[str]:
    """Every operation, valid and invalid data; returns the operations exercised."""
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    exercised = []
    for result in schema.get_all_operations():
        operation = result.ok()
        strategy = operation.as_strategy(generation_mode=GenerationMode.POSITIVE) | operation.as_strategy(
            generation_mode=GenerationMode.NEGATIVE
        )

        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=strategy)
        def check(case: Any) -> None:
            response = case.call(base_url=base_url, headers=headers, timeout=10)
            if response.status_code == 400 and response.text == MALFORMED_HTTP:
                return  # not valid HTTP (an empty Content-Length): uvicorn refused it, the API never saw it
            case.validate_response(response, checks=CHECKS, headers=headers)

        check()
        exercised.append(operation.label)
    return exercised


async def test_generated_requests_get_no_5xx_and_only_documented_answers(api_only: Hub) -> None:
    headers = {
        api_only.settings.zoho_webhook_secret_header: WEBHOOK_SECRET,
        api_only.settings.vtex_hook_secret_header: VTEX_HOOK_SECRET,
        "Authorization": f"Bearer {READ_TOKEN}",
    }
    # Schemathesis is synchronous; the API serves on this event loop meanwhile.
    exercised = await asyncio.to_thread(fuzz, api_only.api_url, headers)
    assert "POST /webhooks/zoho/leads" in exercised
    assert "POST /webhooks/vtex/orders" in exercised
    assert "GET /v1/opportunities/{deal_id}" in exercised
    assert {
        "GET /v1/customers/{customer_id}",
        "GET /v1/customers",
        "GET /v1/orders/{order_id}",
        "GET /v1/dealers/{dealer_id}/performance",
    } <= set(exercised)


def sample(metrics: str, name: str) -> float:
    """The value of one sample (``name`` with its labels) in a Prometheus exposition, 0 when absent."""
    for line in metrics.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


async def test_unknown_webhook_paths_share_one_metric_label(api_only: Hub) -> None:
    other = 'hub_webhooks_total{outcome="rejected",source="other"}'
    unauthorised = 'hub_webhooks_total{outcome="rejected",source="zoho_leads"}'
    async with httpx.AsyncClient() as http:
        before = (await http.get(f"{api_only.api_url}/metrics")).text
        for n in range(5):
            await http.post(f"{api_only.api_url}/webhooks/probe-{n}/x", json={})
        await http.post(f"{api_only.api_url}/webhooks/zoho/leads", data={"lead_id": "1"})  # no secret: 401
        # A route with the dealer and the lead in its path counts under its template.
        await http.post(f"{api_only.api_url}/webhooks/dealers/dealer-x/leads/123/status", json={})
        after = (await http.get(f"{api_only.api_url}/metrics")).text
    assert "probe" not in after and "dealer-x" not in after
    assert sample(after, other) - sample(before, other) == 5
    assert sample(after, unauthorised) - sample(before, unauthorised) == 1
    dealer = 'hub_webhooks_total{outcome="rejected",source="dealers_{dealer_id}_leads_{lead_id}_status"}'
    assert sample(after, dealer) - sample(before, dealer) == 1  # no such dealer: 404
