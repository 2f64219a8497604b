from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import httpx

from tests.simulators.conftest import EVENT_SECRET

EVENT = {"type": "LeadDistribuidoComSucesso", "timestamp": "2026-11-24T12:15:00Z", "data": {"lead_id": "1"}}


def signed(
    body: bytes, message_id: str, timestamp: int | None = None, secret: str = EVENT_SECRET
) -> dict[str, str]:
    """Standard Webhooks headers, computed by hand so the test does not trust the library under test."""
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{message_id}.{stamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": message_id,
        "webhook-timestamp": stamp,
        "webhook-signature": f"v1,{base64.b64encode(digest).decode()}",
        "content-type": "application/json",
    }


async def post_event(client: httpx.AsyncClient, headers: dict[str, str], body: bytes) -> httpx.Response:
    return await client.post("/events/crm-dashboard", content=body, headers=headers)


async def test_signed_event_is_kept_once(client: httpx.AsyncClient) -> None:
    body = json.dumps(EVENT).encode()
    first = await post_event(client, signed(body, "msg_1"), body)
    assert (first.status_code, first.json()["status"]) == (200, "received")
    repeat = await post_event(client, signed(body, "msg_1"), body)
    assert (repeat.status_code, repeat.json()["status"]) == (200, "duplicate")

    listed = (await client.get("/_control/events/crm-dashboard")).json()
    assert [(event["id"], event["type"], event["data"]) for event in listed["events"]] == [
        ("msg_1", "LeadDistribuidoComSucesso", {"lead_id": "1"})
    ]
    counters = (await client.get("/_control/counters")).json()["events"]["crm-dashboard"]
    assert counters == {"received": 1, "duplicates": 1, "invalid": 0, "unavailable": 0, "rejected": 0}


async def test_bad_events_are_rejected(client: httpx.AsyncClient) -> None:
    body = json.dumps(EVENT).encode()
    other_secret = "whsec_" + base64.b64encode(b"another-secret").decode()
    tampered = signed(body, "msg_2")
    cases = [
        signed(body, "msg_2", secret=other_secret),
        signed(body, "msg_2", timestamp=int(time.time()) - 6 * 60),
        signed(body, "msg_2", timestamp=int(time.time()) + 6 * 60),
        {**tampered, "webhook-signature": "v1"},
        {key: value for key, value in tampered.items() if key != "webhook-signature"},
    ]
    for headers in cases:
        response = await post_event(client, headers, body)
        assert response.status_code == 400, headers
    assert (await post_event(client, tampered, body.replace(b'"1"', b'"2"'))).status_code == 400
    counters = (await client.get("/_control/counters")).json()["events"]["crm-dashboard"]
    assert counters == {"received": 0, "duplicates": 0, "invalid": 6, "unavailable": 0, "rejected": 0}
    # A rejected delivery does not burn its id: the genuine one is still accepted.
    assert (await post_event(client, tampered, body)).json()["status"] == "received"


async def test_a_subscriber_away_or_refusing_answers_as_set_then_takes_the_event(
    client: httpx.AsyncClient,
) -> None:
    body = json.dumps(EVENT).encode()
    faults = {"target": "events/crm-dashboard", "error_5xx_count": 1, "rate_limit_count": 1, "reject": True}
    (await client.post("/_control/faults", json=faults)).raise_for_status()
    assert (await post_event(client, signed(body, "msg_3"), body)).status_code == 503
    limited = await post_event(client, signed(body, "msg_3"), body)
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "1")
    refused = await post_event(client, signed(body, "msg_3"), body)
    assert (refused.status_code, refused.json()["error"]) == (422, "unprocessable")
    (await client.delete("/_control/faults/events/crm-dashboard")).raise_for_status()
    assert (await post_event(client, signed(body, "msg_3"), body)).json()["status"] == "received"
    counters = (await client.get("/_control/counters")).json()["events"]["crm-dashboard"]
    assert counters == {"received": 1, "duplicates": 0, "invalid": 0, "unavailable": 2, "rejected": 1}
