"""VTEX: OMS orders, Feed v3 with a fake clock, the Orders hook config (ping) and hook deliveries."""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from simulators import create_app
from simulators.vtex_orders import MASKED_EMAIL_DOMAIN, parse_ticks
from tests.simulators.conftest import (
    VTEX_HEADERS,
    VTEX_HOOK_SECRET,
    FakeClock,
    live_server,
    make_config,
)
from tests.support import free_port

OMS_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}\+00:00$")
HOOK_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z$")
FEED_URL = "/vtex/api/orders/feed"
HOOK_CONFIG_URL = "/vtex/api/orders/hook/config"
HOOK_FILTER = {"type": "FromWorkflow", "status": ["payment-approved", "invoiced", "canceled"]}
STATES = ["payment-pending", "payment-approved", "ready-for-handling"]


@pytest.fixture
def received() -> list[dict[str, Any]]:
    return []


@pytest.fixture
def answers() -> list[int]:
    """Status codes the receiver answers with, in order; 200 once they run out."""
    return []


@pytest.fixture
def receiver_url(received: list[dict[str, Any]], answers: list[int]) -> Iterator[str]:
    """A stand-in for the project's API that keeps every POST it gets, on any path."""
    receiver = FastAPI()

    @receiver.post("/{path:path}")
    async def hook(path: str, request: Request) -> JSONResponse:
        body = json.loads(await request.body())
        received.append({"path": f"/{path}", "headers": dict(request.headers), "body": body})
        return JSONResponse({}, status_code=answers.pop(0) if answers else 200)

    with live_server(lambda _: receiver) as url:
        yield url


@pytest.fixture
async def sim(receiver_url: str, clock: FakeClock) -> AsyncIterator[httpx.AsyncClient]:
    """The simulators in-process (fake clock), posting hooks to the live receiver."""
    app = create_app(make_config(api_url=receiver_url), clock=clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sim.test") as client,
    ):
        yield client


async def new_order(client: httpx.AsyncClient, **overrides: object) -> dict[str, Any]:
    response = await client.post("/_control/vtex/orders", json={"overrides": overrides})
    assert response.status_code == 200, response.text
    order: dict[str, Any] = response.json()["order"]
    return order


