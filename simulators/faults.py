"""Fault injection and the control API (faults, counters, reset, dealer leads) under ``/_control``."""

from __future__ import annotations

import asyncio
from dataclasses import asdict
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from fastapi import APIRouter, HTTPException
from pydantic import BaseModel, Field

from simulators.state import (
    DealerCounters,
    DealerState,
    EventCounters,
    FaultPlan,
    SimulatorState,
    StateDep,
    VtexCounters,
    ZohoCounters,
)

ZOHO_TARGET = "zoho"
VTEX_TARGET = "vtex"


class Fault(StrEnum):
    """What a request gets instead of a normal answer."""

    NONE = "none"
    UNAVAILABLE = "unavailable"
    RATE_LIMITED = "rate_limited"


async def take_fault(state: SimulatorState, target: str) -> tuple[Fault, int]:
    """Apply the target's latency and consume one injected failure, if any is left.

    Failures are served in order: first the 503s, then the 429s.

    Args:
        state: The app state.
        target: ``zoho``, ``vtex`` or a dealer id.

    Returns:
        The fault to serve and the ``Retry-After`` seconds that go with a 429.
    """
    plan = state.faults.get(target)
    if plan is None:
        return Fault.NONE, 0
    # Decide before sleeping so that concurrent requests each consume their own failure.
    fault = Fault.NONE
    if plan.error_5xx_remaining > 0:
        plan.error_5xx_remaining -= 1
        fault = Fault.UNAVAILABLE
    elif plan.rate_limit_remaining > 0:
        plan.rate_limit_remaining -= 1
        fault = Fault.RATE_LIMITED
    if plan.latency_ms:
        await asyncio.sleep(plan.latency_ms / 1000)
    return fault, plan.retry_after_seconds


def rejects_leads(state: SimulatorState, target: str) -> bool:
    """Whether the target is set to refuse every lead."""
    plan = state.faults.get(target)
    return plan is not None and plan.reject


def take_unanswered_create(state: SimulatorState, target: str) -> bool:
    """Whether a create the dealer stored (or had stored) is answered 503 instead of its result."""
    plan = state.faults.get(target)
    if plan is None or plan.stored_unanswered_remaining <= 0:
        return False
    plan.stored_unanswered_remaining -= 1
    return True


def take_slow_store(state: SimulatorState, target: str) -> float:
    """How many seconds a create waits before the dealer stores it (0: none)."""
    plan = state.faults.get(target)
    if plan is None or plan.slow_store_remaining <= 0:
        return 0.0
    plan.slow_store_remaining -= 1
    return plan.slow_store_ms / 1000


def take_answer_fault(state: SimulatorState, target: str) -> str | None:
    """How a dealer garbles the answer to a create it performed: ``"no_id"`` (2xx without the lead's
    id), ``"conflict"`` (409, as when a create under the same key is still running), or None."""
    plan = state.faults.get(target)
    if plan is None:
        return None
    if plan.answer_without_id_remaining > 0:
        plan.answer_without_id_remaining -= 1
        return "no_id"
    if plan.conflict_remaining > 0:
        plan.conflict_remaining -= 1
        return "conflict"
    return None


class FaultSpec(BaseModel):
    """Failures to inject for one target; replaces what was set for it before."""

    target: str = Field(min_length=1, description='"zoho", "vtex", a dealer id or "events/<subscriber>"')
    latency_ms: int = Field(default=0, ge=0, le=60_000)
    error_5xx_count: int = Field(default=0, ge=0)
    rate_limit_count: int = Field(default=0, ge=0)
    retry_after_seconds: int = Field(default=1, ge=0)
    reject: bool = False
    answer_without_id_count: int = Field(default=0, ge=0, description="REST dealer: 201 without an id")
    conflict_count: int = Field(default=0, ge=0, description="REST dealer: 409 after storing the lead")
    answer_lost_count: int = Field(
        default=0, ge=0, description="ADF inbox: store the e-mail, then answer after the sender gave up"
    )
    stored_unanswered_count: int = Field(
        default=0,
        ge=0,
        description="REST dealer: creates and their retries answered 503 after storing the lead",
    )
    slow_store_ms: int = Field(
        default=0, ge=0, le=60_000, description="SOAP dealer: how late a slow create is stored"
    )
    slow_store_count: int = Field(
        default=0, ge=0, description="SOAP dealer: creates stored slow_store_ms after arriving, then answered"
    )


class CountersOut(BaseModel):
    """Everything counted since the last reset."""

    zoho: ZohoCounters
    vtex: VtexCounters
    dealers: dict[str, DealerCounters]
    events: dict[str, EventCounters]


router = APIRouter(prefix="/_control", tags=["control"])


@router.post("/faults")
async def set_faults(spec: FaultSpec, state: StateDep) -> dict[str, Any]:
    """Inject failures for a target."""
    plan = FaultPlan(
        latency_ms=spec.latency_ms,
        error_5xx_remaining=spec.error_5xx_count,
        rate_limit_remaining=spec.rate_limit_count,
        retry_after_seconds=spec.retry_after_seconds,
        reject=spec.reject,
        answer_without_id_remaining=spec.answer_without_id_count,
        conflict_remaining=spec.conflict_count,
        answer_lost_remaining=spec.answer_lost_count,
        stored_unanswered_remaining=spec.stored_unanswered_count,
        slow_store_ms=spec.slow_store_ms,
        slow_store_remaining=spec.slow_store_count,
    )
    state.faults[spec.target] = plan
    return {"target": spec.target, **asdict(plan)}


