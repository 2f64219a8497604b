"""Master Data v1, entity CL: generated customers read through the scroll API, its filter, its tokens."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from email_validator import EmailNotValidError, validate_email
from fastapi import FastAPI

from simulators import SimulatorConfig, create_app
from simulators.vtex_customers import FIELDS, WhereError, parse_where
from simulators.vtex_orders import TICKS_PER_SECOND, parse_ticks
from tests.simulators.conftest import VTEX_HEADERS, FakeClock, in_process, make_config

SCROLL_URL = "/vtex/api/dataentities/CL/scroll"
TOKEN = "X-VTEX-MD-TOKEN"
TICKS_PER_DAY = 86_400 * TICKS_PER_SECOND
CUSTOMERS = 200
HISTORY_END = "2025-06-01T00:00:00Z"  # in the past: customers changed now never fall in the history
EXPIRED = {"Message": "The scroll token is invalid or has expired"}
MD_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{7}Z$")
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
# The incremental filter the hub sends, with the window's bounds as placeholders.
INCREMENTAL = "(updatedIn between {a} AND {b}) OR (updatedIn is null AND createdIn between {a} AND {b})"


def customers_config(**overrides: object) -> SimulatorConfig:
    """A test config with few customers, independent of any SIM_VTEX_CUSTOMERS* variable."""
    values: dict[str, object] = {
        "vtex_customers": CUSTOMERS,
        "vtex_customers_seed": SimulatorConfig.model_fields["vtex_customers_seed"].default,
        "vtex_history_end": HISTORY_END,
        "vtex_md_scroll_idle_seconds": 1200,
    }
    return make_config(**{**values, **overrides})


@pytest.fixture
def app(clock: FakeClock) -> FastAPI:
    return create_app(customers_config(), clock=clock)


async def scroll(client: httpx.AsyncClient, **params: str | int) -> httpx.Response:
    return await client.get(SCROLL_URL, params=params, headers=VTEX_HEADERS)


async def page(client: httpx.AsyncClient, **params: str | int) -> tuple[list[dict[str, Any]], str]:
    """One page that must be served, and the token that came with it."""
    response = await scroll(client, **params)
    assert response.status_code == 200, response.text
    documents: list[dict[str, Any]] = response.json()
    return documents, response.headers[TOKEN]


async def scroll_all(client: httpx.AsyncClient, **params: str | int) -> list[dict[str, Any]]:
    """Every document of a scroll: open it, then follow its token until an empty page."""
    documents, token = await page(client, **params)
    while True:
        batch, same = await page(client, _token=token)
        assert same == token
        if not batch:
            return documents
        documents += batch


async def control(client: httpx.AsyncClient, action: str, count: int) -> list[str]:
    response = await client.post(f"/_control/vtex/customers/{action}", json={"count": count})
    assert response.status_code == 200, response.text
    ids: list[str] = response.json()["ids"]
    return ids


async def vtex_counters(client: httpx.AsyncClient) -> dict[str, int]:
    vtex: dict[str, int] = (await client.get("/_control/counters")).json()["vtex"]
    return vtex


def ticks(value: str) -> int:
    parsed = parse_ticks(value)
    assert parsed is not None, value
    return parsed


def not_an_address(email: str) -> bool:
    """What the hub's ingestion quarantines as an invalid e-mail (syntax only)."""
    try:
        validate_email(email, check_deliverability=False)
    except EmailNotValidError:
        return True
    return False


def iso(moment: datetime) -> str:
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"


def incremental(documents: list[dict[str, Any]], first: datetime, last: datetime) -> list[str]:
    """What the incremental filter must select, worked out independently of the simulator's parser."""
    low, high = ticks(iso(first)), ticks(iso(last))
    return [
        doc["id"]
        for doc in documents
        if (doc["updatedIn"] is not None and low <= ticks(doc["updatedIn"]) <= high)
        or (doc["updatedIn"] is None and low <= ticks(doc["createdIn"]) <= high)
    ]


