"""Zoho CRM Deals: get/update over the REST API, and a workflow rule "on Stage change" firing its webhook.

A deal's ``Modified_Time`` never moves backward (second precision, as Zoho shows it), so the project
can order the updates it receives by it, except that two changes made within one second share it: a
stage move given the deal's current ``modified_time`` stands for that.
"""

from __future__ import annotations

import math
import zlib
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from simulators.deals import STAGE_PROBABILITIES, DealStage, stage_probability
from simulators.leads import BRT, INTEGRATION_USER, OWNERS, ZOHO_ORG_PREFIX, zoho_timestamp
from simulators.state import EarlyReply, SimulatorState, StateDep
from simulators.zoho import (
    MODIFIED_BY,
    WebhookFormat,
    apply_update,
    invalid_id,
    post_webhook,
    read_update,
    record_response,
    webhook_answer,
    zoho_api_guard,
)

DEAL_WEBHOOK_PATH = "/webhooks/zoho/opportunities"
KNOWN_USERS = {user["name"]: user["id"] for user in (*OWNERS, INTEGRATION_USER)}

router = APIRouter(prefix="/zoho", tags=["zoho"])
control_router = APIRouter(prefix="/_control/zoho", tags=["control"])


@router.get("/crm/{version}/Deals/{deal_id}", dependencies=[Depends(zoho_api_guard)])
async def get_deal(deal_id: str, state: StateDep) -> Response:
    """One deal as ``{"data": [deal]}``; 204 with no body for an unknown id, as Zoho does."""
    state.zoho.counters.deal_gets += 1
    return record_response(state.zoho.deals.get(deal_id))


@router.put("/crm/{version}/Deals/{deal_id}", dependencies=[Depends(zoho_api_guard)])
async def update_deal(deal_id: str, request: Request, state: StateDep) -> JSONResponse:
    """Merge ``data[0]`` into the deal, as for leads; a new ``Stage`` goes into the stage history.

    No webhook is sent, even without ``"trigger": []``: such updates are counted in
    ``updates_without_trigger`` for tests to assert on.
    """
    payload, record = await read_update(request)
    zoho = state.zoho
    deal = zoho.deals.get(deal_id)
    if deal is None:
        return invalid_id(deal_id)
    zoho.counters.deal_updates += 1
    previous_stage = deal.get("Stage")
    now = later_modified_time(deal.get("Modified_Time"), datetime.now(BRT))
    item = apply_update(state, deal, record, payload, now, zoho.deal_updates)
    if deal.get("Stage") != previous_stage:
        probability = stage_probability(deal.get("Stage"))
        if probability is not None and "Probability" not in record:
            deal["Probability"] = probability
        history = zoho.stage_history.setdefault(deal_id, [])
        history.append({"stage": deal.get("Stage"), "modified_time": now, "modified_by": MODIFIED_BY["name"]})
    return JSONResponse({"data": [item]})


class StageChange(BaseModel):
    """A user moving a deal to a stage in Zoho, and how the "on Stage change" rule's webhook goes out."""

    model_config = ConfigDict(extra="forbid")

    stage: DealStage
    modified_by: str | None = Field(default=None, min_length=1, max_length=100)
    modified_time: AwareDatetime | None = None
    send_webhook: bool = True
    webhook_format: WebhookFormat = "form"
    partial: bool = False


class DealWebhookRequest(BaseModel):
    """How the deal webhook is sent: body format, and whether it carries only the deal id."""

    model_config = ConfigDict(extra="forbid")

    format: WebhookFormat = "form"
    partial: bool = False


@control_router.post("/deals")
async def create_deal(
    state: StateDep, body: Annotated[dict[str, Any] | None, Body()] = None
) -> dict[str, Any]:
    """Create a generated deal; every key of the body is a Zoho field that overrides the generated one."""
    return {"deal": state.zoho.create_deal(dict(body or {}))}