async def move(
    client: httpx.AsyncClient, order_id: str, states: list[str], delivery: str = "in_order"
) -> dict[str, Any]:
    body = {"states": states, "delivery": delivery}
    response = await client.post(f"/_control/vtex/orders/{order_id}/states", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def counters(client: httpx.AsyncClient) -> dict[str, int]:
    vtex: dict[str, int] = (await client.get("/_control/counters")).json()["vtex"]
    return vtex


async def read_feed(client: httpx.AsyncClient, maxlot: int = 10) -> list[dict[str, Any]]:
    response = await client.get(FEED_URL, params={"maxlot": maxlot}, headers=VTEX_HEADERS)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()
    return items


def ticks(value: str) -> int:
    parsed = parse_ticks(value)
    assert parsed is not None, value
    return parsed


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"X-VTEX-API-AppKey": VTEX_HEADERS["X-VTEX-API-AppKey"]},
        {**VTEX_HEADERS, "X-VTEX-API-AppToken": "wrong"},
        {**VTEX_HEADERS, "X-VTEX-API-AppKey": "vtexappkey-other-store"},
    ],
)
async def test_every_api_call_needs_the_app_key_and_token(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    order = await new_order(client)
    calls = [
        client.get(f"/vtex/api/oms/pvt/orders/{order['orderId']}", headers=headers),
        client.get(FEED_URL, headers=headers),
        client.post(FEED_URL, json={"handles": []}, headers=headers),
        client.get(HOOK_CONFIG_URL, headers=headers),
        client.post(HOOK_CONFIG_URL, json={"filter": {}, "hook": {"url": "http://x.test"}}, headers=headers),
    ]
    for call in calls:
        refused = await call
        assert refused.status_code == 401
        assert "AppToken" in refused.json()["error"]["message"]
    vtex = await counters(client)
    assert (vtex["oms_gets"], vtex["feed_reads"], vtex["feed_commits"], vtex["pings_sent"]) == (1, 1, 1, 0)


async def test_unknown_order_is_404(client: httpx.AsyncClient) -> None:
    response = await client.get("/vtex/api/oms/pvt/orders/1480570000000-01", headers=VTEX_HEADERS)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "OMS003"
    assert (await client.get("/_control/vtex/orders/1480570000000-01")).status_code == 404
    states = {"states": ["invoiced"]}
    assert (await client.post("/_control/vtex/orders/nope-01/states", json=states)).status_code == 404


async def test_order_document_has_the_oms_shape(client: httpx.AsyncClient) -> None:
    created = await new_order(client)
    response = await client.get(f"/vtex/api/oms/pvt/orders/{created['orderId']}", headers=VTEX_HEADERS)
    assert response.status_code == 200
    order = response.json()
    assert order == created
    assert re.fullmatch(r"\d{13}-01", order["orderId"])
    assert (order["status"], order["statusDescription"]) == ("order-created", "Processando")
    assert (order["origin"], order["salesChannel"]) == ("Marketplace", "1")
    assert OMS_TIME.match(order["creationDate"]) and OMS_TIME.match(order["lastChange"])
    totals = {total["id"]: total for total in order["totals"]}
    assert list(totals) == ["Items", "Discounts", "Shipping", "Tax"]
    assert totals["Items"]["name"] == "Total dos Itens"
    assert all(type(total["value"]) is int for total in order["totals"])
    assert type(order["value"]) is int
    assert order["value"] == sum(total["value"] for total in order["totals"])
    assert totals["Discounts"]["value"] <= 0
    assert totals["Items"]["value"] == sum(item["price"] * item["quantity"] for item in order["items"])
    for item in order["items"]:
        assert {"uniqueId", "id", "productId", "refId", "name", "quantity"} <= set(item)
        assert all(type(item[key]) is int for key in ("price", "listPrice", "sellingPrice", "quantity"))
        assert item["sellingPrice"] <= item["price"] <= item["listPrice"]
    profile = order["clientProfileData"]
    assert {"email", "firstName", "lastName", "document", "userProfileId"} <= set(profile)
    assert re.fullmatch(r"\d{11}", profile["document"])
    address = order["shippingData"]["address"]
    assert address["country"] == "BRA"
    assert re.fullmatch(r"\d{5}-\d{3}", address["postalCode"])
    assert address["state"] in {"SP", "RJ", "MG", "PR", "RS"}


async def test_about_a_third_of_emails_are_masked(client: httpx.AsyncClient) -> None:
    emails = [(await new_order(client))["clientProfileData"]["email"] for _ in range(60)]
    masked = [email for email in emails if email.endswith(f"@{MASKED_EMAIL_DOMAIN}")]
    assert 10 <= len(masked) <= 30
    assert all(re.fullmatch(r"[0-9a-f]{32}@ct\.vtex\.com\.br", email) for email in masked)
    assert len({(await new_order(client))["orderId"] for _ in range(5)}) == 5


async def test_overrides_merge_into_the_generated_order(client: httpx.AsyncClient) -> None:
    order = await new_order(
        client, value=-5, creationDate="not a date", clientProfileData={"email": "bad@@example.com"}
    )
    assert (order["value"], order["creationDate"]) == (-5, "not a date")
    assert order["clientProfileData"]["email"] == "bad@@example.com"
    assert order["clientProfileData"]["firstName"]  # nested objects merge key by key
    assert order["totals"][0]["id"] == "Items"
    refused = await client.post("/_control/vtex/orders", json={"value": 1})
    assert refused.status_code == 422  # fields go under "overrides"
    assert (await client.post("/_control/vtex/orders")).status_code == 200


@pytest.mark.parametrize(
    ("delivery", "sent"),
    [
        ("in_order", STATES),
        ("reversed", STATES[::-1]),
        ("repeated", [state for state in STATES for _ in range(2)]),
        ("repeated_reversed", [state for state in STATES[::-1] for _ in range(2)]),
        ("none", []),
    ],
)
async def test_states_fire_hooks_as_the_delivery_mode_says(
    sim: httpx.AsyncClient, received: list[dict[str, Any]], delivery: str, sent: list[str]
) -> None:
    order = await new_order(sim)
    assert received == []  # creating an order sends nothing
    result = await move(sim, order["orderId"], STATES, delivery)

    moved = result["order"]
    assert (moved["status"], moved["statusDescription"]) == ("ready-for-handling", "Pronto para o Manuseio")
    shown = (await sim.get(f"/_control/vtex/orders/{order['orderId']}")).json()
    assert shown["order"] == moved
    hooks = shown["hooks"]
    assert [hook["State"] for hook in hooks] == STATES
    assert [hook["LastState"] for hook in hooks] == ["order-created", *STATES[:-1]]
    changes = [order["lastChange"], *(hook["CurrentChange"] for hook in hooks)]
    assert all(HOOK_TIME.match(hook["CurrentChange"]) for hook in hooks)
    assert [ticks(hook["LastChange"]) for hook in hooks] == [ticks(change) for change in changes[:-1]]
    assert all(ticks(a) < ticks(b) for a, b in itertools.pairwise(changes))
    assert ticks(moved["lastChange"]) == ticks(hooks[-1]["CurrentChange"])
    assert OMS_TIME.match(moved["lastChange"])
    assert hooks[0] == {
        "Domain": "Marketplace",
        "OrderId": order["orderId"],
        "State": "payment-pending",
        "LastState": "order-created",
        "LastChange": order["lastChange"].replace("+00:00", "Z"),
        "CurrentChange": hooks[0]["CurrentChange"],
        "Origin": {"Account": "teststore", "Key": VTEX_HEADERS["X-VTEX-API-AppKey"]},
    }

    by_state = {hook["State"]: hook for hook in hooks}
    assert [call["body"] for call in received] == [by_state[state] for state in sent]
    for call in received:
        assert call["path"] == "/webhooks/vtex/orders"
        assert call["headers"]["x-vtex-hook-secret"] == VTEX_HOOK_SECRET
        assert call["headers"]["content-type"] == "application/json"
    assert result["deliveries"] == [
        {"state": state, "current_change": by_state[state]["CurrentChange"], "status_code": 200}
        for state in sent
    ]
    # The feed gets every change, whatever became of the hooks.
    assert [item["state"] for item in await read_feed(sim)] == STATES
    assert (await counters(sim))["hooks_sent"] == len(sent)


async def test_failed_deliveries_are_reported_and_the_rest_still_go(
    sim: httpx.AsyncClient, received: list[dict[str, Any]], answers: list[int]
) -> None:
    order = await new_order(sim)
    answers.append(500)
    result = await move(sim, order["orderId"], ["payment-approved", "invoiced"])
    assert [d["status_code"] for d in result["deliveries"]] == [500, 200]
    assert len(received) == 2

    app = create_app(make_config(api_url=f"http://127.0.0.1:{free_port()}"))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sim.test") as client,
    ):
        order = await new_order(client)
        result = await move(client, order["orderId"], ["canceled"])
        assert result["order"]["status"] == "canceled"
        assert [d["status_code"] for d in result["deliveries"]] == [None]
        assert (await counters(client))["hooks_sent"] == 1


