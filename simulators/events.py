"""Receiver of the project's outbound events, verified the Standard Webhooks way."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from standardwebhooks.webhooks import WebhookVerificationError

from simulators.faults import Fault, rejects_leads, take_fault
from simulators.state import ReceivedEvent, StateDep, SubscriberState

router = APIRouter(prefix="/events", tags=["events"])
control_router = APIRouter(prefix="/_control/events", tags=["control"])


@router.post("/{subscriber}")
async def receive_event(subscriber: str, request: Request, state: StateDep) -> JSONResponse:
    """Verify signature and timestamp (5 min tolerance), drop repeats of a ``webhook-id``, keep the rest.

    Faults, under the target ``events/<subscriber>``: ``error_5xx_count`` answers 503 (away),
    ``rate_limit_count`` 429 with ``retry_after_seconds``, ``reject`` refuses every event for good
    (422), as a subscriber whose contract changed would."""
    raw = await request.body()
    inbox = state.subscriber(subscriber)
    target = f"events/{subscriber}"
    fault, retry_after = await take_fault(state, target)
    if fault is Fault.RATE_LIMITED:
        inbox.counters.unavailable += 1
        return JSONResponse({"error": "too_many_requests"}, 429, headers={"Retry-After": str(retry_after)})
    if fault is Fault.UNAVAILABLE:
        inbox.counters.unavailable += 1
        return JSONResponse({"error": "unavailable"}, status_code=503)
    if rejects_leads(state, target):
        inbox.counters.rejected += 1
        return JSONResponse({"error": "unprocessable", "message": "unknown event schema"}, status_code=422)
    try:
        payload = state.event_verifier.verify(raw, dict(request.headers))
    # The library lets malformed headers or bodies escape as ValueError (base64, unpacking, JSON).
    except (WebhookVerificationError, ValueError) as exc:
        inbox.counters.invalid += 1
        message = str(exc) or type(exc).__name__
        return JSONResponse({"error": "invalid_signature", "message": message}, status_code=400)
    if not isinstance(payload, dict):
        inbox.counters.invalid += 1
        return JSONResponse({"error": "invalid_payload", "message": "the event must be a JSON object"}, 400)
    event_id = request.headers["webhook-id"]
    if event_id in inbox.seen_ids:
        inbox.counters.duplicates += 1
        return JSONResponse({"status": "duplicate", "id": event_id})
    inbox.seen_ids.add(event_id)
    event_type = payload.get("type")
    inbox.events.append(
        ReceivedEvent(
            id=event_id,
            type=event_type if isinstance(event_type, str) else None,
            data=payload.get("data"),
            timestamp=request.headers["webhook-timestamp"],
        )
    )
    inbox.counters.received += 1
    return JSONResponse({"status": "received", "id": event_id})


@control_router.get("/{subscriber}")
async def list_events(subscriber: str, state: StateDep) -> dict[str, Any]:
    """The events a subscriber kept, oldest first, and its counters."""
    inbox = state.subscribers.get(subscriber) or SubscriberState()
    return {
        "subscriber": subscriber,
        "events": [asdict(event) for event in inbox.events],
        "counters": asdict(inbox.counters),
    }
