"""VTEX Orders hook: every state change of an order goes to that order's one workflow.

VTEX needs a 200 within 5 seconds, or it retries with growing gaps: answer 200 only once the event is
durable, and 503 otherwise. Authentication is ``api.deps.verified_order_hook``.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel

from api.body import JSON, WEBHOOK_ERRORS
from api.body import request_body as declared_body
from api.deps import IntakeDep, SettingsDep, VerifiedOrderHookDep
from api.openapi import VTEX_SECRET, security
from api.vtex_hook import OrderHook
from contracts.orders import signal_order_event

router = APIRouter(prefix="/webhooks/vtex", tags=["vtex"])


class HookPing(BaseModel):
    """What VTEX sends when the hook configuration is saved; it must get a 200."""

    hookConfig: Literal["ping"]


class HookAnswer(BaseModel):
    status: Literal["accepted", "pong"]
    workflow_id: str | None = None
    order_id: str | None = None


@router.post(
    "/orders",
    response_model=HookAnswer,
    responses=WEBHOOK_ERRORS,
    openapi_extra={**declared_body(HookPing | OrderHook, JSON), **security(VTEX_SECRET)},
)
async def receive_order_hook(
    verified: VerifiedOrderHookDep, settings: SettingsDep, intake: IntakeDep
) -> HookAnswer:
    """Signal (or start and signal) the order's workflow; answers 200 once the change is durable."""
    if verified is None:
        # Saving the hook configuration sends this; VTEX refuses the configuration unless it gets a 200.
        return HookAnswer(status="pong")
    hook, body = verified
    event = hook.event(body)
    workflow_id = await intake.submit(
        lambda client, timeout: signal_order_event(client, settings, event, timeout)
    )
    return HookAnswer(status="accepted", workflow_id=workflow_id, order_id=hook.order_id)
