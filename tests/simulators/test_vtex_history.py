"""VTEX order history: a deterministic generated history served through the OMS list API and read back."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import ValidationError

from clients.errors import TransientError
from clients.vtex import LIST_MAX_PAGES, LIST_MAX_PER_PAGE, OrderPage, VtexClient
from core.settings import Settings
from simulators import SimulatorConfig, create_app
from simulators.leads import BRT
from simulators.vtex_history import OrderHistory
from simulators.vtex_orders import parse_ticks
from tests.simulators.conftest import VTEX_HEADERS, in_process, live_server, make_config

LIST_URL = "/vtex/api/oms/pvt/orders"
OMS_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}\+00:00$")
HISTORY_ID = re.compile(r"^\d{13}-02$")
SUMMARY_FIELDS = (
    "orderId", "creationDate", "clientName", "totalValue", "status", "statusDescription", "lastChange",
    "origin", "sequence", "paymentNames", "ShippingEstimatedDate", "items",
)  # fmt: skip
SMALL = 250  # orders in most tests' history: quick to build, more than two pages of 100
HISTORY_SETTINGS = ("vtex_history_orders", "vtex_history_days", "vtex_history_end", "vtex_history_seed")


def history_config(**overrides: object) -> SimulatorConfig:
    """A test config whose history settings are the defaults, not any SIM_VTEX_HISTORY_* variable."""
    defaults = {name: SimulatorConfig.model_fields[name].default for name in HISTORY_SETTINGS}
    return make_config(**{**defaults, **overrides})


@pytest.fixture
def app() -> FastAPI:
    return create_app(history_config(vtex_history_orders=SMALL))


def window(first: str, last: str) -> str:
    return f"creationDate:[{first} TO {last}]"


def list_time(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def moment_of(timestamp: str) -> datetime:
    ticks = parse_ticks(timestamp)
    assert ticks is not None, timestamp
    return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=ticks // 10)


async def list_page(client: httpx.AsyncClient, **params: str | int) -> dict[str, Any]:
    response = await client.get(LIST_URL, params=params, headers=VTEX_HEADERS)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def every_summary(client: httpx.AsyncClient, **params: str | int) -> list[dict[str, Any]]:
    """All pages of a listing at 100 a page."""
    first = await list_page(client, per_page=100, **params)
    summaries: list[dict[str, Any]] = first["list"]
    for page in range(2, first["paging"]["pages"] + 1):
        summaries += (await list_page(client, per_page=100, page=page, **params))["list"]
    return summaries


async def history_info(client: httpx.AsyncClient, **params: str) -> dict[str, Any]:
    response = await client.get("/_control/vtex/history", params=params)
    assert response.status_code == 200, response.text
    info: dict[str, Any] = response.json()
    return info


async def counters(client: httpx.AsyncClient) -> dict[str, int]:
    vtex: dict[str, int] = (await client.get("/_control/counters")).json()["vtex"]
    return vtex


async def test_the_same_seed_gives_the_same_history_and_another_seed_another() -> None:
    seen = []
    for seed in (11, 11, 12):
        async with in_process(
            create_app(history_config(vtex_history_orders=120, vtex_history_seed=seed))
        ) as http:
            summaries = await every_summary(http, orderBy="creationDate,asc")
            some = summaries[57]["orderId"]
            got = await http.get(f"{LIST_URL}/{some}", headers=VTEX_HEADERS)
            seen.append((summaries, got.json()))
    (first, first_order), (again, again_order), (other, _) = seen
    assert again == first and again_order == first_order
    assert {s["orderId"] for s in other}.isdisjoint(s["orderId"] for s in first)
    assert [s["creationDate"] for s in other] != [s["creationDate"] for s in first]
    # The simulator's own seed (live orders) plays no part in the history.
    history = OrderHistory.from_config(history_config(vtex_history_orders=120, vtex_history_seed=11, seed=99))
    assert [history.order_id(n) for n in range(120)] == [s["orderId"] for s in first]
    assert history.document(first_order["orderId"]) == first_order


async def test_the_default_history_holds_ten_thousand_orders_over_two_years() -> None:
    config = history_config()
    assert (config.vtex_history_orders, config.vtex_history_days) == (10_000, 730)
    end = datetime(2026, 11, 1, tzinfo=UTC)
    async with in_process(create_app(config)) as http:
        info = await history_info(http)
        assert info["orders"] == 10_000
        assert end - timedelta(days=730) <= moment_of(info["first"]) < end - timedelta(days=700)
        assert end - timedelta(days=30) < moment_of(info["last"]) < end
        counted = await history_info(http, **{"from": "2000-01-01T00:00:00.000Z", "to": list_time(end)})
        assert counted["count"] == 10_000
        newest = await list_page(http)  # VTEX's defaults: 15 a page, newest first
        assert newest["paging"] == {"total": 10_000, "pages": 667, "currentPage": 1, "perPage": 15}
        assert newest["list"][0]["creationDate"] == info["last"]
    history = OrderHistory.from_config(config)
    ticks = history.creation_ticks
    assert len(ticks) == 10_000 and ticks == sorted(ticks)
    ids = {history.order_id(n) for n in range(10_000)}
    assert len(ids) == 10_000 and all(HISTORY_ID.match(order_id) for order_id in ids)
    statuses = [history.cached_document(n)["status"] for n in range(0, 10_000, 10)]
    assert set(statuses) == {"invoiced", "canceled"}
    assert 40 <= statuses.count("canceled") <= 130  # about 8 %


def test_a_history_end_without_a_zone_is_refused() -> None:
    with pytest.raises(ValidationError, match="zone"):
        make_config(vtex_history_end="2026-11-01T00:00:00")
    with pytest.raises(ValidationError, match="ISO 8601"):
        make_config(vtex_history_end="November 2026")
    assert OrderHistory.from_config(
        make_config(vtex_history_end="2026-11-01T00:00:00-03:00")
    ).end == datetime(2026, 11, 1, 3, tzinfo=UTC)


async def test_pages_have_vtexs_shape_and_cover_the_history_once(client: httpx.AsyncClient) -> None:
    info = await history_info(client)
    everything = window("2000-01-01T00:00:00.000Z", "2100-01-01T00:00:00.000Z")
    pages = [
        await list_page(
            client, f_creationDate=everything, page=page, per_page=100, orderBy="creationDate,asc"
        )
        for page in (1, 2, 3, 4)
    ]
    assert [page["paging"] for page in pages] == [
        {"total": SMALL, "pages": 3, "currentPage": page, "perPage": 100} for page in (1, 2, 3, 4)
    ]
    assert [len(page["list"]) for page in pages] == [100, 100, 50, 0]
    assert (pages[0]["facets"], pages[0]["stats"]) == ([], {"stats": {}})
    summaries = [summary for page in pages for summary in page["list"]]
    assert len({summary["orderId"] for summary in summaries}) == SMALL
    assert (summaries[0]["creationDate"], summaries[-1]["creationDate"]) == (info["first"], info["last"])
    keys = [(parse_ticks(s["creationDate"]), s["orderId"]) for s in summaries]
    assert keys == sorted(keys)

    summary = summaries[0]
    assert set(SUMMARY_FIELDS) <= set(summary)
    assert HISTORY_ID.match(summary["orderId"])
    assert type(summary["totalValue"]) is int
    assert (summary["items"], summary["ShippingEstimatedDate"]) == (None, None)
    assert OMS_TIME.match(summary["creationDate"]) and OMS_TIME.match(summary["lastChange"])
    assert all(moment_of(s["creationDate"]) < moment_of(s["lastChange"]) for s in summaries)
    assert {(s["status"], s["statusDescription"]) for s in summaries} <= {
        ("invoiced", "Faturado"),
        ("canceled", "Cancelado"),
    }

    newest = await every_summary(client, f_creationDate=everything)
    assert newest == summaries[::-1]  # creationDate,desc is the default


async def test_a_window_split_in_two_adds_up(client: httpx.AsyncClient) -> None:
    info = await history_info(client)
    start, end = moment_of(info["first"]), moment_of(info["last"])
    middle = start + (end - start) / 2
    middle_ms = middle.replace(microsecond=middle.microsecond // 1000 * 1000)
    halves = [
        (list_time(start), list_time(middle_ms)),
        (list_time(middle_ms + timedelta(milliseconds=1)), list_time(end)),
    ]
    totals, ids = [], []
    for first, last in halves:
        page = await list_page(client, f_creationDate=window(first, last), per_page=100)
        totals.append(page["paging"]["total"])
        assert (await history_info(client, **{"from": first, "to": last}))["count"] == totals[-1]
        ids.append({s["orderId"] for s in await every_summary(client, f_creationDate=window(first, last))})
    assert 0 < totals[0] < SMALL and sum(totals) == SMALL
    assert [len(half) for half in ids] == totals and ids[0].isdisjoint(ids[1])

    # Bounds are inclusive to the millisecond: a window of one order's millisecond holds it.
    order = (await list_page(client, per_page=5, page=25))["list"][0]
    at = list_time(moment_of(order["creationDate"]))
    only = await list_page(client, f_creationDate=window(at, at))
    assert order["orderId"] in {s["orderId"] for s in only["list"]}


@pytest.mark.parametrize(
    ("params", "mentions"),
    [
        ({"page": 31}, "30 pages"),
        ({"page": 0}, "page"),
        ({"page": "two"}, "page"),
        ({"per_page": 101}, "per_page"),
        ({"per_page": 0}, "per_page"),
        ({"orderBy": "value,asc"}, "orderBy"),
        ({"f_creationDate": "2024-01-01"}, "f_creationDate"),
        ({"f_creationDate": "creationDate:[2024-01-01 TO 2024-01-31]"}, "f_creationDate"),
        ({"f_creationDate": "creationDate:[2024-01-01T00:00:00.000Z TO now]"}, "f_creationDate"),
        ({"f_creationDate": window("2024-02-01T00:00:00.000Z", "2024-01-01T00:00:00.000Z")}, "after"),
    ],
)
async def test_requests_vtex_would_refuse_are_400(
    client: httpx.AsyncClient, params: dict[str, str | int], mentions: str
) -> None:
    refused = await client.get(LIST_URL, params=params, headers=VTEX_HEADERS)
    assert refused.status_code == 400
    error = refused.json()["error"]
    assert set(error) == {"code", "message", "exception"}
    assert mentions in error["message"]


async def test_the_last_page_vtex_serves_is_the_thirtieth(client: httpx.AsyncClient) -> None:
    page = await list_page(client, page=LIST_MAX_PAGES, per_page=5)
    assert page["paging"] == {"total": SMALL, "pages": 50, "currentPage": 30, "perPage": 5}
    assert len(page["list"]) == 5
    assert (await list_page(client, per_page=LIST_MAX_PER_PAGE))["paging"]["perPage"] == 100


async def test_live_orders_are_listed_with_the_history(client: httpx.AsyncClient) -> None:
    info = await history_info(client)
    fresh = (await client.post("/_control/vtex/orders")).json()["order"]  # created now, after the history
    inside = moment_of(info["first"]) + timedelta(seconds=1)
    past = (await client.post("/_control/vtex/orders", json={"overrides": {
        "creationDate": f"{inside:%Y-%m-%dT%H:%M:%S}.1234567+00:00"}})).json()["order"]  # fmt: skip
    garbled = await client.post("/_control/vtex/orders", json={"overrides": {"creationDate": "yesterday"}})
    assert garbled.status_code == 200

    everything = await every_summary(client, orderBy="creationDate,asc")
    assert len(everything) == SMALL + 2  # an unreadable creationDate matches no filter
    assert [s["orderId"] for s in everything][1:2] == [past["orderId"]]
    assert everything[-1]["orderId"] == fresh["orderId"]
    summary = everything[-1]
    assert (
        summary["clientName"]
        == f"{fresh['clientProfileData']['firstName']} {fresh['clientProfileData']['lastName']}"
    )
    assert (summary["totalValue"], summary["status"], summary["lastChange"]) == (
        fresh["value"], "order-created", fresh["lastChange"]
    )  # fmt: skip
    now = datetime.now(UTC)
    recent = window(list_time(now - timedelta(hours=1)), list_time(now + timedelta(minutes=1)))
    assert [s["orderId"] for s in (await list_page(client, f_creationDate=recent))["list"]] == [
        fresh["orderId"]
    ]
    counted = await history_info(client, **{"from": list_time(now - timedelta(hours=1))})
    assert (counted["orders"], counted["count"]) == (SMALL, 1)

    # A live order wins over the history order it shares an id with, in the list and on a GET.
    history_id = everything[10]["orderId"]
    await client.post("/_control/vtex/orders", json={"overrides": {"orderId": history_id}})
    got = await client.get(f"{LIST_URL}/{history_id}", headers=VTEX_HEADERS)
    assert got.json()["status"] == "order-created"
    listed = await every_summary(client, orderBy="creationDate,asc")
    assert len(listed) == SMALL + 2  # replaced, not added
    assert [s["status"] for s in listed if s["orderId"] == history_id] == ["order-created"]


async def test_a_history_order_reads_in_full_and_matches_its_summary(client: httpx.AsyncClient) -> None:
    summaries = (await list_page(client, per_page=100))["list"]
    for summary in summaries[:3] + [s for s in summaries if s["status"] == "canceled"][:1]:
        url = f"{LIST_URL}/{summary['orderId']}"
        first, again = (
            (await client.get(url, headers=VTEX_HEADERS)),
            (await client.get(url, headers=VTEX_HEADERS)),
        )
        assert first.status_code == 200
        order = first.json()
        assert again.json() == order  # served twice, the same lastChange
        assert {
            key: order[key] for key in ("orderId", "creationDate", "lastChange", "status", "sequence")
        } == {key: summary[key] for key in ("orderId", "creationDate", "lastChange", "status", "sequence")}
        assert order["value"] == summary["totalValue"] == sum(total["value"] for total in order["totals"])
        profile = order["clientProfileData"]
        assert summary["clientName"] == f"{profile['firstName']} {profile['lastName']}"
        [payment] = order["paymentData"]["transactions"][0]["payments"]
        assert summary["paymentNames"] == payment["paymentSystemName"]
        assert order["items"] and order["shippingData"]["address"]["country"] == "BRA"
    history = OrderHistory.from_config(history_config(vtex_history_orders=SMALL))
    beyond = history.order_id(SMALL)  # the shape of a history id, past its end
    assert (await client.get(f"{LIST_URL}/{beyond}", headers=VTEX_HEADERS)).status_code == 404

    times = (await client.get(f"/_control/vtex/orders/{summaries[0]['orderId']}/requests")).json()["times"]
    assert len(times) == 2
    vtex = await counters(client)
    assert (vtex["oms_lists"], vtex["oms_gets"]) == (1, 9)
    # A reset forgets live orders and counters, not the history.
    await client.post("/_control/reset")
    assert (await list_page(client, per_page=100))["list"] == summaries
    assert (await counters(client))["oms_lists"] == 1


async def test_faults_and_credentials_apply_to_the_list(client: httpx.AsyncClient) -> None:
    fault = {"target": "vtex", "error_5xx_count": 1, "rate_limit_count": 1, "retry_after_seconds": 42}
    assert (await client.post("/_control/faults", json=fault)).status_code == 200
    assert (await client.get(LIST_URL, headers=VTEX_HEADERS)).status_code == 503
    limited = await client.get(LIST_URL, headers=VTEX_HEADERS)
    assert (limited.status_code, limited.headers["retry-after"]) == (429, "42")
    assert limited.json()["error"]["code"] == "429"
    refused = await client.get(LIST_URL, headers={**VTEX_HEADERS, "X-VTEX-API-AppToken": "wrong"})
    assert refused.status_code == 401
    assert (await client.get(LIST_URL, headers=VTEX_HEADERS)).status_code == 200
    vtex = await counters(client)
    assert (vtex["oms_lists"], vtex["faults_served"], vtex["oms_gets"]) == (4, 2, 0)


def vtex_settings(sims_url: str) -> Settings:
    return Settings(
        _env_file=None,
        environment="test",
        vtex_api_base_url=f"{sims_url}/vtex",
        vtex_app_key=VTEX_HEADERS["X-VTEX-API-AppKey"],
        vtex_app_token=VTEX_HEADERS["X-VTEX-API-AppToken"],
        vtex_http_timeout_seconds=5,
    )


@pytest.fixture
def sims_url() -> Iterator[str]:
    with live_server(lambda _: create_app(history_config(vtex_history_orders=SMALL))) as url:
        yield url


async def test_the_client_lists_a_window_page_by_page(sims_url: str) -> None:
    async with httpx.AsyncClient() as http:
        vtex = VtexClient(http, vtex_settings(sims_url))
        info = (await http.get(f"{sims_url}/_control/vtex/history")).json()
        start, end = moment_of(info["first"]), moment_of(info["last"])
        first_page = await vtex.list_orders(start, end, page=1, per_page=100)
        assert isinstance(first_page, OrderPage)
        assert (first_page.total, first_page.pages, len(first_page.orders)) == (SMALL, 3, 100)
        pages = [first_page] + [await vtex.list_orders(start, end, page, 100) for page in (2, 3)]
        orders = [order for page in pages for order in page.orders]
        assert len({order["orderId"] for order in orders}) == SMALL
        assert (orders[0]["creationDate"], orders[-1]["creationDate"]) == (
            info["first"],
            info["last"],
        )  # oldest first

        # Sub-millisecond digits are dropped, so both bounds still hold the orders created at them.
        same_ms = start.replace(microsecond=start.microsecond // 1000 * 1000 + 999)
        later = await vtex.list_orders(same_ms, end, 1, 1)
        assert later.orders[0]["orderId"] == orders[0]["orderId"]
        # Any zone is sent as UTC.
        in_brt = await vtex.list_orders(start.astimezone(BRT), end.astimezone(BRT), 3, 100)
        assert in_brt.orders == pages[2].orders

        await http.post(f"{sims_url}/_control/faults", json={"target": "vtex", "rate_limit_count": 1,
                                                             "retry_after_seconds": 9})  # fmt: skip
        with pytest.raises(TransientError) as limited:
            await vtex.list_orders(start, end, 1, 100)
        assert (limited.value.status_code, limited.value.retry_after) == (429, 9.0)
        with pytest.raises(ValueError, match="30"):
            await vtex.list_orders(start, end, LIST_MAX_PAGES + 1, 100)
        with pytest.raises(ValueError, match="per_page"):
            await vtex.list_orders(start, end, 1, LIST_MAX_PER_PAGE + 1)
        with pytest.raises(ValueError, match="aware"):
            await vtex.list_orders(start.replace(tzinfo=None), end, 1, 100)
        counted = (await http.get(f"{sims_url}/_control/counters")).json()
        assert counted["vtex"]["oms_lists"] == 6  # the refused arguments never left the client
