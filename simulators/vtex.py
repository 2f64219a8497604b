"""VTEX stand-in: OMS orders, Feed v3, and the Orders hook (its configuration, ping and deliveries).

The OMS serves two kinds of orders: live ones, created through the control API, and a generated history
(:mod:`simulators.vtex_history`) that the list API pages through for backfills. A live order moves
through states only when the control API says so. Every change gets a strictly later
``lastChange``, goes into the feed, and builds the hook payload VTEX would send; the control API then
delivers those hooks in order, reversed, twice each, or not at all (feed only).
"""

from __future__ import annotations

import itertools
import json
import logging
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Body, Query, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from simulators.faults import VTEX_TARGET, Fault, take_fault
from simulators.state import EarlyReply, SimulatorState, StateDep, same_secret
from simulators.vtex_history import CreationWindow, parse_creation_filter, select_orders, window_of
from simulators.vtex_orders import STATUS_DESCRIPTIONS, OrderState, now_ticks, parse_ticks, vtex_timestamp

logger = logging.getLogger(__name__)

HOOK_PATH = "/webhooks/vtex/orders"
HOOK_DOMAIN = "Marketplace"
PING = {"hookConfig": "ping"}
# VTEX gives a hook delivery (and the ping) 5000 ms to answer before it counts as failed.
HOOK_TIMEOUT_SECONDS = 5.0
FEED_MAX_LOT = 10
# VTEX's List orders serves at most 30 pages of at most 100 orders: a larger window must be split.
LIST_MAX_PAGES = 30
LIST_MAX_PER_PAGE = 100
LIST_DEFAULT_PER_PAGE = 15
LIST_ORDER_BY = {"creationDate,asc": False, "creationDate,desc": True}  # value: descending

Delivery = Literal["in_order", "reversed", "repeated", "repeated_reversed", "none"]

router = APIRouter(prefix="/vtex", tags=["vtex"])
control_router = APIRouter(prefix="/_control/vtex", tags=["control"])


