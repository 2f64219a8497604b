"""Zoho CRM stand-in: OAuth token refresh, Leads get/update, and the workflow-rule webhook sender.

Deals (their API, control routes and stage-change webhook) are in :mod:`simulators.zoho_deals`.
"""

from __future__ import annotations

import json
import logging
import secrets
from collections import deque
from datetime import datetime
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Body, Depends, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, Field

from simulators.faults import ZOHO_TARGET, Fault, take_fault
from simulators.leads import BRT, INTEGRATION_USER, zoho_timestamp
from simulators.state import EarlyReply, SimulatorState, StateDep, same_secret

logger = logging.getLogger(__name__)

TOKEN_WINDOW_SECONDS = 600
TOKENS_PER_WINDOW = 10
TOO_MANY_TOKENS = "You have made too many requests continuously. Please try again after some time."
API_VERSIONS = frozenset(f"v{number}" for number in range(2, 9))
MODIFIED_BY = {key: INTEGRATION_USER[key] for key in ("id", "name")}
# Fields Zoho computes itself: an update cannot set them.
READ_ONLY_FIELDS = frozenset({"id", "Created_Time", "Modified_Time", "Created_By", "Modified_By"})
WEBHOOK_PATH = "/webhooks/zoho/leads"
WEBHOOK_JSON_LIMIT = 500

WebhookFormat = Literal["form", "json"]

router = APIRouter(prefix="/zoho", tags=["zoho"])
control_router = APIRouter(prefix="/_control/zoho", tags=["control"])