async def test_the_same_config_gives_the_same_customers_and_another_seed_others() -> None:
    seen = []
    for seed in (3, 3, 4):
        async with in_process(create_app(customers_config(vtex_customers_seed=seed))) as http:
            seen.append(await scroll_all(http, _size=1000))
    first, again, other = seen
    assert again == first and len(first) == CUSTOMERS
    assert {doc["id"] for doc in other}.isdisjoint(doc["id"] for doc in first)


async def test_documents_have_the_cl_shape(client: httpx.AsyncClient) -> None:
    documents = await scroll_all(client, _size=1000)
    end = ticks(HISTORY_END)
    assert [list(doc) for doc in documents] == [list(FIELDS)] * CUSTOMERS
    assert len({doc["id"] for doc in documents}) == CUSTOMERS
    for doc in documents:
        assert UUID.match(doc["id"]) and UUID.match(doc["userId"])
        assert re.fullmatch(r"\d{11}", doc["document"]) and doc["documentType"] == "CPF"
        assert re.fullmatch(r"\+55\d{11}", doc["phone"])
        assert (doc["accountName"], doc["dataEntityId"]) == ("teststore", "CL")
        assert isinstance(doc["isNewsletterOptIn"], bool)
        assert MD_TIME.match(doc["createdIn"])
        assert end - 730 * TICKS_PER_DAY <= ticks(doc["createdIn"]) < end
        if doc["updatedIn"] is not None:
            assert MD_TIME.match(doc["updatedIn"])
            assert ticks(doc["createdIn"]) < ticks(doc["updatedIn"]) <= end
    created = [ticks(doc["createdIn"]) for doc in documents]
    assert created == sorted(created)  # served in creation order
    assert any(doc["updatedIn"] is None for doc in documents)


async def test_shares_of_never_updated_masked_and_invalid_emails() -> None:
    default = SimulatorConfig.model_fields["vtex_customers"].default
    async with in_process(create_app(customers_config(vtex_customers=default))) as http:
        counts = (await http.get("/_control/vtex/customers")).json()
        documents = await scroll_all(http, _size=1000)
    assert counts["invalid_emails"] == sum(1 for doc in documents if not_an_address(doc["email"]))
    assert counts["documents"] == default == 5_000
    assert 0.37 < counts["never_updated"] / default < 0.43
    assert 0.17 < counts["masked_emails"] / default < 0.23
    assert 0.005 < counts["invalid_emails"] / default < 0.02
    assert counts["open_scrolls"] == 0


async def test_the_control_view_counts_what_the_scroll_serves(client: httpx.AsyncClient) -> None:
    documents = await scroll_all(client, _size=1000)
    counts = (await client.get("/_control/vtex/customers")).json()
    masked = [doc for doc in documents if doc["email"].endswith("@ct.vtex.com.br")]
    assert all(re.fullmatch(r"[0-9a-f]{32}@ct\.vtex\.com\.br", doc["email"]) for doc in masked)
    assert counts == {
        "documents": CUSTOMERS,
        "never_updated": sum(1 for doc in documents if doc["updatedIn"] is None),
        "masked_emails": len(masked),
        "invalid_emails": sum(1 for doc in documents if not_an_address(doc["email"])),
        "open_scrolls": 0,
    }


async def test_a_scroll_serves_every_document_once_then_an_empty_page(client: httpx.AsyncClient) -> None:
    first, token = await page(client, _size=30)
    assert len(first) == 30 and re.fullmatch(r"\S{16,}", token)
    pages = [first]
    while batch := (await page(client, _token=token))[0]:
        pages.append(batch)
    assert [len(batch) for batch in pages] == [30] * 6 + [20]
    everyone = [doc["id"] for batch in pages for doc in batch]
    assert len(set(everyone)) == CUSTOMERS == len(everyone)
    exhausted = await scroll(client, _token=token)
    assert (exhausted.status_code, exhausted.json()) == (400, EXPIRED)  # forgotten after its empty page
    counters = await vtex_counters(client)
    assert (counters["md_scrolls_opened"], counters["md_scroll_pages"]) == (1, 9)
    assert counters["md_scrolls_superseded"] == 0


