"""A sender never waits long: 503 with Retry-After within the budget, bursts shed, parameter spellings.

Budget: VTEX gives a hook 5 s; ``webhook_ack_timeout_seconds`` (2.5 s by default) bounds the whole wait
for Temporal, connecting and the SDK's retries included, so a 503 comes well inside 3.5 s.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any, cast

import httpx
import pytest
from fastapi import HTTPException
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.body import MAX_DEPTH, json_object
from api.temporal import Intake
from core.constants import SEARCH_ATTRIBUTES
from core.settings import Settings
from core.temporal import payload_codec
from core.vtex import OrderEvent
from tests.api.test_vtex_webhook import hook
from tests.conftest import TEST_CONVERTER, binary
from tests.hub import VTEX_HOOK_SECRET, WEBHOOK_SECRET, Hub, hub_settings, running_hub
from tests.support import eventually, port_of, serve

SENDER_PATIENCE_SECONDS = 3.5


class BlackHole:
    """A TCP server that accepts connections and never answers: a Temporal that hangs."""

    def __init__(self) -> None:
        self.port = 0  # the one the system gives it as it starts listening
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> BlackHole:
        self._server = await asyncio.start_server(self._swallow, "127.0.0.1", 0)
        self.port = port_of(self._server.sockets[0])
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()

    async def _swallow(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await reader.read(65536):
            pass
        writer.close()


def secret(settings: Any) -> dict[str, str]:
    return {settings.zoho_webhook_secret_header: WEBHOOK_SECRET}


def assert_prompt_503(timed: list[tuple[httpx.Response, float]], retry_after: int) -> None:
    for response, took in timed:
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == str(retry_after)
        assert took < SENDER_PATIENCE_SECONDS, f"{response.request.url} answered after {took:.1f}s"


async def post_each_webhook(
    http: httpx.AsyncClient, base: str, settings: Any, n: int
) -> list[tuple[httpx.Response, float]]:
    """One webhook of each kind, each with how long its answer took."""
    timed = []
    for post in (
        lambda: http.post(f"{base}/webhooks/zoho/leads", data={"lead_id": f"9{n}"}, headers=secret(settings)),
        lambda: http.post(
            f"{base}/webhooks/zoho/opportunities", data={"deal_id": f"8{n}"}, headers=secret(settings)
        ),
        lambda: http.post(
            f"{base}/webhooks/vtex/orders",
            json=hook(OrderId=f"v-{n}"),
            headers={settings.vtex_hook_secret_header: VTEX_HOOK_SECRET},
        ),
    ):
        started = time.perf_counter()
        response = await post()
        timed.append((response, time.perf_counter() - started))
    return timed


async def test_503_within_budget_after_the_dev_server_is_killed(sqlite_url: str, task_queue: str) -> None:
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
        data_converter=TEST_CONVERTER,
    )
    address = env.client.service_client.config.target_host
    settings = hub_settings(sqlite_url, address, "http://127.0.0.1:9", task_queue, vtex_account="teststore")
    try:
        async with serve(create_app(settings)) as base, httpx.AsyncClient(timeout=30) as http:
            alive = await post_each_webhook(http, base, settings, 1)
            assert [response.status_code for response, _ in alive] == [202, 202, 200]
            await env.shutdown()  # the real server goes away under a connected client
            for n in (2, 3):  # the first calls after the loss, and more once the SDK knows of it
                timed = await post_each_webhook(http, base, settings, n)
                assert_prompt_503(timed, settings.temporal_unavailable_retry_after_seconds)
    finally:
        await env.shutdown()


async def test_503_within_budget_when_temporal_hangs_from_the_start(sqlite_url: str, task_queue: str) -> None:
    async with BlackHole() as hole:
        settings = hub_settings(sqlite_url, f"127.0.0.1:{hole.port}", "http://127.0.0.1:9", task_queue)
        async with serve(create_app(settings)) as base, httpx.AsyncClient(timeout=30) as http:
            timed = await post_each_webhook(http, base, settings, 1)
            assert_prompt_503(timed, settings.temporal_unavailable_retry_after_seconds)


async def test_a_burst_beyond_the_cap_is_shed_at_once(sqlite_url: str, task_queue: str) -> None:
    async with BlackHole() as hole:
        settings = hub_settings(
            sqlite_url, f"127.0.0.1:{hole.port}", "http://127.0.0.1:9", task_queue, webhook_max_in_flight=3
        )
        async with serve(create_app(settings)) as base, httpx.AsyncClient(timeout=30) as http:

            async def send(n: int) -> tuple[httpx.Response, float]:
                started = time.perf_counter()
                response = await http.post(
                    f"{base}/webhooks/zoho/leads", data={"lead_id": f"7{n}"}, headers=secret(settings)
                )
                return response, time.perf_counter() - started

            answers = await asyncio.gather(*(send(n) for n in range(10)))
    assert {response.status_code for response, _ in answers} == {503}
    shed = [took for response, took in answers if "too many webhooks in flight" in response.json()["detail"]]
    waited = [
        took for response, took in answers if "workflow engine unavailable" in response.json()["detail"]
    ]
    assert (len(shed), len(waited)) == (7, 3)
    assert max(shed) < 1.0  # shed at once, not queued behind the hanging calls
    assert min(waited) >= settings.webhook_ack_timeout_seconds * 0.9
    assert max(waited) < SENDER_PATIENCE_SECONDS


@pytest.fixture
async def api_only(temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str) -> AsyncIterator[Hub]:
    async with running_hub(temporal_env.client, sqlite_url, task_queue, worker=False) as hub:
        yield hub


@pytest.mark.parametrize("name", ["lead_id", "leadId", "LeadId", "Lead_Id", "LEAD_ID", "lead-id", "id"])
async def test_lead_id_in_the_spellings_zoho_admins_use(api_only: Hub, name: str) -> None:
    lead_id = str(5725767000000700000 + len(name) * 10 + name.count("_"))
    response = await api_only.http.post(
        f"{api_only.api_url}/webhooks/zoho/leads", data={name: lead_id}, headers=secret(api_only.settings)
    )
    assert response.status_code == 202, response.text
    assert response.json()["lead_id"] == lead_id
    # Visibility lags the start a little: wait for the run to be listed, as the lead flow tests do.
    query = f"WorkflowId = 'lead-{lead_id}'"
    assert await eventually(lambda: api_only.count_workflows(query)) == 1


@pytest.mark.parametrize(
    "fields",
    [
        {
            "dealId": "5725767000000800001",
            "Stage": "Qualification",
            "modifiedTime": "2026-11-24T10:00:00-03:00",
        },
        {"Deal_Id": "5725767000000800002", "STAGE": "Qualification", "Modified_Time": "2026-11-24T10:00:00Z"},
    ],
)
async def test_deal_fields_in_the_spellings_zoho_admins_use(api_only: Hub, fields: dict[str, str]) -> None:
    response = await api_only.http.post(
        f"{api_only.api_url}/webhooks/zoho/opportunities", json=fields, headers=secret(api_only.settings)
    )
    assert response.status_code == 202, response.text
    deal_id = response.json()["deal_id"]
    assert deal_id in fields.values()
    handle = api_only.client.get_workflow_handle(f"opportunity-{deal_id}")
    history = await handle.fetch_history()
    signal = next(e for e in history.events if e.HasField("workflow_execution_signaled_event_attributes"))
    (stored,) = signal.workflow_execution_signaled_event_attributes.input.payloads
    payload = (await payload_codec(api_only.settings).decode([stored]))[0].data.decode()  # stored encrypted
    assert '"stage":"Qualification"' in payload
    assert '"modified_time":"2026-11-24T' in payload


async def test_a_deal_change_with_a_nul_character_is_refused_not_acknowledged(api_only: Hub) -> None:
    """PostgreSQL stores no NUL in a text column: acknowledged, the change would fail for good in its
    database step, and every later change of the deal would wait behind it."""
    url = f"{api_only.api_url}/webhooks/zoho/opportunities"
    headers = secret(api_only.settings)
    form = "deal_id=5725767000000800009&stage=Won%00x&modified_time=2026-11-24T10:00:00Z"
    as_form = await api_only.http.post(
        url, content=form, headers={**headers, "content-type": "application/x-www-form-urlencoded"}
    )
    assert (as_form.status_code, as_form.json()["detail"]) == (422, "body holds a NUL character (U+0000)")
    as_json = await api_only.http.post(
        url, json={"deal_id": "5725767000000800009", "modified_by": {"name": "a\x00b"}}, headers=headers
    )
    assert as_json.status_code == 422
    assert await api_only.count_workflows("WorkflowId = 'opportunity-5725767000000800009'") == 0


@pytest.mark.parametrize(
    ("failure", "answer"),
    [
        (TimeoutError(), 503),
        (RPCError("unavailable", RPCStatusCode.UNAVAILABLE, b""), 503),
        (RPCError("overloaded", RPCStatusCode.RESOURCE_EXHAUSTED, b""), 503),
        (RuntimeError("Failed client connect: connection refused"), 503),
        (RPCError("bad search attribute", RPCStatusCode.INVALID_ARGUMENT, b""), 500),
        (KeyError("lead_id"), 500),
    ],
    ids=["timeout", "unavailable", "overloaded", "no-connection", "invalid-argument", "bug"],
)
async def test_only_an_unreachable_temporal_answers_503(
    failure: Exception, answer: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug in the hub is a 500 with its stack in the log, never disguised as an outage."""

    async def call(_client: Any, _timeout: Any) -> None:
        raise failure

    intake = Intake(cast(Client, object()), Settings(environment="test"))
    with caplog.at_level(logging.WARNING, logger="api"), pytest.raises(HTTPException) as raised:
        await intake.submit(call)
    assert raised.value.status_code == answer
    [record] = [r for r in caplog.records if r.name == "api"]
    if answer == 500:
        assert record.levelno == logging.ERROR and record.exc_info is not None
        assert raised.value.headers is None  # no Retry-After: retrying the same event cannot help
    else:
        assert record.levelno == logging.WARNING and raised.value.headers == {"Retry-After": "5"}


async def test_a_body_nested_as_deep_as_the_workers_read_is_taken_one_level_more_is_not() -> None:
    """Every payload the API takes must be readable by the workers' reader (pydantic's JSON), which
    refuses a few hundred levels: the API refuses past MAX_DEPTH, far within that."""
    at_limit = {"OrderId": "v1-01", "Extra": json.loads("[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1))}
    assert json_object(json.dumps(at_limit).encode()) == at_limit
    event = OrderEvent("v1-01", "handling", "2026-12-01T10:00:00.0000000+00:00", payload=at_limit)
    (decoded,) = await TEST_CONVERTER.decode(await TEST_CONVERTER.encode([event]), [OrderEvent])
    assert decoded == event  # a worker reads it back
    with pytest.raises(HTTPException) as refused:
        json_object(json.dumps({"a": [at_limit["Extra"]]}).encode())
    assert (refused.value.status_code, refused.value.detail) == (400, "body nests too deeply")