def zoho_error(
    status_code: int, code: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error in the shape of Zoho CRM's REST API."""
    body = {"code": code, "details": {}, "message": message, "status": "error"}
    return JSONResponse(body, status_code=status_code, headers=headers)


@router.post("/oauth/v2/token")
async def issue_token(request: Request, state: StateDep) -> JSONResponse:
    """Exchange a refresh token for an access token, as ``accounts.zoho.<dc>`` does."""
    params = dict(request.query_params)
    if request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        form = await request.form()
        params = {**{key: value for key, value in form.items() if isinstance(value, str)}, **params}
    return _token_answer(state, params)


def _token_answer(state: SimulatorState, params: dict[str, str]) -> JSONResponse:
    config, zoho = state.config, state.zoho
    # Zoho answers credential errors with HTTP 200 and an "error" key.
    if params.get("grant_type") != "refresh_token":
        return JSONResponse({"error": "unsupported_grant_type"})
    if ZOHO_TARGET in state.revoked:
        return JSONResponse({"error": "invalid_client"})
    if not (
        same_secret(params.get("client_id"), config.zoho_client_id)
        and same_secret(params.get("client_secret"), config.zoho_client_secret)
    ):
        return JSONResponse({"error": "invalid_client"})
    refresh_token = params.get("refresh_token", "")
    if not same_secret(refresh_token, config.zoho_refresh_token):
        return JSONResponse({"error": "invalid_code"})
    now = state.clock()
    issued = zoho.issued_at.setdefault(refresh_token, deque())
    while issued and issued[0] <= now - TOKEN_WINDOW_SECONDS:
        issued.popleft()
    if len(issued) >= TOKENS_PER_WINDOW:
        return JSONResponse({"error": "Access Denied", "error_description": TOO_MANY_TOKENS}, status_code=400)
    issued.append(now)
    token = f"1000.{secrets.token_hex(16)}.{secrets.token_hex(16)}"
    zoho.token_expiry[token] = now + config.token_lifetime_seconds
    zoho.counters.tokens_issued += 1
    return JSONResponse(
        {
            "access_token": token,
            "api_domain": f"{config.public_base_url.rstrip('/')}/zoho",
            "token_type": "Bearer",
            "expires_in": config.token_lifetime_seconds,
        }
    )


async def zoho_api_guard(version: str, request: Request, state: StateDep) -> None:
    """Check the API version and the access token, and serve injected faults, before any CRM call.

    Raises:
        EarlyReply: With the Zoho-shaped error to answer instead.
    """
    if version not in API_VERSIONS:
        message = "Please check if the URL trying to access is a correct one"
        raise EarlyReply(zoho_error(404, "INVALID_URL_PATTERN", message))
    fault, retry_after = await take_fault(state, ZOHO_TARGET)
    if fault is not Fault.NONE:
        state.zoho.counters.faults_served += 1
    if fault is Fault.UNAVAILABLE:
        raise EarlyReply(zoho_error(503, "SERVICE_UNAVAILABLE", "service temporarily unavailable"))
    if fault is Fault.RATE_LIMITED:
        headers = {"Retry-After": str(retry_after)}
        raise EarlyReply(zoho_error(429, "TOO_MANY_REQUESTS", "API credits exhausted", headers))
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    expiry = state.zoho.token_expiry.get(token.strip()) if scheme == "Zoho-oauthtoken" else None
    if expiry is None or expiry <= state.clock() or ZOHO_TARGET in state.revoked:
        raise EarlyReply(zoho_error(401, "INVALID_TOKEN", "invalid oauth token"))


def record_response(record: dict[str, Any] | None) -> Response:
    """A record as Zoho's GET answers it: ``{"data": [record]}``, or 204 with no body when unknown."""
    if record is None:
        return Response(status_code=204)
    return JSONResponse({"data": [record]})


@router.get("/crm/{version}/Leads/{lead_id}", dependencies=[Depends(zoho_api_guard)])
async def get_lead(lead_id: str, state: StateDep) -> Response:
    """One lead as ``{"data": [lead]}``; 204 with no body for an unknown id, as Zoho does."""
    state.zoho.counters.lead_gets += 1
    return record_response(state.zoho.leads.get(lead_id))


@router.put("/crm/{version}/Leads/{lead_id}", dependencies=[Depends(zoho_api_guard)])
async def update_lead(lead_id: str, request: Request, state: StateDep) -> JSONResponse:
    """Merge ``data[0]`` into the lead; an update without ``trigger`` is counted (it would loop)."""
    payload, record = await read_update(request)
    lead = state.zoho.leads.get(lead_id)
    if lead is None:
        return invalid_id(lead_id)
    refused = outside_picklists(state, record)
    if refused is not None:
        return refused
    state.zoho.counters.lead_updates += 1
    now = zoho_timestamp(datetime.now(BRT))
    item = apply_update(state, lead, record, payload, now, state.zoho.updates)
    return JSONResponse({"data": [item]})


def outside_picklists(state: SimulatorState, record: dict[str, Any]) -> JSONResponse | None:
    """Zoho's refusal of a record holding a value its restricted picklist lacks, naming the field."""
    for name, allowed in state.zoho.picklists.items():
        if name in record and record[name] not in allowed:
            item = {"code": "INVALID_DATA", "details": {"api_name": name}, "message": "invalid data"}
            return JSONResponse({"data": [{**item, "status": "error"}]}, status_code=400)
    return None


async def read_update(request: Request) -> tuple[dict[str, Any], dict[str, Any]]:
    """The body of a record update and its one record.

    Raises:
        EarlyReply: With Zoho's 400 for a body that is not JSON or does not hold exactly one record.
    """
    try:
        payload = json.loads(await request.body())
    except ValueError:
        raise EarlyReply(zoho_error(400, "INVALID_DATA", "body is not valid JSON")) from None
    records = payload.get("data") if isinstance(payload, dict) else None
    if not (isinstance(records, list) and len(records) == 1 and isinstance(records[0], dict)):
        message = "required field not found: data (one record)"
        raise EarlyReply(zoho_error(400, "MANDATORY_NOT_FOUND", message))
    return payload, records[0]


def invalid_id(record_id: str) -> JSONResponse:
    """Zoho's answer to an update of a record id it does not know."""
    item = {
        "code": "INVALID_DATA",
        "details": {"id": record_id},
        "message": "the id given seems to be invalid",
    }
    return JSONResponse({"data": [{**item, "status": "error"}]}, status_code=400)


def apply_update(
    state: SimulatorState,
    stored: dict[str, Any],
    record: dict[str, Any],
    payload: dict[str, Any],
    now: str,
    updates: dict[str, list[dict[str, Any]]],
) -> dict[str, Any]:
    """Merge an update into a stored record (lead or deal) as the integration user, and log it.

    Args:
        state: The app state; an update without ``trigger`` is counted (it would fire the rules again).
        stored: The record to change.
        record: The fields sent; read-only ones are ignored.
        payload: The whole body (for ``trigger``).
        now: The new ``Modified_Time``.
        updates: The update log to append to, by record id.

    Returns:
        Zoho's per-record success item.
    """
    trigger_sent = "trigger" in payload
    if not trigger_sent:
        state.zoho.counters.updates_without_trigger += 1
    fields = {key: value for key, value in record.items() if key not in READ_ONLY_FIELDS}
    stored.update(fields)
    stored["Modified_Time"] = now
    stored["Modified_By"] = dict(MODIFIED_BY)
    history = updates.setdefault(stored["id"], [])
    history.append(
        {"at": now, "fields": fields, "trigger_sent": trigger_sent, "trigger": payload.get("trigger")}
    )
    owner = stored.get("Owner") or MODIFIED_BY
    details = {
        "Modified_Time": now,
        "Modified_By": dict(MODIFIED_BY),
        "Created_Time": stored.get("Created_Time"),
        "id": stored["id"],
        "Created_By": {"id": owner.get("id"), "name": owner.get("name")},
    }
    return {"code": "SUCCESS", "details": details, "message": "record updated", "status": "success"}


class WebhookRequest(BaseModel):
    """How the workflow-rule webhook is configured to send its body."""

    format: WebhookFormat = "form"


@control_router.post("/leads")
async def create_lead(
    state: StateDep, body: Annotated[dict[str, Any] | None, Body()] = None
) -> dict[str, Any]:
    """Create a lead (fields in the body override generated ones) and optionally fire its webhook.

    Body keys ``send_webhook`` (default false) and ``webhook_format`` (``form`` or ``json``) are options,
    every other key is a Zoho field.
    """
    fields = dict(body or {})
    send = bool(fields.pop("send_webhook", False))
    webhook_format = fields.pop("webhook_format", "form")
    if webhook_format not in ("form", "json"):
        raise EarlyReply(JSONResponse({"error": "webhook_format must be form or json"}, status_code=422))
    lead = state.zoho.create_lead(fields)
    webhook = await send_lead_webhook(state, lead, webhook_format) if send else None
    return {"lead": lead, "webhook": webhook}


@control_router.post("/leads/{lead_id}/webhook")
async def fire_webhook(
    lead_id: str, state: StateDep, options: Annotated[WebhookRequest | None, Body()] = None
) -> dict[str, Any]:
    """Fire a lead's workflow-rule webhook at the project's API and report its answer."""
    return await send_lead_webhook(state, _known_lead(state, lead_id), (options or WebhookRequest()).format)


class Picklist(BaseModel):
    field: str = Field(min_length=1, description="a field's API name, such as Lead_Status")
    values: list[str] | None = Field(description="the values the org allows; null: any value again")


@control_router.post("/picklists")
async def restrict_picklist(picklist: Picklist, state: StateDep) -> dict[str, Any]:
    """Restrict a field to some values (an admin removed one from its picklist), or lift that."""
    if picklist.values is None:
        state.zoho.picklists.pop(picklist.field, None)
    else:
        state.zoho.picklists[picklist.field] = picklist.values
    return {"picklists": state.zoho.picklists}


@control_router.delete("/leads/{lead_id}")
async def delete_lead(lead_id: str, state: StateDep) -> dict[str, Any]:
    """What a salesperson's "Delete" does: the lead goes to the recycle bin, and reads of it answer 204."""
    _known_lead(state, lead_id)
    return {"lead": state.zoho.leads.pop(lead_id)}


@control_router.get("/leads/{lead_id}")
async def show_lead(lead_id: str, state: StateDep) -> dict[str, Any]:
    """A lead and the updates the project made to it."""
    return {"lead": _known_lead(state, lead_id), "updates": state.zoho.updates.get(lead_id, [])}


def webhook_fields(lead: dict[str, Any]) -> dict[str, str]:
    """The merge fields the workflow rule puts in the webhook: the id and a few routing fields.

    Args:
        lead: A Zoho lead record.

    Returns:
        ``lead_id, state, city, model, lead_source`` as strings, empty when the field is empty.
    """
    source = {
        "lead_id": lead.get("id"),
        "state": lead.get("State"),
        "city": lead.get("City"),
        "model": lead.get("Modelo_de_Interesse"),
        "lead_source": lead.get("Lead_Source"),
    }
    return {key: "" if value is None else str(value) for key, value in source.items()}


async def send_lead_webhook(
    state: SimulatorState, lead: dict[str, Any], webhook_format: WebhookFormat
) -> dict[str, Any]:
    """Post a lead's webhook to ``<api_url>/webhooks/zoho/leads`` the way a Zoho workflow rule does.

    Args:
        state: The app state (configuration and HTTP client).
        lead: The lead the rule fired for.
        webhook_format: ``form`` (url-encoded pairs) or ``json`` (raw body of at most 500 characters).

    Returns:
        ``{"status_code", "body"}`` of the API's answer.

    Raises:
        EarlyReply: 422 if the JSON body would exceed Zoho's limit, 502 if the API cannot be reached.
    """
    subject = f"lead {lead.get('id')}"
    failure = {"lead_id": lead.get("id")}
    response = await post_webhook(state, WEBHOOK_PATH, webhook_fields(lead), webhook_format, subject, failure)
    state.zoho.counters.webhooks_sent += 1
    return webhook_answer(response)


async def post_webhook(
    state: SimulatorState,
    path: str,
    fields: dict[str, str],
    webhook_format: WebhookFormat,
    subject: str,
    failure: dict[str, Any],
) -> httpx.Response:
    """Post merge fields to the project's API with the secret header, as a Zoho webhook does.

    Args:
        state: The app state (configuration and HTTP client).
        path: The webhook's path on the API.
        fields: The merge fields.
        webhook_format: ``form`` (url-encoded pairs) or ``json`` (raw body of at most 500 characters).
        subject: The record, for the log (``lead <id>``).
        failure: What to add to the 502 answer if the API cannot be reached (the record's id...).

    Returns:
        The API's answer, whatever its status.

    Raises:
        EarlyReply: 422 if the JSON body would exceed Zoho's limit, 502 if the API cannot be reached.
    """
    config, http = state.config, state.client()
    url = f"{config.api_url.rstrip('/')}{path}"
    headers = {config.zoho_webhook_secret_header: config.zoho_webhook_secret}
    if webhook_format == "json":
        body = json.dumps(fields, ensure_ascii=False, separators=(",", ":"))
        if len(body) > WEBHOOK_JSON_LIMIT:
            message = f"Zoho webhook bodies are limited to {WEBHOOK_JSON_LIMIT} characters"
            raise EarlyReply(JSONResponse({"error": "webhook_body_too_long", "message": message}, 422))
        headers["Content-Type"] = "application/json"
        request = http.build_request("POST", url, content=body.encode(), headers=headers)
    else:
        request = http.build_request("POST", url, data=fields, headers=headers)
    try:
        return await http.send(request)
    except httpx.HTTPError as exc:
        logger.warning("zoho webhook for %s failed: %s", subject, type(exc).__name__)
        message = f"could not deliver the webhook to {url}: {type(exc).__name__}: {exc}"
        failed = {"error": "webhook_failed", "message": message, **failure}
        raise EarlyReply(JSONResponse(failed, status_code=502)) from exc


def webhook_answer(response: httpx.Response) -> dict[str, Any]:
    """What the control API reports of a webhook delivery: ``{"status_code", "body"}`` of the answer."""
    return {"status_code": response.status_code, "body": _decoded(response)}


def _decoded(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _known_lead(state: SimulatorState, lead_id: str) -> dict[str, Any]:
    lead = state.zoho.leads.get(lead_id)
    if lead is None:
        raise EarlyReply(JSONResponse({"error": "lead_not_found", "lead_id": lead_id}, status_code=404))
    return lead
