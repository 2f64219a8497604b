"""A dealer CRM with a modern REST API: Bearer key, ``Idempotency-Key`` on creates."""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse

from simulators.faults import Fault, rejects_leads, take_answer_fault, take_fault, take_unanswered_create
from simulators.state import DealerState, EarlyReply, IdempotentResult, StateDep

# Keys under which the sender may put its own id of the lead; the first one present is recorded.
EXTERNAL_ID_KEYS = ("external_id", "externalId", "zoho_lead_id", "lead_id")

router = APIRouter(prefix="/dealer-rest/{dealer_id}/api/v1", tags=["dealer-rest"])


def dealer_error(
    status_code: int, error: str, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """An error in the dealer API's shape: ``{"error", "message"}``."""
    return JSONResponse({"error": error, "message": message}, status_code=status_code, headers=headers)


async def dealer_rest_guard(dealer_id: str, request: Request, state: StateDep) -> DealerState:
    """Count the request, serve injected faults, then check the Bearer key.

    Returns:
        The dealer's state.

    Raises:
        EarlyReply: With the fault or the 401 to answer instead.
    """
    dealer = state.dealer(dealer_id)
    dealer.counters.requests += 1
    fault, retry_after = await take_fault(state, dealer_id)
    if fault is not Fault.NONE:
        dealer.counters.faults_served += 1
    if fault is Fault.UNAVAILABLE:
        raise EarlyReply(dealer_error(503, "unavailable", "the dealer CRM is temporarily unavailable"))
    if fault is Fault.RATE_LIMITED:
        headers = {"Retry-After": str(retry_after)}
        raise EarlyReply(dealer_error(429, "rate_limited", "too many requests", headers))
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise EarlyReply(
            dealer_error(401, "unauthorized", "an Authorization: Bearer <api key> header is required")
        )
    return dealer


DealerDep = Annotated[DealerState, Depends(dealer_rest_guard)]


@router.post("/leads")
async def create_lead(
    dealer_id: str,
    request: Request,
    dealer: DealerDep,
    state: StateDep,
    idempotency_key: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Create a lead, once per ``Idempotency-Key``: a retry with the same body gets the first answer."""
    if not idempotency_key:
        return dealer_error(400, "missing_idempotency_key", "the Idempotency-Key header is required")
    try:
        body = json.loads(await request.body())
    except ValueError:
        return dealer_error(400, "invalid_json", "the body is not valid JSON")
    if not isinstance(body, dict):
        return dealer_error(400, "invalid_body", "the body must be a JSON object")
    previous = dealer.idempotency.get(idempotency_key)
    if previous is not None:
        if take_unanswered_create(state, dealer_id):
            return dealer_error(503, "unavailable", "the lead gateway did not answer")
        return _replay(dealer, previous, body)
    if rejects_leads(state, dealer_id):
        dealer.counters.rejected += 1
        return dealer_error(422, "lead_rejected", "dealer does not accept this lead")
    lead = dealer.add_lead("rest", _external_id(body), body)
    response = {"id": lead.id, "status": "created", "received": body}
    dealer.idempotency[idempotency_key] = IdempotentResult(body=body, response=response)
    if take_unanswered_create(state, dealer_id):  # stored, but the answer is a failure
        return dealer_error(503, "unavailable", "the lead gateway did not answer")
    garbled = take_answer_fault(state, dealer_id)
    if garbled == "no_id":
        return JSONResponse({"status": "created"}, status_code=201)
    if garbled == "conflict":
        return dealer_error(409, "idempotency_key_in_use", "a request with this key is being processed")
    return JSONResponse(response, status_code=201)


@router.get("/leads")
async def list_leads(dealer: DealerDep, external_id: str | None = None) -> dict[str, Any]:
    """Every lead the dealer stored, or those stored under ``external_id``."""
    leads = [
        {
            "id": lead.id,
            "external_id": lead.external_id,
            "created_at": lead.created_at,
            "received": lead.fields,
        }
        for lead in dealer.leads
        if external_id is None or lead.external_id == external_id
    ]
    return {"data": leads}


def _replay(dealer: DealerState, previous: IdempotentResult, body: dict[str, Any]) -> JSONResponse:
    if previous.body != body:
        message = "this Idempotency-Key was already used with a different body"
        return dealer_error(422, "idempotency_key_reused", message)
    dealer.counters.replays += 1
    return JSONResponse(previous.response, status_code=200, headers={"Idempotent-Replayed": "true"})


def _external_id(body: dict[str, Any]) -> str | None:
    value = next((body[key] for key in EXTERNAL_ID_KEYS if body.get(key) not in (None, "")), None)
    return None if value is None else str(value)


@router.delete("/leads/{lead_id}")
async def withdraw_lead(lead_id: str, dealer: DealerDep) -> JSONResponse:
    """Drop a lead the sender takes back; asking again answers the same."""
    lead = dealer.find(lead_id)
    if lead is None:
        return dealer_error(404, "not_found", f"no lead {lead_id}")
    dealer.withdraw(lead)
    return JSONResponse({"id": lead.id, "status": "withdrawn"})


@router.get("/leads/{lead_id}/status")
async def lead_status(lead_id: str, dealer: DealerDep) -> JSONResponse:
    """What the dealer did with the lead: ``{"status", "at"}``, status null before anything."""
    lead = dealer.find(lead_id)
    if lead is None:
        return dealer_error(404, "not_found", f"no lead {lead_id}")
    dealer.counters.status_reads += 1
    status = "withdrawn" if lead.withdrawn else lead.status
    return JSONResponse({"id": lead.id, "status": status, "at": lead.status_at})