async def test_last_change_keeps_seven_digits_and_only_moves_forward(client: httpx.AsyncClient) -> None:
    order = await new_order(client, lastChange="2099-01-01T00:00:00.9999999+00:00")
    result = await move(client, order["orderId"], ["payment-pending", "payment-approved"], "none")
    assert result["order"]["lastChange"] == "2099-01-01T00:00:01.0000001+00:00"
    hooks = (await client.get(f"/_control/vtex/orders/{order['orderId']}")).json()["hooks"]
    assert [(hook["LastChange"], hook["CurrentChange"]) for hook in hooks] == [
        ("2099-01-01T00:00:00.9999999Z", "2099-01-01T00:00:01.0000000Z"),
        ("2099-01-01T00:00:01.0000000Z", "2099-01-01T00:00:01.0000001Z"),
    ]
    garbled = await new_order(client, lastChange="not a date")
    result = await move(client, garbled["orderId"], ["canceled"], "none")
    assert OMS_TIME.match(result["order"]["lastChange"])
    hooks = (await client.get(f"/_control/vtex/orders/{garbled['orderId']}")).json()["hooks"]
    assert hooks[0]["LastChange"] == "not a date"


async def test_unknown_states_and_deliveries_are_refused(client: httpx.AsyncClient) -> None:
    order = await new_order(client)
    url = f"/_control/vtex/orders/{order['orderId']}/states"
    bodies: list[dict[str, object]] = [
        {"states": ["shipped"]},
        {"states": []},
        {"states": ["invoiced"], "delivery": "random"},
    ]
    for body in bodies:
        assert (await client.post(url, json=body)).status_code == 422
    assert (await client.get(f"/_control/vtex/orders/{order['orderId']}")).json()["hooks"] == []


