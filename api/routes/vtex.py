"""VTEX Orders hook: every state change of an order goes to that order's one workflow.

VTEX does not sign hooks. It sends the static headers configured with the hook (our shared secret) and
names the store in ``Origin.Account``; both are checked. VTEX needs a 200 within 5 seconds, or it
retries with growing gaps: answer 200 only once the event is durable, and 503 otherwise.
"""

from __future__ import annotations

import hmac
import json
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Request, status
from pydantic import BaseModel, ValidationError
from temporalio.common import SearchAttributePair

from api.body import read_limited
from api.deps import SettingsDep, TemporalClientDep, check_secret
from api.routes.zoho import validation_message
from api.temporal import signal_with_start
from core.constants import ORDER_ID, vtex_order_workflow_id
from core.settings import Settings
from core.vtex import OrderHook
from workflows.vtex_order import ORDER_CHANGED, VtexOrderInput, VtexOrderWorkflow

router = APIRouter(prefix="/webhooks/vtex", tags=["vtex"])

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or wrong secret header, or a hook of another VTEX account"},
    413: {"description": "body over the size limit"},
    422: {"description": "not a JSON object, or not an Orders hook (field named)"},
    503: {"description": "not made durable; VTEX retries"},
}


class HookAnswer(BaseModel):
    status: Literal["accepted", "pong"]
    workflow_id: str | None = None
    order_id: str | None = None


@router.post("/orders", response_model=HookAnswer, responses=ERRORS)
async def receive_order_hook(
    request: Request, settings: SettingsDep, temporal: TemporalClientDep
) -> HookAnswer:
    """Signal (or start and signal) the order's workflow; answers 200 once the change is durable."""
    body = _json_object(await read_limited(request, settings.webhook_max_body_bytes))
    if body.get("hookConfig") == "ping":
        # Saving the hook configuration sends this; VTEX refuses the configuration unless it gets a 200.
        return HookAnswer(status="pong")
    header = settings.vtex_hook_secret_header
    check_secret(settings.vtex_hook_secret.get_secret_value(), request.headers.get(header), header)
    try:
        hook = OrderHook.model_validate(body)
    except ValidationError as error:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, validation_message(error)) from error
    _check_origin(hook, settings)
    workflow_id = vtex_order_workflow_id(hook.order_id)
    await signal_with_start(
        temporal,
        settings,
        workflow=VtexOrderWorkflow.run,
        arg=VtexOrderInput.for_order(settings, hook.order_id),
        signal=ORDER_CHANGED,
        signal_arg=hook.event(body),
        workflow_id=workflow_id,
        task_queue=settings.vtex_orders_task_queue,
        search_attributes=[SearchAttributePair(ORDER_ID, hook.order_id)],
    )
    return HookAnswer(status="accepted", workflow_id=workflow_id, order_id=hook.order_id)


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"body is not valid JSON: {error}"
        ) from error
    if not isinstance(data, dict):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "body must be a JSON object")
    return data


def _check_origin(hook: OrderHook, settings: Settings) -> None:
    if not hmac.compare_digest(hook.origin.account.encode(), settings.vtex_account.encode()):
        raise HTTPException(
            status.HTTP_401_UNAUTHORIZED, f"Origin.Account {hook.origin.account!r} is not ours"
        )
    expected_key = settings.vtex_hook_origin_key
    if expected_key and not hmac.compare_digest((hook.origin.key or "").encode(), expected_key.encode()):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "Origin.Key is not the expected app key")
