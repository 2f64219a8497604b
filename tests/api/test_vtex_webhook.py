"""The VTEX Orders hook: ping answered, secret and account checked, bad hooks 4xx, 503 when not durable."""

from __future__ import annotations

import json

import httpx
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from api.metrics import WEBHOOKS
from core.settings import Settings
from tests.hub import VTEX_ACCOUNT, VTEX_HOOK_SECRET, Hub, hub_settings
from tests.support import free_port, serve

ORDER_ID = "1480570999001-01"


def hook(**changes: object) -> dict[str, object]:
    """A hook exactly as REFERENCE.md shows VTEX sending it (7 fractional digits)."""
    payload: dict[str, object] = {
        "Domain": "Fulfillment",
        "OrderId": ORDER_ID,
        "State": "ready-for-handling",
        "LastState": "window-to-cancel",
        "LastChange": "2026-11-24T17:11:39.2550122Z",
        "CurrentChange": "2026-11-24T17:12:48.0965893Z",
        "Origin": {"Account": VTEX_ACCOUNT, "Key": "vtexappkey-appvtex"},
    }
    payload.update(changes)
    return payload


async def test_ping_is_answered_without_starting_anything(hub: Hub) -> None:
    response = await hub.http.post(f"{hub.api_url}/webhooks/vtex/orders", json={"hookConfig": "ping"})
    assert response.status_code == 200
    assert response.json()["status"] == "pong"


async def test_secret_header_and_origin_account_are_checked(hub: Hub) -> None:
    url = f"{hub.api_url}/webhooks/vtex/orders"
    missing = await hub.http.post(url, json=hook())
    assert missing.status_code == 401
    assert "missing X-VTEX-Hook-Secret" in missing.json()["detail"]
    wrong = await hub.post_order_hook(hook(), **{hub.settings.vtex_hook_secret_header: "nope"})
    assert wrong.status_code == 401
    other_store = await hub.post_order_hook(hook(Origin={"Account": "otherstore", "Key": "k"}))
    assert other_store.status_code == 401
    assert "otherstore" in other_store.json()["detail"]
    assert await hub.count_workflows(f"WorkflowId = 'vtex-order-{ORDER_ID}'") == 0


async def test_a_wrong_secret_is_refused_before_the_body_is_read() -> None:
    """Only a request without the secret header has its body looked at, and only to find the ping."""
    settings = Settings(environment="test", vtex_hook_secret=VTEX_HOOK_SECRET)
    app = create_app(settings)
    app.state.intake = None  # no lifespan here: nothing may reach Temporal
    transport = httpx.ASGITransport(app=app)
    url = "http://api/webhooks/vtex/orders"
    header = settings.vtex_hook_secret_header
    async with httpx.AsyncClient(transport=transport) as http:
        for body in (b"{not json", b'{"hookConfig": "ping"}', b"\xff" * 10, b"x" * 1_000_000):
            wrong = await http.post(url, content=body, headers={header: "nope"})
            assert (wrong.status_code, wrong.json()["detail"]) == (401, f"invalid {header}"), body[:20]
        pong = await http.post(url, json={"hookConfig": "ping"})
        assert (pong.status_code, pong.json()["status"]) == (200, "pong")
        padded_ping = b" " * 2048 + b'{"hookConfig": "ping"}'  # longer than a ping is
        for body in (b"{not json", b"[]", b'{"hookConfig": "other"}', padded_ping):
            missing = await http.post(url, content=body)
            assert (missing.status_code, missing.json()["detail"]) == (401, f"missing {header} header")
        right = await http.post(url, content=b"{not json", headers={header: VTEX_HOOK_SECRET})
        assert right.status_code == 400  # the secret holds: now the body is read, and it is not JSON