async def test_saved_hook_config_is_pinged_and_then_receives_the_hooks(
    sim: httpx.AsyncClient, received: list[dict[str, Any]], receiver_url: str
) -> None:
    hook = {"url": f"{receiver_url}/custom/vtex", "headers": {"X-Store-Secret": "s3cret"}}
    saved = await sim.post(HOOK_CONFIG_URL, json={"filter": HOOK_FILTER, "hook": hook}, headers=VTEX_HEADERS)
    assert saved.status_code == 200, saved.text
    assert saved.json() == {"filter": HOOK_FILTER, "hook": hook}
    [ping] = received
    assert ping["body"] == {"hookConfig": "ping"}
    assert (ping["path"], ping["headers"]["x-store-secret"]) == ("/custom/vtex", "s3cret")
    got = await sim.get(HOOK_CONFIG_URL, headers=VTEX_HEADERS)
    assert (got.status_code, got.json()) == (200, saved.json())

    order = await new_order(sim)
    await move(sim, order["orderId"], ["payment-approved"])
    delivered = received[1]
    assert (delivered["path"], delivered["headers"]["x-store-secret"]) == ("/custom/vtex", "s3cret")
    assert "x-vtex-hook-secret" not in delivered["headers"]
    assert delivered["body"]["State"] == "payment-approved"

    control = (await sim.get("/_control/vtex/hook")).json()
    assert (control["config"], control["saves"]) == (saved.json(), 1)
    vtex = await counters(sim)
    assert (vtex["hook_config_saves"], vtex["pings_sent"], vtex["hooks_sent"]) == (1, 1, 1)


async def test_re_saving_the_hook_is_visible(sim: httpx.AsyncClient, receiver_url: str) -> None:
    body = {"filter": HOOK_FILTER, "hook": {"url": f"{receiver_url}/webhooks/vtex/orders"}}
    assert (await sim.post(HOOK_CONFIG_URL, json=body, headers=VTEX_HEADERS)).status_code == 200
    first = (await sim.get("/_control/vtex/hook")).json()
    await asyncio.sleep(0.002)  # distinct save times even on a coarse clock
    assert (await sim.post(HOOK_CONFIG_URL, json=body, headers=VTEX_HEADERS)).status_code == 200
    second = (await sim.get("/_control/vtex/hook")).json()
    assert (first["saves"], second["saves"]) == (1, 2)
    assert first["last_saved_at"] < second["last_saved_at"]
    assert second["config"]["hook"]["headers"] == {}
    # VTEX drops a hook idle for three days; the control API does it at once.
    assert (await sim.delete("/_control/vtex/hook")).json() == {"deleted": True}
    assert (await sim.get(HOOK_CONFIG_URL, headers=VTEX_HEADERS)).status_code == 404
    assert (await sim.get("/_control/vtex/hook")).json()["config"] is None