@control_router.post("/deals/{deal_id}/stage")
async def change_stage(deal_id: str, change: StageChange, state: StateDep) -> dict[str, Any]:
    """Move a deal to a stage (with its probability) and fire the rule's webhook unless told not to.

    ``Modified_Time`` is ``modified_time`` when given (it must not be earlier than the current one, else
    409; equal is a second change within the same second, which Zoho stamps alike), otherwise now, or one
    second after the current one if now is not later. ``Modified_By`` is the user
    named ``modified_by``, by default the deal's owner. The change is kept even if the webhook then fails.
    """
    deal = _known_deal(state, deal_id)
    current = parse_zoho_time(deal.get("Modified_Time"))
    if change.modified_time is None:
        modified_time = later_modified_time(deal.get("Modified_Time"), datetime.now(BRT))
    else:
        wanted = change.modified_time.astimezone(BRT).replace(microsecond=0)
        if current is not None and wanted < current:
            failure = {
                "error": "modified_time_earlier",
                "message": "modified_time must not be earlier than the deal's current Modified_Time",
                "deal_id": deal_id,
                "current_modified_time": deal.get("Modified_Time"),
            }
            raise EarlyReply(JSONResponse(failure, status_code=409))
        modified_time = zoho_timestamp(wanted)
    modified_by = user_named(change.modified_by) if change.modified_by else _owner_of(deal)
    deal["Stage"] = change.stage
    deal["Probability"] = STAGE_PROBABILITIES[change.stage]
    deal["Modified_By"] = modified_by
    deal["Modified_Time"] = modified_time
    history = state.zoho.stage_history.setdefault(deal_id, [])
    history.append(
        {"stage": change.stage, "modified_time": modified_time, "modified_by": modified_by["name"]}
    )
    webhook = None
    if change.send_webhook:
        webhook = await send_deal_webhook(state, deal, change.webhook_format, partial=change.partial)
    return {"deal": deal, "webhook": webhook}


class DealEdit(BaseModel):
    """A user editing a deal's fields other than its stage (the amount, the closing date, ...)."""

    model_config = ConfigDict(extra="forbid")

    fields: dict[str, Any] = Field(min_length=1)
    modified_by: str | None = Field(default=None, min_length=1, max_length=100)

    @field_validator("fields")
    @classmethod
    def _not_the_stage(cls, fields: dict[str, Any]) -> dict[str, Any]:
        moved = {"Stage", "id", "Modified_Time", "Modified_By"} & fields.keys()
        if moved:
            raise ValueError(f"{sorted(moved)} are not edited here (the stage moves at /stage)")
        return fields


@control_router.patch("/deals/{deal_id}")
async def edit_deal(deal_id: str, edit: DealEdit, state: StateDep) -> dict[str, Any]:
    """Edit a deal's fields, as a user saving the record: ``Modified_Time`` moves on (one second past
    the current one at least), and no webhook goes out, since the rule fires on a Stage change only."""
    deal = _known_deal(state, deal_id)
    deal.update(edit.fields)
    deal["Modified_By"] = user_named(edit.modified_by) if edit.modified_by else _owner_of(deal)
    deal["Modified_Time"] = later_modified_time(deal.get("Modified_Time"), datetime.now(BRT))
    return {"deal": deal}


@control_router.post("/deals/{deal_id}/webhook")
async def resend_webhook(
    deal_id: str, state: StateDep, options: Annotated[DealWebhookRequest | None, Body()] = None
) -> dict[str, Any]:
    """Send the deal's webhook again for its current state (a retry or duplicate from Zoho)."""
    options = options or DealWebhookRequest()
    return await send_deal_webhook(
        state, _known_deal(state, deal_id), options.format, partial=options.partial
    )


@control_router.get("/deals/{deal_id}")
async def show_deal(deal_id: str, state: StateDep) -> dict[str, Any]:
    """A deal, the stages it went through (creation first) and the updates the project made to it."""
    zoho = state.zoho
    return {
        "deal": _known_deal(state, deal_id),
        "stage_history": zoho.stage_history.get(deal_id, []),
        "updates": zoho.deal_updates.get(deal_id, []),
    }