async def test_malformed_hooks_are_4xx_naming_the_problem(hub: Hub) -> None:
    url = f"{hub.api_url}/webhooks/vtex/orders"
    headers = {hub.settings.vtex_hook_secret_header: VTEX_HOOK_SECRET}
    not_json = await hub.http.post(url, content=b"{not json", headers=headers)
    assert not_json.status_code == 400  # as for the Zoho webhooks: not JSON is 400, wrong JSON 422
    assert "not valid JSON" in not_json.json()["detail"]
    a_list = await hub.http.post(url, json=[hook()], headers=headers)
    assert a_list.status_code == 422
    no_id = hook()
    del no_id["OrderId"]
    assert "OrderId" in (await hub.post_order_hook(no_id)).json()["detail"]
    bad_time = await hub.post_order_hook(hook(CurrentChange="yesterday"))
    assert bad_time.status_code == 422
    assert "CurrentChange" in bad_time.json()["detail"]
    no_time = hook()
    del no_time["LastChange"], no_time["CurrentChange"]
    assert (await hub.post_order_hook(no_time)).status_code == 422
    # Outside the years 1 to 9999 once in UTC: no sortable change key, so refused, not a 500.
    beyond = await hub.post_order_hook(hook(CurrentChange="0001-01-01T00:00:00+01:00"))
    assert (beyond.status_code, "CurrentChange" in beyond.json()["detail"]) == (422, True)
    # What Python's reader takes beyond standard JSON could not be encoded again for Temporal or stored
    # in bronze's JSON column: an acknowledged event would then fail. Refused at the door instead.
    valid = json.dumps(hook())
    for extra, reason in (
        ('"Extra": NaN', "NaN is not a JSON value"),
        ('"Extra": -Infinity', "-Infinity is not a JSON value"),
        ('"Extra": 1e400', "number out of range: 1e400"),
        ('"Extra": "\\ud800"', "lone surrogate"),
    ):
        body = valid[:-1] + ", " + extra + "}"
        refused = await hub.http.post(url, content=body.encode(), headers=headers)
        assert (refused.status_code, reason in refused.json()["detail"]) == (400, True), (extra, refused.text)
    # Deeper than the workers' reader goes (or than Python's: a 500 once), well within the size limit:
    # the sender's mistake, not a 500 nor an event acknowledged and then stuck.
    for depth in (200, 100_000):
        deep = valid[:-1] + ', "Extra": ' + "[" * depth + "]" * depth + "}"
        too_deep = await hub.http.post(url, content=deep.encode(), headers=headers)
        assert (too_deep.status_code, too_deep.json()["detail"]) == (400, "body nests too deeply"), depth
    nul = await hub.post_order_hook(hook(Origin={"Account": "a\x00b"}))
    assert (nul.status_code, nul.json()["detail"]) == (422, "body holds a NUL character (U+0000)")
    assert await hub.count_workflows(f"WorkflowId = 'vtex-order-{ORDER_ID}'") == 0


async def test_oversized_hook_is_413(hub: Hub) -> None:
    big = hook(Padding="x" * (hub.settings.webhook_max_body_bytes + 1))
    assert (await hub.post_order_hook(big)).status_code == 413


async def test_optional_fields_missing_is_accepted(hub: Hub) -> None:
    # LastState and CurrentChange are absent in some of VTEX's documented examples.
    minimal = hook()
    del minimal["LastState"], minimal["CurrentChange"]
    response = await hub.post_order_hook(minimal)
    assert response.status_code == 200, response.text
    assert response.json() == {
        "status": "accepted",
        "workflow_id": f"vtex-order-{ORDER_ID}",
        "order_id": ORDER_ID,
    }
    await hub.client.get_workflow_handle(f"vtex-order-{ORDER_ID}").terminate("test over")


async def test_temporal_unreachable_is_503(
    temporal_env: WorkflowEnvironment, sqlite_url: str, task_queue: str
) -> None:
    dead = f"127.0.0.1:{free_port()}"  # nothing listens here
    settings = hub_settings(
        sqlite_url, dead, "http://127.0.0.1:9", task_queue, webhook_ack_timeout_seconds=1.0
    )
    async with serve(create_app(settings)) as base, httpx.AsyncClient(timeout=30) as http:
        response = await http.post(
            f"{base}/webhooks/vtex/orders",
            json=hook(),
            headers={settings.vtex_hook_secret_header: VTEX_HOOK_SECRET},
        )
        assert response.status_code == 503
        assert "retry later" in response.json()["detail"]
        metrics = (await http.get(f"{base}/metrics")).text
        assert 'hub_webhooks_total{outcome="unavailable",source="vtex_orders"}' in metrics


async def test_a_sender_gone_mid_body_is_a_refused_request_not_an_error() -> None:
    """A connection closed before its declared body arrived is the sender's fault: 400 (401 without the
    secret), counted as rejected, never a 500 that pages whoever is on call."""
    settings = Settings(environment="test", vtex_hook_secret=VTEX_HOOK_SECRET)
    app = create_app(settings)
    app.state.intake = None  # no lifespan here: nothing may reach Temporal
    header = settings.vtex_hook_secret_header.lower().encode()

    async def answer(headers: list[tuple[bytes, bytes]]) -> int:
        messages = iter(
            [
                {"type": "http.request", "body": b'{"OrderId": ', "more_body": True},
                {"type": "http.disconnect"},
            ]
        )
        sent: list[dict[str, object]] = []

        async def receive() -> dict[str, object]:
            return next(messages, {"type": "http.disconnect"})

        async def send(message: dict[str, object]) -> None:
            sent.append(message)

        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
            "scheme": "http", "path": "/webhooks/vtex/orders", "raw_path": b"/webhooks/vtex/orders",
            "query_string": b"", "root_path": "", "client": ("127.0.0.1", 1), "server": ("api", 80),
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"100"), *headers],
        }  # fmt: skip
        await app(scope, receive, send)
        return int(next(m["status"] for m in sent if m["type"] == "http.response.start"))  # type: ignore[call-overload]

    def count(outcome: str) -> float:
        return WEBHOOKS.labels("vtex_orders", outcome)._value.get()

    errors, rejected = count("error"), count("rejected")
    assert await answer([(header, VTEX_HOOK_SECRET.encode())]) == 400
    assert await answer([]) == 401  # no secret: not a ping, so the secret is asked for
    assert (count("error"), count("rejected")) == (errors, rejected + 2)