async def test_size_and_fields(client: httpx.AsyncClient) -> None:
    for size in ("0", "1001", "-5", "many"):
        refused = await scroll(client, _size=size)
        assert refused.status_code == 400
        assert refused.json() == {"Message": "_size must be an integer from 1 to 1000"}
    assert len((await page(client))[0]) == 100  # the default size
    documents, token = await page(client, _size=1000, _fields="id,email,updatedIn,noSuchField")
    assert len(documents) == CUSTOMERS and all(list(doc) == ["id", "email", "updatedIn"] for doc in documents)
    for fields in ("_all", ""):
        assert list((await page(client, _size=1, _fields=fields))[0][0]) == list(FIELDS)
    _, token = await page(client, _size=5, _fields="id")
    assert len((await page(client, _token=token, _size=7))[0]) == 7  # a token call may change the size
    assert [list(doc) for doc in (await page(client, _token=token))[0]] == [["id"]] * 5


async def test_the_incremental_filter_selects_updated_and_never_updated_documents_in_the_window(
    client: httpx.AsyncClient,
) -> None:
    everyone = await scroll_all(client, _size=1000)
    end = datetime(2025, 6, 1, tzinfo=UTC)
    for first, last in (
        (end - timedelta(days=90), end),
        (end - timedelta(days=400), end - timedelta(days=300)),
    ):
        where = INCREMENTAL.format(a=iso(first), b=iso(last))
        expected = incremental(everyone, first, last)
        selected = await scroll_all(client, _size=1000, _where=where, _fields="id,createdIn,updatedIn")
        assert [doc["id"] for doc in selected] == expected
        assert any(doc["updatedIn"] is None for doc in selected)
        assert any(doc["updatedIn"] is not None for doc in selected)
    # The filter exactly as the hub writes it parses, and selects what it should.
    literal = (
        "(updatedIn between 2026-11-24T00:00:00.000Z AND 2026-11-25T00:00:00.000Z) OR "
        "(updatedIn is null AND createdIn between 2026-11-24T00:00:00.000Z AND 2026-11-25T00:00:00.000Z)"
    )
    window = (datetime(2026, 11, 24, tzinfo=UTC), datetime(2026, 11, 25, tzinfo=UTC))
    assert literal == INCREMENTAL.format(a=iso(window[0]), b=iso(window[1]))
    selected = await scroll_all(client, _size=1000, _where=literal)
    assert [doc["id"] for doc in selected] == incremental(await scroll_all(client, _size=1000), *window)


async def test_changes_made_now_fall_in_a_window_around_now(client: httpx.AsyncClient) -> None:
    updated = await control(client, "update", 7)
    created = await control(client, "create", 4)
    now = datetime.now(UTC)
    where = INCREMENTAL.format(a=iso(now - timedelta(hours=1)), b=iso(now + timedelta(hours=1)))
    selected = await scroll_all(client, _size=1000, _where=where)
    assert {doc["id"] for doc in selected} == set(updated) | set(created)
    assert [doc["id"] for doc in selected][-4:] == created  # created ones come last, in creation order


