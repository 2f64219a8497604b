"""Making a webhook durable: start its workflow once, or answer 503 so the sender retries."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta
from typing import Any, Literal

from fastapi import HTTPException, status
from temporalio.client import Client, WorkflowHandle
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError

from core.settings import Settings

log = logging.getLogger("api")

StartOutcome = Literal["accepted", "duplicate"]


def unavailable(settings: Settings, reason: str) -> HTTPException:
    """503 with Retry-After: the event was not made durable and must be sent again."""
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"event not accepted, retry later: {reason}",
        headers={"Retry-After": str(settings.temporal_unavailable_retry_after_seconds)},
    )


async def start_once(
    client: Client,
    settings: Settings,
    *,
    workflow: Any,
    arg: Any,
    workflow_id: str,
    task_queue: str,
    search_attributes: Sequence[SearchAttributePair[Any]],
) -> StartOutcome:
    """Start ``workflow`` under ``workflow_id`` unless it runs or ran already.

    The workflow id is the idempotency key: concurrent and later duplicates join the existing execution.
    A failed or terminated execution may be started again, so a resent webhook can repair it.
    """
    try:
        handle: WorkflowHandle[Any, Any] = await client.start_workflow(
            workflow,
            arg,
            id=workflow_id,
            task_queue=task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE_FAILED_ONLY,
            search_attributes=TypedSearchAttributes(list(search_attributes)),
            rpc_timeout=timedelta(seconds=settings.temporal_rpc_timeout_seconds),
        )
    except WorkflowAlreadyStartedError:
        return "duplicate"
    except Exception as error:  # every other failure means: not durable, so never acknowledge
        log.warning("could not start %s: %r", workflow_id, error)
        raise unavailable(settings, "workflow engine unavailable") from error
    # The start response says whether this call started the run or joined a running one; the SDK keeps
    # it on the handle without a public accessor, so read it defensively and default to "accepted".
    response = getattr(handle, "_start_workflow_response", None)
    if response is not None and getattr(response, "started", True) is False:
        return "duplicate"
    log.info("started %s (run %s)", workflow_id, handle.result_run_id)
    return "accepted"


async def signal_with_start(
    client: Client,
    settings: Settings,
    *,
    workflow: Any,
    arg: Any,
    signal: str,
    signal_arg: Any,
    workflow_id: str,
    task_queue: str,
    search_attributes: Sequence[SearchAttributePair[Any]],
) -> None:
    """Deliver ``signal_arg`` to the workflow ``workflow_id``, starting it if it is not running.

    Returns once the signal is in the workflow's history: the event is durable.
    """
    try:
        await client.start_workflow(
            workflow,
            arg,
            id=workflow_id,
            task_queue=task_queue,
            start_signal=signal,
            start_signal_args=[signal_arg],
            search_attributes=TypedSearchAttributes(list(search_attributes)),
            rpc_timeout=timedelta(seconds=settings.temporal_rpc_timeout_seconds),
        )
    except Exception as error:  # not durable: never acknowledge
        log.warning("could not signal %s: %r", workflow_id, error)
        raise unavailable(settings, "workflow engine unavailable") from error