def vtex_error(
    status_code: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error in the shape of VTEX's REST APIs: ``{"error": {"code", "message", "exception"}}``."""
    body = {"error": {"code": code, "message": message, "exception": None}}
    return JSONResponse(body, status_code=status_code, headers=headers)


def check_credentials(request: Request, state: SimulatorState) -> None:
    """Check the ``X-VTEX-API-AppKey`` and ``X-VTEX-API-AppToken`` headers against the configured pair.

    Raises:
        EarlyReply: 401 when either is missing or wrong.
    """
    config = state.config
    key_ok = same_secret(request.headers.get("x-vtex-api-appkey"), config.vtex_app_key)
    token_ok = same_secret(request.headers.get("x-vtex-api-apptoken"), config.vtex_app_token)
    if not (key_ok and token_ok) or VTEX_TARGET in state.revoked:
        message = "Unauthorized: X-VTEX-API-AppKey and X-VTEX-API-AppToken are missing or wrong"
        raise EarlyReply(vtex_error(401, "1", message))


async def vtex_api_guard(request: Request, state: SimulatorState) -> None:
    """Serve injected faults for target ``vtex``, then check the credentials (OMS and feed calls).

    Raises:
        EarlyReply: With the 503, 429 (and ``Retry-After`` in seconds) or 401 to answer instead.
    """
    fault, retry_after = await take_fault(state, VTEX_TARGET)
    if fault is not Fault.NONE:
        state.vtex.counters.faults_served += 1
    if fault is Fault.UNAVAILABLE:
        raise EarlyReply(vtex_error(503, "503", "Service Unavailable: circuit breaker open"))
    if fault is Fault.RATE_LIMITED:
        headers = {"Retry-After": str(retry_after)}
        raise EarlyReply(vtex_error(429, "429", "Too Many Requests", headers))
    check_credentials(request, state)


@router.get("/api/oms/pvt/orders/{order_id}")
async def get_order(order_id: str, request: Request, state: StateDep) -> JSONResponse:
    """One order document; every request is counted and its time kept, faulted or refused ones too."""
    vtex = state.vtex
    vtex.counters.oms_gets += 1
    vtex.request_times.setdefault(order_id, []).append(state.clock())
    await vtex_api_guard(request, state)
    order = vtex.orders.get(order_id) or vtex.history.document(order_id)
    if order is None:
        return vtex_error(404, "OMS003", "Order not found")
    return JSONResponse(order)


@router.get("/api/oms/pvt/orders")
async def list_orders(
    request: Request,
    state: StateDep,
    creation_filter: Annotated[str | None, Query(alias="f_creationDate")] = None,
    page: Annotated[str | None, Query()] = None,
    per_page: Annotated[str | None, Query()] = None,
    order_by: Annotated[str | None, Query(alias="orderBy")] = None,
) -> JSONResponse:
    """Order summaries, history and live orders together, filtered on ``creationDate`` and paged.

    ``f_creationDate=creationDate:[<from> TO <to>]`` (inclusive, millisecond precision; no filter lists
    every order), ``page`` from 1 to 30, ``per_page`` from 1 to 100 (default 15), ``orderBy``
    ``creationDate,desc`` (default) or ``creationDate,asc``. ``paging.total`` counts every match, but
    only 30 pages can be read: a window holding more must be split by the caller.
    """
    vtex = state.vtex
    vtex.counters.oms_lists += 1
    await vtex_api_guard(request, state)
    split = f": VTEX serves at most {LIST_MAX_PAGES} pages, split the creationDate window instead"
    page_number = query_number("page", page, 1, LIST_MAX_PAGES, "OMS010", split)
    size = query_number("per_page", per_page, LIST_DEFAULT_PER_PAGE, LIST_MAX_PER_PAGE, "OMS010")
    descending = LIST_ORDER_BY.get(order_by or "creationDate,desc")
    if descending is None:
        return vtex_error(400, "OMS011", f"orderBy must be one of {', '.join(LIST_ORDER_BY)}")
    try:
        window = CreationWindow() if creation_filter is None else parse_creation_filter(creation_filter)
    except ValueError as exc:
        return vtex_error(400, "OMS012", f"Invalid f_creationDate: {exc}")
    total, orders = select_orders(
        vtex.history, vtex.orders, window, descending=descending, offset=(page_number - 1) * size, limit=size
    )
    return JSONResponse(
        {
            "list": [order_summary(order, state.config.vtex_account) for order in orders],
            "facets": [],
            "paging": {
                "total": total,
                "pages": -(-total // size),
                "currentPage": page_number,
                "perPage": size,
            },
            "stats": {"stats": {}},
        }
    )


def order_summary(order: dict[str, Any], account: str) -> dict[str, Any]:
    """An order as the OMS list shows it: a few fields of the document, the buyer's name, payment names.

    Args:
        order: The full document (live ones may carry any override, so nothing is assumed of its types).
        account: The VTEX account, which the list gives as ``hostname``.

    Returns:
        ``orderId, creationDate, clientName, items (null), totalValue, paymentNames, status,
        statusDescription, marketPlaceOrderId, sequence, salesChannel, affiliateId, origin,
        ShippingEstimatedDate (null), lastChange, currencyCode, hostname``.
    """
    profile = order.get("clientProfileData")
    names = (profile.get("firstName"), profile.get("lastName")) if isinstance(profile, dict) else ()
    payment_data = order.get("paymentData")
    transactions = payment_data.get("transactions") if isinstance(payment_data, dict) else None
    payments = [
        payment.get("paymentSystemName")
        for transaction in (transactions if isinstance(transactions, list) else [])
        if isinstance(transaction, dict) and isinstance(transaction.get("payments"), list)
        for payment in transaction["payments"]
        if isinstance(payment, dict)
    ]
    store = order.get("storePreferencesData")
    return {
        "orderId": order.get("orderId"),
        "creationDate": order.get("creationDate"),
        "clientName": " ".join(str(name) for name in names if name),
        "items": None,
        "totalValue": order.get("value"),
        "paymentNames": ", ".join(str(name) for name in payments if name),
        "status": order.get("status"),
        "statusDescription": order.get("statusDescription"),
        "marketPlaceOrderId": order.get("marketplaceOrderId"),
        "sequence": order.get("sequence"),
        "salesChannel": order.get("salesChannel"),
        "affiliateId": order.get("affiliateId"),
        "origin": order.get("origin"),
        "ShippingEstimatedDate": None,
        "lastChange": order.get("lastChange"),
        "currencyCode": store.get("currencyCode") if isinstance(store, dict) else None,
        "hostname": account,
    }


@router.get("/api/orders/feed")
async def read_feed(
    request: Request, state: StateDep, maxlot: Annotated[str | None, Query()] = None
) -> JSONResponse:
    """Up to ``maxlot`` (1 to 10, default 10) visible items, oldest first.

    The items returned turn invisible for ``vtex_feed_visibility_timeout_seconds``, then come back unless
    committed meanwhile.
    """
    vtex = state.vtex
    vtex.counters.feed_reads += 1
    await vtex_api_guard(request, state)
    lot = query_number("maxlot", maxlot, FEED_MAX_LOT, FEED_MAX_LOT, "FEED002")
    now = state.clock()
    items = list(itertools.islice((item for item in vtex.feed if item.visible(now)), lot))
    for item in items:
        item.invisible_until = now + state.config.vtex_feed_visibility_timeout_seconds
        item.reads += 1
    return JSONResponse([item.as_feed() for item in items])


@router.post("/api/orders/feed")
async def commit_feed(request: Request, state: StateDep) -> Response:
    """Commit the items of ``{"handles": [...]}`` for good; handles the feed does not know are ignored."""
    vtex = state.vtex
    vtex.counters.feed_commits += 1
    await vtex_api_guard(request, state)
    body = await _json_body(request)
    handles = body.get("handles") if isinstance(body, dict) else None
    if not (isinstance(handles, list) and all(isinstance(handle, str) for handle in handles)):
        return vtex_error(400, "FEED001", 'The body must be {"handles": [<string>, ...]}')
    for handle in handles:
        item = vtex.feed_by_handle.get(handle)
        if item is not None:
            item.committed = True
    return Response(status_code=204)


class HookTarget(BaseModel):
    """Where VTEX posts the hooks, and the static headers it adds (the only authentication there is)."""

    url: str = Field(pattern=r"^https?://\S+$")
    headers: dict[str, str] = Field(default_factory=dict)


class HookConfigIn(BaseModel):
    """The body of ``POST /api/orders/hook/config``."""

    filter: dict[str, Any]
    hook: HookTarget


@router.post("/api/orders/hook/config")
async def save_hook_config(request: Request, state: StateDep) -> JSONResponse:
    """Ping the hook URL with ``{"hookConfig": "ping"}`` and save the config only if it answers 200.

    Injected faults do not apply here: they are meant for the OMS and feed calls.
    """
    check_credentials(request, state)
    try:
        config_in = HookConfigIn.model_validate(await _json_body(request))
    except ValidationError as exc:
        errors = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return vtex_error(400, "HOOK001", f"Invalid hook configuration: {errors}")
    url, headers = config_in.hook.url, config_in.hook.headers
    vtex = state.vtex
    vtex.counters.pings_sent += 1
    try:
        answer = await state.client().post(url, json=PING, headers=headers, timeout=HOOK_TIMEOUT_SECONDS)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        message = f"The hook ping to {url} failed ({type(exc).__name__}: {exc}); the endpoint must answer 200"
        return vtex_error(400, "HOOK002", message)
    if answer.status_code != 200:
        message = f"The hook ping to {url} was answered with status {answer.status_code}; it must be 200"
        return vtex_error(400, "HOOK002", message)
    saved = {"filter": config_in.filter, "hook": {"url": url, "headers": headers}}
    vtex.hook_config = saved
    vtex.hook_saved_at = datetime.now(UTC).isoformat()
    vtex.counters.hook_config_saves += 1
    return JSONResponse(saved)


@router.get("/api/orders/hook/config")
async def get_hook_config(request: Request, state: StateDep) -> JSONResponse:
    """The saved hook configuration, or 404 when there is none."""
    check_credentials(request, state)
    if state.vtex.hook_config is None:
        return vtex_error(404, "HOOK003", "Hook configuration not found")
    return JSONResponse(state.vtex.hook_config)


class OrderCreate(BaseModel):
    """An order to create: fields merged into the generated document (nested objects key by key)."""

    model_config = ConfigDict(extra="forbid")

    overrides: dict[str, Any] = Field(default_factory=dict)


class StateChanges(BaseModel):
    """States an order goes through, in order, and how their hooks reach the hook URL."""

    model_config = ConfigDict(extra="forbid")

    states: list[OrderState] = Field(min_length=1, max_length=50)
    delivery: Delivery = "in_order"


@control_router.post("/orders")
async def create_order(state: StateDep, body: Annotated[OrderCreate | None, Body()] = None) -> dict[str, Any]:
    """Create a generated order in status ``order-created``; no hook is sent and no feed item added.

    Its items are active, priced SKUs of the catalog as it is now, its buyer a generated CL customer.
    """
    return {"order": state.vtex.create_order((body or OrderCreate()).overrides)}


@control_router.post("/orders/{order_id}/states")
async def change_states(order_id: str, changes: StateChanges, state: StateDep) -> dict[str, Any]:
    """Move an order through ``states``, then deliver the hooks of those changes as ``delivery`` says.

    Every change goes into the feed whatever the delivery. Hooks go one at a time, each awaited, to the
    saved hook config (its URL and headers), else to ``<api_url>/webhooks/vtex/orders`` with the configured
    secret header. A delivery whose request fails is reported with ``status_code`` null; the others still go.
    """
    order = _known_order(state, order_id)
    # Every change is applied before the first await: a concurrent call sees them all or none.
    hooks = [apply_state(state, order, new_state) for new_state in changes.states]
    deliveries = [await deliver_hook(state, hook) for hook in delivery_order(hooks, changes.delivery)]
    return {"order": order, "deliveries": deliveries}


@control_router.get("/orders/{order_id}")
async def show_order(order_id: str, state: StateDep) -> dict[str, Any]:
    """An order and every hook payload built for it, in order of change (delivered or not)."""
    return {"order": _known_order(state, order_id), "hooks": state.vtex.hooks.get(order_id, [])}


@control_router.get("/orders/{order_id}/requests")
async def order_requests(order_id: str, state: StateDep) -> dict[str, Any]:
    """The app clock's time of every OMS request for an order id, known or not, oldest first."""
    return {"times": state.vtex.request_times.get(order_id, [])}


@control_router.get("/history")
async def show_history(
    state: StateDep,
    first: Annotated[str | None, Query(alias="from")] = None,
    last: Annotated[str | None, Query(alias="to")] = None,
) -> Any:
    """The generated history: how many orders, the first and last ``creationDate`` (null when empty).

    With ``from`` and/or ``to`` (inclusive ISO timestamps with a zone, millisecond precision) it adds
    ``count``: what the list API's ``paging.total`` says for that window, live orders included.
    """
    history = state.vtex.history
    body: dict[str, Any] = {
        "orders": len(history),
        "first": history.creation_date(0) if len(history) else None,
        "last": history.creation_date(len(history) - 1) if len(history) else None,
    }
    if first is not None or last is not None:
        try:
            window = window_of(first, last)
        except ValueError as exc:
            return JSONResponse({"error": "invalid_window", "message": str(exc)}, status_code=400)
        body["count"], _ = select_orders(
            history, state.vtex.orders, window, descending=False, offset=0, limit=0
        )
    return body


@control_router.get("/hook")
async def show_hook(state: StateDep) -> dict[str, Any]:
    """The saved hook config (or null), how many saves were made, and when the last one was (ISO, UTC)."""
    vtex = state.vtex
    return {
        "config": vtex.hook_config,
        "saves": vtex.counters.hook_config_saves,
        "last_saved_at": vtex.hook_saved_at,
    }


@control_router.delete("/hook")
async def delete_hook(state: StateDep) -> dict[str, Any]:
    """Drop the saved hook config, as VTEX does after three days without notifications."""
    deleted = state.vtex.hook_config is not None
    state.vtex.hook_config = None
    return {"deleted": deleted}


@control_router.get("/feed")
async def show_feed(state: StateDep) -> dict[str, Any]:
    """Every feed item ever added, oldest first, with whether it is committed or visible right now."""
    now = state.clock()
    return {
        "items": [
            {**item.as_feed(), "committed": item.committed, "visible": item.visible(now), "reads": item.reads}
            for item in state.vtex.feed
        ]
    }


def apply_state(state: SimulatorState, order: dict[str, Any], new_state: str) -> dict[str, Any]:
    """Move an order to a state, add the change to the feed, and build the hook VTEX sends for it.

    Args:
        state: The app state.
        order: The stored order.
        new_state: A VTEX order state.

    Returns:
        The hook payload ``{"Domain", "OrderId", "State", "LastState", "LastChange", "CurrentChange",
        "Origin": {"Account", "Key"}}``; ``CurrentChange`` is strictly later than the previous change
        (``LastChange`` is passed on as found when an override made it unreadable).
    """
    config, vtex = state.config, state.vtex
    previous_state, previous_change = order.get("status"), order.get("lastChange")
    previous_ticks = parse_ticks(previous_change)
    ticks = now_ticks()
    if previous_ticks is not None and ticks <= previous_ticks:
        ticks = previous_ticks + 1
    order["status"] = new_state
    order["statusDescription"] = STATUS_DESCRIPTIONS.get(new_state, new_state)
    order["lastChange"] = vtex_timestamp(ticks)
    last_change = previous_change if previous_ticks is None else vtex_timestamp(previous_ticks, zulu=True)
    hook = {
        "Domain": HOOK_DOMAIN,
        "OrderId": order["orderId"],
        "State": new_state,
        "LastState": previous_state,
        "LastChange": last_change,
        "CurrentChange": vtex_timestamp(ticks, zulu=True),
        "Origin": {"Account": config.vtex_account, "Key": config.vtex_app_key},
    }
    vtex.hooks.setdefault(str(order["orderId"]), []).append(hook)
    vtex.add_feed_item(hook)
    return hook


def delivery_order(hooks: list[dict[str, Any]], delivery: Delivery) -> list[dict[str, Any]]:
    """The hooks in the order they are sent: as changed, reversed, each twice, or none at all."""
    ordered = hooks[::-1] if delivery in ("reversed", "repeated_reversed") else hooks
    if delivery in ("repeated", "repeated_reversed"):
        return [hook for hook in ordered for _ in range(2)]
    return [] if delivery == "none" else list(ordered)


async def deliver_hook(state: SimulatorState, hook: dict[str, Any]) -> dict[str, Any]:
    """POST one hook payload as JSON to the hook URL.

    Args:
        state: The app state (configuration, saved hook config, HTTP client).
        hook: The payload.

    Returns:
        ``{"state", "current_change", "status_code"}``; ``status_code`` is None when the request failed.
    """
    url, headers = _hook_target(state)
    state.vtex.counters.hooks_sent += 1
    status_code: int | None = None
    try:
        answer = await state.client().post(url, json=hook, headers=headers, timeout=HOOK_TIMEOUT_SECONDS)
        status_code = answer.status_code
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        logger.warning("vtex hook for order %s to %s failed: %s", hook["OrderId"], url, type(exc).__name__)
    return {"state": hook["State"], "current_change": hook["CurrentChange"], "status_code": status_code}


def _hook_target(state: SimulatorState) -> tuple[str, dict[str, str]]:
    if state.vtex.hook_config is not None:
        hook = state.vtex.hook_config["hook"]
        return str(hook["url"]), dict(hook["headers"])
    config = state.config
    headers = {config.vtex_hook_secret_header: config.vtex_hook_secret}
    return f"{config.api_url.rstrip('/')}{HOOK_PATH}", headers


def query_number(name: str, value: str | None, default: int, maximum: int, code: str, hint: str = "") -> int:
    """A query parameter from 1 to ``maximum`` (``default`` when absent); otherwise a 400 in VTEX's shape."""
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        number = 0
    if not 1 <= number <= maximum:
        raise EarlyReply(vtex_error(400, code, f"{name} must be an integer from 1 to {maximum}{hint}"))
    return number


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except ValueError:
        raise EarlyReply(vtex_error(400, "400", "The body is not valid JSON")) from None


def _known_order(state: SimulatorState, order_id: str) -> dict[str, Any]:
    order = state.vtex.orders.get(order_id)
    if order is None:
        raise EarlyReply(JSONResponse({"error": "order_not_found", "order_id": order_id}, status_code=404))
    return order