async def test_hook_config_is_refused_when_the_ping_fails(
    sim: httpx.AsyncClient, received: list[dict[str, Any]], answers: list[int], receiver_url: str
) -> None:
    answers.append(503)
    body = {"filter": HOOK_FILTER, "hook": {"url": f"{receiver_url}/webhooks/vtex/orders"}}
    refused = await sim.post(HOOK_CONFIG_URL, json=body, headers=VTEX_HEADERS)
    assert refused.status_code == 400
    assert "503" in refused.json()["error"]["message"]
    assert len(received) == 1

    unreachable = {"filter": HOOK_FILTER, "hook": {"url": f"http://127.0.0.1:{free_port()}/hook"}}
    refused = await sim.post(HOOK_CONFIG_URL, json=unreachable, headers=VTEX_HEADERS)
    assert refused.status_code == 400
    assert "ConnectError" in refused.json()["error"]["message"]

    for invalid in ({"filter": HOOK_FILTER}, {"filter": HOOK_FILTER, "hook": {"url": "ftp://x"}}):
        assert (await sim.post(HOOK_CONFIG_URL, json=invalid, headers=VTEX_HEADERS)).status_code == 400

    assert (await sim.get(HOOK_CONFIG_URL, headers=VTEX_HEADERS)).status_code == 404
    control = (await sim.get("/_control/vtex/hook")).json()
    assert control == {"config": None, "saves": 0, "last_saved_at": None}
    vtex = await counters(sim)
    assert (vtex["pings_sent"], vtex["hook_config_saves"]) == (2, 0)