async def test_other_comparisons_and_precedence(client: httpx.AsyncClient) -> None:
    everyone = await scroll_all(client, _size=1000)
    middle = everyone[CUSTOMERS // 2]
    plain = next(doc for doc in everyone if "@example." in doc["email"])

    async def ids(where: str) -> list[str]:
        return [doc["id"] for doc in await scroll_all(client, _size=1000, _where=where, _fields="id")]

    assert await ids("updatedIn is null") == [doc["id"] for doc in everyone if doc["updatedIn"] is None]
    assert await ids(f"createdIn>{middle['createdIn']}") == [
        doc["id"] for doc in everyone[CUSTOMERS // 2 + 1 :]
    ]
    assert await ids(f"createdIn < {middle['createdIn']}") == [
        doc["id"] for doc in everyone[: CUSTOMERS // 2]
    ]
    assert await ids(f"createdIn={middle['createdIn']}") == [middle["id"]]
    assert await ids(f"email={plain['email']}") == await ids(f'email="{plain["email"]}"') == [plain["id"]]
    opted = [doc["id"] for doc in everyone if doc["isNewsletterOptIn"]]
    assert await ids("isNewsletterOptIn=TRUE") == opted
    # AND binds tighter than OR; parentheses change that.
    a, b = f"id={everyone[0]['id']}", f"id={everyone[1]['id']}"
    assert await ids(f"{a} or {b} and updatedIn is null and createdIn is null") == [everyone[0]["id"]]
    assert await ids(f"({a} OR {b}) AND createdIn is null") == []


@pytest.mark.parametrize(
    ("where", "reason"),
    [
        ("updatedIn between 2024-01-01T00:00:00Z", "expected AND"),
        ("nickname=joao", "unknown field 'nickname'"),
        ("updatedIn > yesterday", "not an ISO 8601 timestamp"),
        ("createdIn > 2024-01-01T00:00:00", "not an ISO 8601 timestamp"),
        ("(createdIn is null", "expected ')'"),
        ("createdIn is nul", "expected null"),
        ("email between 2024-01-01T00:00:00Z AND 2024-02-01T00:00:00Z", "compares dates"),
        ('email="joao@example.com', "unterminated quote"),
        ("createdIn is null extra", "unexpected 'extra'"),
        ("createdIn is null AND", "expected a field name"),
        ("isNewsletterOptIn=maybe", "true or false"),
        ("email ~ x", "expected =, >, <, between or is null after 'email'"),
    ],
)
async def test_a_bad_filter_is_400_with_the_reason(
    client: httpx.AsyncClient, where: str, reason: str
) -> None:
    response = await scroll(client, _where=where)
    assert response.status_code == 400
    message = response.json()["Message"]
    assert message.startswith("Invalid _where: ") and reason in message, message
    with pytest.raises(WhereError):
        parse_where(where)
    assert (await vtex_counters(client))["md_scrolls_opened"] == 0


async def test_a_token_idle_for_twenty_minutes_is_dead(client: httpx.AsyncClient, clock: FakeClock) -> None:
    _, token = await page(client, _size=10)
    clock.advance(1199)
    assert len((await page(client, _token=token))[0]) == 10  # using it restarts the idle time
    clock.advance(1199)
    assert len((await page(client, _token=token))[0]) == 10
    clock.advance(1200)
    expired = await scroll(client, _token=token)
    assert (expired.status_code, expired.json()) == (400, EXPIRED)
    unknown = await scroll(client, _token="not-a-token")
    assert (unknown.status_code, unknown.json()) == (400, EXPIRED)
    await page(client)
    assert (await vtex_counters(client))["md_scrolls_superseded"] == 0  # the dead one was not open


async def test_a_new_scroll_supersedes_the_open_one(client: httpx.AsyncClient) -> None:
    _, first = await page(client, _size=10)
    second_page, second = await page(client, _size=10)
    assert second != first
    superseded = await scroll(client, _token=first)
    assert (superseded.status_code, superseded.json()) == (400, EXPIRED)
    assert [doc["id"] for doc in (await page(client, _token=second))[0]] != [doc["id"] for doc in second_page]
    assert (await vtex_counters(client))["md_scrolls_superseded"] == 1
    # A scroll whose every document was served is not superseded, even before its empty page.
    await page(client, _size=1000)
    await page(client, _size=1000)
    assert (await vtex_counters(client))["md_scrolls_superseded"] == 2  # the second scroll above


async def test_an_empty_first_page_leaves_the_token_good_for_one_empty_page(
    client: httpx.AsyncClient,
) -> None:
    documents, token = await page(client, _where="createdIn > 2099-01-01T00:00:00Z")
    assert documents == []
    assert await page(client, _token=token) == ([], token)
    assert (await scroll(client, _token=token)).status_code == 400


async def test_the_control_api_expires_scrolls(client: httpx.AsyncClient) -> None:
    _, token = await page(client, _size=10)
    assert (await client.get("/_control/vtex/customers")).json()["open_scrolls"] == 1
    assert (await client.post("/_control/vtex/customers/expire-scrolls")).json() == {"expired": 1}
    assert (await scroll(client, _token=token)).status_code == 400
    assert (await client.post("/_control/vtex/customers/expire-scrolls")).json() == {"expired": 0}
    assert (await client.get("/_control/vtex/customers")).json()["open_scrolls"] == 0


async def test_faults_and_credentials_apply_to_the_scroll(client: httpx.AsyncClient) -> None:
    _, token = await page(client, _size=10)
    fault = {"target": "vtex", "rate_limit_count": 1, "retry_after_seconds": 60}
    assert (await client.post("/_control/faults", json=fault)).status_code == 200
    limited = await scroll(client, _token=token)
    assert (limited.status_code, limited.headers["Retry-After"]) == (429, "60")
    assert len((await page(client, _token=token))[0]) == 10  # the token survives a refused call
    await client.post("/_control/faults", json={"target": "vtex", "error_5xx_count": 1})
    assert (await scroll(client)).status_code == 503
    assert (await client.get(SCROLL_URL, params={"_token": token})).status_code == 401
    counters = await vtex_counters(client)
    assert (counters["md_scroll_pages"], counters["md_scrolls_opened"], counters["faults_served"]) == (
        5,
        1,
        2,
    )


async def test_updates_are_ordered_and_pages_serve_the_content_of_the_moment(
    client: httpx.AsyncClient,
) -> None:
    before = {doc["id"]: doc for doc in await scroll_all(client, _size=1000)}
    latest_before = max(ticks(doc["updatedIn"] or doc["createdIn"]) for doc in before.values())
    _, token = await page(client, _size=1)  # the ids are taken now, the content when a page is served
    first = await control(client, "update", 6)
    second = await control(client, "update", 6)
    assert len(set(first)) == len(set(second)) == 6
    after = {doc["id"]: doc for doc in (await page(client, _token=token, _size=1000))[0]}
    # Ids updated twice carry the second stamp: in stamping order, every stamp is later than the previous.
    order = [customer_id for customer_id in first if customer_id not in second] + second
    stamps = [ticks(after[customer_id]["updatedIn"]) for customer_id in order if customer_id in after]
    assert len(stamps) >= 10 and stamps == sorted(set(stamps)) and stamps[0] > latest_before
    for customer_id in set(order) & set(after):
        document, old = after[customer_id], before[customer_id]
        assert document["phone"] != old["phone"]
        assert {**document, "updatedIn": None, "phone": None} == {**old, "updatedIn": None, "phone": None}
    untouched = set(after) - set(order)
    assert all(after[customer_id] == before[customer_id] for customer_id in untouched)
    too_many = await client.post("/_control/vtex/customers/update", json={"count": CUSTOMERS + 1})
    assert too_many.status_code == 409


async def test_created_customers_and_a_reset(client: httpx.AsyncClient) -> None:
    base = await scroll_all(client, _size=1000)
    created = await control(client, "create", 3)
    everyone = await scroll_all(client, _size=1000)
    assert [doc["id"] for doc in everyone] == [doc["id"] for doc in base] + created
    fresh = everyone[-3:]
    assert all(doc["updatedIn"] is None for doc in fresh)
    stamps = [ticks(doc["createdIn"]) for doc in fresh]
    assert stamps == sorted(set(stamps)) and stamps[0] > ticks(HISTORY_END)
    await control(client, "update", 10)
    _, token = await page(client, _size=10)
    await client.post("/_control/reset")
    assert (await scroll(client, _token=token)).status_code == 400
    assert await scroll_all(client, _size=1000) == base