def deal_webhook_fields(deal: dict[str, Any], *, partial: bool = False) -> dict[str, str]:
    """The merge fields the "on Stage change" rule puts in the deal webhook.

    Args:
        deal: A Zoho deal record.
        partial: Only the deal id (the project must then fetch the deal).

    Returns:
        ``deal_id, stage, modified_time, modified_by, amount`` as strings (``modified_by`` is the user's
        name, ``amount`` plain decimal text with two decimals such as ``1234567.80``), empty when the field
        is empty; only ``deal_id`` when ``partial``.
    """
    deal_id = deal.get("id")
    if partial:
        return {"deal_id": "" if deal_id is None else str(deal_id)}
    modified_by = deal.get("Modified_By")
    source = {
        "deal_id": deal_id,
        "stage": deal.get("Stage"),
        "modified_time": deal.get("Modified_Time"),
        "modified_by": modified_by.get("name") if isinstance(modified_by, dict) else modified_by,
        "amount": amount_text(deal.get("Amount")),
    }
    return {key: "" if value is None else str(value) for key, value in source.items()}


async def send_deal_webhook(
    state: SimulatorState, deal: dict[str, Any], webhook_format: WebhookFormat, *, partial: bool = False
) -> dict[str, Any]:
    """Post a deal's webhook to ``<api_url>/webhooks/zoho/opportunities`` as the Zoho rule does.

    Args:
        state: The app state (configuration and HTTP client).
        deal: The deal the rule fired for.
        webhook_format: ``form`` (url-encoded pairs) or ``json`` (raw body of at most 500 characters).
        partial: Send only ``deal_id``.

    Returns:
        ``{"status_code", "body"}`` of the API's answer.

    Raises:
        EarlyReply: 422 if the JSON body would exceed Zoho's limit, 502 (with the deal) if the API cannot
            be reached.
    """
    fields = deal_webhook_fields(deal, partial=partial)
    failure = {"deal_id": deal.get("id"), "deal": deal}
    subject = f"deal {deal.get('id')}"
    response = await post_webhook(state, DEAL_WEBHOOK_PATH, fields, webhook_format, subject, failure)
    state.zoho.counters.deal_webhooks_sent += 1
    return webhook_answer(response)


def amount_text(amount: Any) -> str | None:
    """An amount as a merge field renders it: plain decimal text with two decimals, None when empty."""
    if amount is None or amount == "":
        return None
    if isinstance(amount, int | float) and not isinstance(amount, bool) and math.isfinite(amount):
        return f"{Decimal(str(amount)).quantize(Decimal('0.01')):f}"
    return str(amount)


def parse_zoho_time(value: Any) -> datetime | None:
    """A Zoho timestamp as an aware datetime (naive ones are taken as Brasília time), None if unreadable."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=BRT)


def later_modified_time(current: Any, now: datetime) -> str:
    """The ``Modified_Time`` of a new change: ``now``, or one second after ``current`` if now is not later.

    Args:
        current: The record's current ``Modified_Time`` (ignored when unreadable).
        now: The moment of the change.

    Returns:
        A Zoho timestamp strictly later than ``current``.
    """
    moment = now.astimezone(BRT).replace(microsecond=0)
    previous = parse_zoho_time(current)
    if previous is not None and moment <= previous:
        moment = previous.astimezone(BRT).replace(microsecond=0) + timedelta(seconds=1)
    return zoho_timestamp(moment)


def user_named(name: str) -> dict[str, str]:
    """A Zoho user lookup ``{"id", "name"}`` for a name: the known users' ids, else a stable made-up one."""
    user_id = KNOWN_USERS.get(name) or f"{ZOHO_ORG_PREFIX}000000{zlib.crc32(name.encode()) % 10**6:06d}"
    return {"id": user_id, "name": name}


def _owner_of(deal: dict[str, Any]) -> dict[str, str]:
    owner = deal.get("Owner")
    if isinstance(owner, dict) and owner.get("name"):
        return {"id": str(owner.get("id", "")), "name": str(owner["name"])}
    return dict(MODIFIED_BY)


def _known_deal(state: SimulatorState, deal_id: str) -> dict[str, Any]:
    deal = state.zoho.deals.get(deal_id)
    if deal is None:
        raise EarlyReply(JSONResponse({"error": "deal_not_found", "deal_id": deal_id}, status_code=404))
    return deal