async def test_feed_items_hide_after_a_read_and_return_unless_committed(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    first, second = await new_order(client), await new_order(client)
    await move(client, first["orderId"], ["payment-pending", "payment-approved"], "none")
    await move(client, second["orderId"], ["canceled"], "none")

    lot = await read_feed(client, maxlot=2)
    assert [(item["orderId"], item["state"]) for item in lot] == [
        (first["orderId"], "payment-pending"),
        (first["orderId"], "payment-approved"),
    ]
    hooks = (await client.get(f"/_control/vtex/orders/{first['orderId']}")).json()["hooks"]
    assert lot[0] == {
        "eventId": lot[0]["eventId"],
        "handle": lot[0]["handle"],
        "domain": "Marketplace",
        "state": "payment-pending",
        "lastState": "order-created",
        "orderId": first["orderId"],
        "lastChange": hooks[0]["LastChange"],
        "currentChange": hooks[0]["CurrentChange"],
    }
    rest = await read_feed(client)
    assert [item["state"] for item in rest] == ["canceled"]
    assert await read_feed(client) == []

    clock.advance(59)
    assert await read_feed(client) == []
    clock.advance(1)
    again = await read_feed(client)
    assert [item["handle"] for item in again] == [item["handle"] for item in (*lot, *rest)]

    handles = {"handles": [lot[0]["handle"], rest[0]["handle"], "not-a-handle"]}
    committed = await client.post(FEED_URL, json=handles, headers=VTEX_HEADERS)
    assert committed.status_code == 204
    clock.advance(60)
    assert [item["handle"] for item in await read_feed(client)] == [lot[1]["handle"]]

    feed = (await client.get("/_control/vtex/feed")).json()["items"]
    assert [(item["committed"], item["visible"], item["reads"]) for item in feed] == [
        (True, False, 2),
        (False, False, 3),
        (True, False, 2),
    ]
    vtex = await counters(client)
    assert (vtex["feed_reads"], vtex["feed_commits"]) == (6, 1)


async def test_feed_lot_size_and_commit_body_are_checked(client: httpx.AsyncClient) -> None:
    for maxlot in ("0", "11", "ten"):
        refused = await client.get(FEED_URL, params={"maxlot": maxlot}, headers=VTEX_HEADERS)
        assert refused.status_code == 400
    for body in ({"handles": "h1"}, {"handles": [1]}, ["h1"]):
        assert (await client.post(FEED_URL, json=body, headers=VTEX_HEADERS)).status_code == 400
    assert (await client.post(FEED_URL, content=b"{", headers=VTEX_HEADERS)).status_code == 400


async def test_rate_limit_carries_retry_after_and_request_times_are_kept(
    client: httpx.AsyncClient, clock: FakeClock
) -> None:
    order = await new_order(client)
    url = f"/vtex/api/oms/pvt/orders/{order['orderId']}"
    fault = {"target": "vtex", "rate_limit_count": 1, "retry_after_seconds": 7}
    assert (await client.post("/_control/faults", json=fault)).status_code == 200
    limited = await client.get(url, headers=VTEX_HEADERS)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "7"
    clock.advance(7.5)
    assert (await client.get(url, headers=VTEX_HEADERS)).status_code == 200

    times = (await client.get(f"/_control/vtex/orders/{order['orderId']}/requests")).json()["times"]
    assert times == [1000.0, 1007.5]
    assert (await client.get("/_control/vtex/orders/other-01/requests")).json() == {"times": []}
    vtex = await counters(client)
    assert (vtex["oms_gets"], vtex["faults_served"]) == (2, 1)


async def test_unavailable_applies_to_the_feed_but_not_to_the_hook_config(client: httpx.AsyncClient) -> None:
    await client.post("/_control/faults", json={"target": "vtex", "error_5xx_count": 2})
    assert (await client.get(FEED_URL, headers=VTEX_HEADERS)).status_code == 503
    assert (await client.get(HOOK_CONFIG_URL, headers=VTEX_HEADERS)).status_code == 404
    committed = await client.post(FEED_URL, json={"handles": []}, headers=VTEX_HEADERS)
    assert committed.status_code == 503
    assert (await client.get(FEED_URL, headers=VTEX_HEADERS)).status_code == 200
    assert (await counters(client))["faults_served"] == 2


async def test_seeded_apps_create_the_same_orders(client: httpx.AsyncClient) -> None:
    def stable(order: dict[str, Any]) -> dict[str, Any]:
        return {key: value for key, value in order.items() if key not in ("creationDate", "lastChange")}

    first = [await new_order(client) for _ in range(3)]
    await move(client, first[0]["orderId"], ["payment-pending"], "none")
    handle = (await read_feed(client))[0]["handle"]
    assert (await client.post("/_control/reset")).status_code == 200

    assert (await counters(client)) == dict.fromkeys(await counters(client), 0)
    assert (await client.get("/_control/vtex/feed")).json() == {"items": []}
    again = [await new_order(client) for _ in range(3)]
    assert [order["orderId"] for order in again] == [f"148057041200{n}-01" for n in (1, 2, 3)]
    assert [stable(order) for order in again] == [stable(order) for order in first]
    await move(client, again[0]["orderId"], ["payment-pending"], "none")
    assert (await read_feed(client))[0]["handle"] == handle

    other = create_app(make_config(seed=8))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(other), base_url="http://sim.test") as http:
        assert stable(await new_order(http)) != stable(first[0])


async def test_unseeded_order_ids_follow_the_clock() -> None:
    app = create_app(make_config(seed=None))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://sim.test") as http:
        before = int(time.time() * 1000)
        order_id = (await new_order(http))["orderId"]
    sequence = int(order_id.removesuffix("-01"))
    assert before - 1000 <= sequence <= int(time.time() * 1000)
