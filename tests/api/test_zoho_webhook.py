"""Bad requests get a clear 4xx; an event that could not be made durable gets 503, never 200 or 500."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from tests.hub import READ_TOKEN, WEBHOOK_SECRET, Hub, hub_settings
from tests.support import free_port, serve

LEAD_ID = "5725767000000555001"


@pytest.fixture
async def api(hub: Hub) -> AsyncIterator[tuple[Hub, str]]:
    yield hub, f"{hub.api_url}/webhooks/zoho/leads"


def secret_header(hub: Hub, value: str = WEBHOOK_SECRET) -> dict[str, str]:
    return {hub.settings.zoho_webhook_secret_header: value}


async def test_missing_and_wrong_secret_are_401(api: tuple[Hub, str]) -> None:
    hub, url = api
    missing = await hub.http.post(url, data={"lead_id": LEAD_ID})
    assert missing.status_code == 401
    assert "missing X-Zoho-Webhook-Token" in missing.json()["detail"]
    wrong = await hub.http.post(url, data={"lead_id": LEAD_ID}, headers=secret_header(hub, "nope"))
    assert wrong.status_code == 401
    assert "invalid" in wrong.json()["detail"]
    assert await hub.count_workflows(f"WorkflowId = 'lead-{LEAD_ID}'") == 0


async def test_oversized_body_is_413(api: tuple[Hub, str]) -> None:
    hub, url = api
    body = {"lead_id": LEAD_ID, "notes": "x" * (hub.settings.webhook_max_body_bytes + 1)}
    response = await hub.http.post(url, json=body, headers=secret_header(hub))
    assert response.status_code == 413

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit holds while streaming
        for _ in range(300):
            yield b"x" * 1024

    streamed = await hub.http.post(
        url, content=chunks(), headers={**secret_header(hub), "content-type": "application/json"}
    )
    assert streamed.status_code == 413


@pytest.mark.parametrize(
    ("body", "content_type", "status", "message"),
    [
        ({"state": "SP"}, "json", 422, "lead_id: Field required"),
        ({"lead_id": "12ab"}, "json", 422, "lead_id: String should match pattern"),
        ({"lead_id": ""}, "form", 422, "lead_id"),
        ("[1, 2]", "raw-json", 422, "JSON body must be an object"),
        ("{not json", "raw-json", 400, "not valid JSON"),
        ("lead_id=1", "text/plain", 415, "content type must be"),
    ],
)
async def test_malformed_bodies_name_the_problem(
    api: tuple[Hub, str], body: object, content_type: str, status: int, message: str
) -> None:
    hub, url = api
    headers = secret_header(hub)
    if content_type == "json":
        response = await hub.http.post(url, json=body, headers=headers)
    elif content_type == "form":
        response = await hub.http.post(url, data=body, headers=headers)  # type: ignore[arg-type]
    else:
        ctype = "application/json" if content_type == "raw-json" else content_type
        response = await hub.http.post(url, content=str(body), headers={**headers, "content-type": ctype})
    assert response.status_code == status
    assert message in response.json()["detail"]


async def test_id_alias_and_extra_merge_fields_are_accepted(api: tuple[Hub, str]) -> None:
    hub, url = api
    lead_id = await hub.create_lead(State="SP", City="Santos")
    body = json.dumps({"id": lead_id, "Lead_Source": "Site", "unknown": "ignored"})
    response = await hub.http.post(
        url, content=body, headers={**secret_header(hub), "content-type": "application/json; charset=utf-8"}
    )
    assert response.status_code == 202
    assert response.json()["lead_id"] == lead_id
    await hub.wait_for_status(lead_id, "delivered")


async def test_temporal_unreachable_is_503_with_retry_after(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens here
    settings = hub_settings(
        sqlite_url, dead, "http://127.0.0.1:9", task_queue, webhook_ack_timeout_seconds=1.0
    )
    async with serve(create_app(settings)) as base, httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            f"{base}/webhooks/zoho/leads",
            data={"lead_id": LEAD_ID},
            headers={settings.zoho_webhook_secret_header: WEBHOOK_SECRET},
        )
        assert response.status_code == 503
        assert response.headers["retry-after"] == str(settings.temporal_unavailable_retry_after_seconds)
        assert "retry later" in response.json()["detail"]
        deal = await http.post(
            f"{base}/webhooks/zoho/opportunities",
            data={"deal_id": LEAD_ID, "stage": "Qualification"},
            headers={settings.zoho_webhook_secret_header: WEBHOOK_SECRET},
        )
        assert deal.status_code == 503
        assert deal.headers["retry-after"] == str(settings.temporal_unavailable_retry_after_seconds)
        ready = await http.get(f"{base}/readyz")
        assert ready.status_code == 503
        assert ready.json()["temporal"].startswith("unavailable")
        metrics = (await http.get(f"{base}/metrics")).text
        assert 'hub_webhooks_total{outcome="unavailable",source="zoho_leads"}' in metrics
    # Nothing was started behind the 503.
    assert (await temporal_env.client.count_workflows(f"WorkflowId = 'lead-{LEAD_ID}'")).count == 0


async def test_read_api_needs_token_and_answers_404(hub: Hub) -> None:
    url = f"{hub.api_url}/v1/leads/{LEAD_ID}"
    assert (await hub.http.get(url)).status_code == 401
    assert (await hub.http.get(url, headers={"Authorization": "Bearer wrong"})).status_code == 401
    auth = {"Authorization": f"Bearer {READ_TOKEN}"}
    assert (await hub.http.get(url, headers=auth)).status_code == 404
    assert (await hub.http.get(f"{hub.api_url}/v1/leads/abc", headers=auth)).status_code == 422


async def test_a_rotating_secret_is_accepted_alongside_the_new_one_until_removed(
    sqlite_url: str, task_queue: str
) -> None:
    """Both secrets authenticate (the body is then checked: 422), any other gets 401."""
    dead = f"127.0.0.1:{free_port()}"  # authentication and validation come before Temporal
    rotating = hub_settings(
        sqlite_url, dead, "http://127.0.0.1:9", task_queue, zoho_webhook_previous_secret=WEBHOOK_SECRET,
        zoho_webhook_secret="new-secret",
    )  # fmt: skip
    done = rotating.model_copy(update={"zoho_webhook_previous_secret": SecretStr("")})
    header = rotating.zoho_webhook_secret_header
    statuses = {}
    for name, settings in (("rotating", rotating), ("done", done)):
        async with serve(create_app(settings)) as base, httpx.AsyncClient(timeout=30) as http:
            for secret in ("new-secret", WEBHOOK_SECRET, "other"):
                answer = await http.post(f"{base}/webhooks/zoho/leads", json={}, headers={header: secret})
                statuses[name, secret] = answer.status_code
    assert statuses == {
        ("rotating", "new-secret"): 422, ("rotating", WEBHOOK_SECRET): 422, ("rotating", "other"): 401,
        ("done", "new-secret"): 422, ("done", WEBHOOK_SECRET): 401, ("done", "other"): 401,
    }  # fmt: skip
