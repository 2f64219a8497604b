"""Dealers' status webhooks: what a dealer did with a lead it received (accepted, contacted, ...).

Each dealer has its own secret (``HUB_DEALER_WEBHOOK_SECRETS``). A report is recorded in the portal
database, against the lead's delivery record, and answered once committed: ``GET /v1/leads/{id}`` shows
it from then on. It is then handed to the lead's workflow, which passes it on to Zoho and the
subscribers (``api.relay``: right after the answer, or by a sweep if that failed). A resent report
changes nothing and is answered the same way.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, BackgroundTasks, HTTPException, Path, Request, status
from pydantic import BaseModel, ConfigDict, SecretStr

from api.body import (
    JSON,
    WEBHOOK_ERRORS,
    ZOHO_ID_PATTERN,
    InstantWithOffset,
    errors,
    json_fields,
    parse_model,
    read_limited,
)
from api.body import request_body as declared_body
from api.deps import RelayDep, SessionsDep, SettingsDep, check_secret
from api.openapi import DEALER_SECRET, security
from core.constants import DEALER_STATUSES, LeadStatus
from core.dealers import DEALER_ID_PATTERN
from db import feedback
from db.engine import database_unavailable

webhooks = APIRouter(prefix="/webhooks/dealers", tags=["dealers"])
log = logging.getLogger("api.dealers")

# How long a report may wait for the portal database (a free connection, the delivery row's lock, the
# commit) before the dealer is answered 503: well within a dealer CRM's own call time-out.
RECORD_TIMEOUT_SECONDS = 10
# Recordings the answer stopped waiting for, held until they end (the loop keeps no hold on a task).
_OUTLIVING: set[asyncio.Task[Any]] = set()


async def recorded_in_time(recording: Coroutine[Any, Any, feedback.Recorded]) -> feedback.Recorded | None:
    """The recording's outcome (or its error), or None where it did not end within
    RECORD_TIMEOUT_SECONDS. A database gone silent mid-connection (a failover, a dropped route) would
    hold the webhook until TCP gave up, and neither a commit under way nor SQLite's busy wait stops for
    a cancellation: the recording goes on alone, and may still record the report, which the dealer's
    resend then finds ("repeated") and the sweep hands on."""
    task = asyncio.ensure_future(recording)
    try:
        await asyncio.wait({task}, timeout=RECORD_TIMEOUT_SECONDS)
    finally:  # (also where the request itself is cancelled: its sender went away)
        if not task.done():
            _OUTLIVING.add(task)
            task.add_done_callback(_ended_alone)
    if task.done():
        return task.result()  # its error too: the database unavailable (503), or a bug (500)
    log.warning("dealer report not recorded within %s s: portal database too slow", RECORD_TIMEOUT_SECONDS)
    return None


def _ended_alone(task: asyncio.Task[Any]) -> None:
    """A recording no answer waited for any more ended: its failure is logged here, a bug's with its
    stack (the database unavailable is what the dealer was answered already)."""
    _OUTLIVING.discard(task)
    if task.cancelled() or (error := task.exception()) is None or database_unavailable(error):
        return
    log.error("dealer report recording failed: a bug in the hub", exc_info=error)


DealerStatus = Literal["accepted", "contacted", "qualified", "lost", "sold"]
assert set(DealerStatus.__args__) == {s.value for s in DEALER_STATUSES}  # type: ignore[attr-defined]


class DealerStatusWebhook(BaseModel):
    """What the dealer did with the lead, and when (ISO 8601 with its offset; default: now)."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    status: DealerStatus
    at: InstantWithOffset | None = None


class DealerStatusAnswer(BaseModel):
    """``applied``: the lead's newest status now; ``older``: kept in its history, a newer one stands;
    ``repeated``: already recorded."""

    outcome: Literal["applied", "older", "repeated"]
    lead_id: str
    dealer_id: str
    status: DealerStatus


# What a dealer without a secret is compared with: no sender knows it (a new one in every process).
NO_DEALER_SECRET = SecretStr(secrets.token_urlsafe(32))

DEALER_ERRORS = {
    **WEBHOOK_ERRORS,
    # The answer waits for the portal database only, never for Temporal.
    **errors(
        e500="not recorded because of a bug in the hub (logged with its stack)",
        e503="not recorded: the portal database did not answer (in time); send it again after the Retry-After"
        " delay",
        e401="missing or wrong secret, or no such dealer takes status webhooks",
        e404="the lead was never delivered to this dealer",
        e409="the lead is no longer with the dealer (its SLA passed, its CRM never answered the create"
        " call, or support moved it elsewhere): the report is recorded, not taken",
    ),
}


@webhooks.post(
    "/{dealer_id}/leads/{lead_id}/status",
    response_model=DealerStatusAnswer,
    responses=DEALER_ERRORS,
    openapi_extra={**declared_body(DealerStatusWebhook, JSON), **security(DEALER_SECRET)},
)
async def receive_dealer_status(
    request: Request,
    settings: SettingsDep,
    sessions: SessionsDep,
    relay: RelayDep,
    after_answer: BackgroundTasks,
    dealer_id: str = Path(pattern=DEALER_ID_PATTERN),
    lead_id: str = Path(pattern=ZOHO_ID_PATTERN),
) -> DealerStatusAnswer:
    """Record the dealer's status of the lead; once answered, hand it to the lead's workflow."""
    # A dealer without a secret is answered as a wrong secret is (401, after as long a comparison), so
    # that the answers do not tell an outsider which dealers exist.
    secret = settings.dealer_webhook_secrets.get(dealer_id, NO_DEALER_SECRET)
    header = settings.dealer_webhook_secret_header
    previous = settings.dealer_webhook_previous_secrets.get(dealer_id, SecretStr(""))
    check_secret([secret, previous], request.headers.get(header), header)
    body = await read_limited(request, settings.webhook_max_body_bytes)
    report = parse_model(DealerStatusWebhook, json_fields(body, request.headers.get("content-type", "")))
    now = datetime.now(UTC)
    at = report.at or now  # (one past ``now`` by more than a clock's skew is cut to it: feedback.record)
    recorded = await recorded_in_time(
        feedback.record(
            sessions,
            lead_id=lead_id,
            dealer_id=dealer_id,
            status=LeadStatus(report.status),
            at=at,
            received_at=now,
            to_signal=True,
        )
    )
    if recorded is None:
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            "may not be recorded: the portal database did not answer in time; send it again after the"
            " Retry-After delay",
            headers={"Retry-After": str(settings.temporal_unavailable_retry_after_seconds)},
        )
    if recorded.outcome is feedback.Outcome.UNKNOWN:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"lead {lead_id} was not delivered to {dealer_id}")
    if recorded.outcome is feedback.Outcome.LATE:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"lead {lead_id} is no longer with {dealer_id}: report recorded, not taken",
        )
    if recorded.due is not None:
        # Also for a repeat still due: the first hand-over may have failed (the sweep would take it, later).
        after_answer.add_task(relay.after_answer, recorded.due)
    return DealerStatusAnswer(
        outcome=recorded.outcome.value,
        lead_id=lead_id,
        dealer_id=dealer_id,
        status=report.status,
    )