class CredentialsSpec(BaseModel):
    """Revoke (or restore) the hub's credentials at a partner, as an admin revoking the app would."""

    target: str = Field(pattern="^(zoho|vtex)$", description='"zoho" or "vtex"')
    revoked: bool


@router.post("/credentials")
async def set_credentials(spec: CredentialsSpec, state: StateDep) -> dict[str, Any]:
    """Zoho then refuses token refreshes (``invalid_client``) and every token; VTEX answers 401."""
    if spec.revoked:
        state.revoked.add(spec.target)
    else:
        state.revoked.discard(spec.target)
    return {"target": spec.target, "revoked": spec.revoked}


@router.get("/faults")
async def list_faults(state: StateDep) -> dict[str, Any]:
    """The failures still pending, by target."""
    return {target: asdict(plan) for target, plan in state.faults.items()}


@router.delete("/faults")
async def clear_faults(state: StateDep) -> dict[str, Any]:
    """Remove every injected failure."""
    state.faults.clear()
    return {"cleared": "all"}


@router.delete("/faults/{target:path}")
async def clear_target_faults(target: str, state: StateDep) -> dict[str, Any]:
    """Remove the failures injected for one target."""
    state.faults.pop(target, None)
    return {"cleared": target}


@router.get("/counters", response_model=CountersOut)
async def counters(state: StateDep) -> CountersOut:
    """Every counter: Zoho, VTEX, each dealer, each event subscriber."""
    return CountersOut(
        zoho=state.zoho.counters,
        vtex=state.vtex.counters,
        dealers={dealer_id: dealer.counters for dealer_id, dealer in state.dealers.items()},
        events={name: subscriber.counters for name, subscriber in state.subscribers.items()},
    )


@router.get("/dealers/{dealer_id}/leads")
async def dealer_leads(dealer_id: str, state: StateDep) -> dict[str, Any]:
    """The leads a dealer stored (REST and SOAP alike) and how often each external id was created."""
    # A lookup must not make the dealer appear in the counters.
    dealer = state.dealers.get(dealer_id) or DealerState()
    return {
        "dealer_id": dealer_id,
        "leads": [asdict(lead) for lead in dealer.leads],
        "creates_by_external_id": dict(dealer.creates_by_external_id),
    }


@router.delete("/dealers/{dealer_id}/idempotency-keys")
async def expire_idempotency_keys(dealer_id: str, state: StateDep) -> dict[str, Any]:
    """Forget the dealer's idempotency keys, as a CRM does once their retention has passed (commonly a
    day): a create under a key it knew is then a new create."""
    dealer = state.dealers.get(dealer_id)
    forgotten = len(dealer.idempotency) if dealer else 0
    if dealer:
        dealer.idempotency.clear()
    return {"dealer_id": dealer_id, "forgotten": forgotten}


class LeadStatusSpec(BaseModel):
    """What the dealer's salesperson did with a lead; with ``callback`` the CRM tells the hub."""

    status: str = Field(pattern="^(accepted|contacted|qualified|lost|sold)$")
    at: str | None = Field(default=None, description="ISO 8601 with its offset; default: now")
    callback: bool = True


@router.post("/dealers/{dealer_id}/leads/{external_id}/status")
async def set_lead_status(
    dealer_id: str, external_id: str, spec: LeadStatusSpec, state: StateDep
) -> dict[str, Any]:
    """Set a lead's status at the dealer and, with ``callback``, report it to the hub's dealer webhook
    as the dealer's CRM would; the answer carries the hub's status code and body."""
    dealer = state.dealers.get(dealer_id)
    # ADF leads are stored under the hub's key (lead-<zoho id>-<dealer>), the others under the Zoho id.
    lead = (
        dealer.find_by_external_id(external_id)
        or dealer.find_by_external_id(f"lead-{external_id}-{dealer_id}")
        if dealer
        else None
    )
    if dealer is None or lead is None:
        raise HTTPException(404, f"dealer {dealer_id} has no lead {external_id}")
    lead.status, lead.status_at = spec.status, spec.at or datetime.now(UTC).isoformat()
    answer: dict[str, Any] = {"dealer_id": dealer_id, "lead": asdict(lead)}
    if spec.callback:
        config = state.config
        response = await state.client().post(
            f"{config.api_url}/webhooks/dealers/{dealer_id}/leads/{external_id}/status",
            json={"status": lead.status, "at": lead.status_at},
            headers={config.dealer_webhook_secret_header: config.dealer_webhook_secret},
            timeout=config.webhook_timeout_seconds,
        )
        dealer.counters.callbacks_sent += 1
        answer["hub"] = {"status_code": response.status_code, "body": response.json()}
    return answer


@router.post("/reset")
async def reset(state: StateDep) -> dict[str, str]:
    """Forget everything: leads, deals, orders, tokens, faults, events, the VTEX hook config, counters."""
    state.reset()
    return {"status": "reset"}
