"""Making a webhook's event durable in Temporal within the sender's patience, or answering 503.

Senders give a webhook a few seconds (VTEX 5 s) and retry what was not acknowledged. So the API waits
for Temporal at most ``webhook_ack_timeout_seconds`` in all (connecting and the SDK's own retries
included), and sheds a burst beyond ``webhook_max_in_flight`` calls with an immediate 503 instead of
queueing it until every sender times out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TypeVar

from fastapi import HTTPException, status
from temporalio.client import Client
from temporalio.service import RetryConfig

from api.metrics import IN_FLIGHT
from core.settings import Settings
from core.temporal import connect, temporal_unavailable

log = logging.getLogger("api")

T = TypeVar("T")


def unavailable(settings: Settings, reason: str) -> HTTPException:
    """503 with Retry-After: the event was not made durable and must be sent again."""
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        f"event not accepted, retry later: {reason}",
        headers={"Retry-After": str(settings.temporal_unavailable_retry_after_seconds)},
    )


async def connect_for_api(settings: Settings) -> Client:
    """A lazy client: the API starts (and answers 503) while Temporal is down, and connects once it is up.

    The SDK's own retries stop within the acknowledgement budget, so a call given up on does not keep
    retrying in the background.
    """
    budget_ms = int(settings.webhook_ack_timeout_seconds * 1000)
    return await connect(
        settings, lazy=True, retry_config=RetryConfig(max_elapsed_time_millis=budget_ms, max_retries=5)
    )


class Intake:
    """Hands webhook events to Temporal, one bounded call each."""

    def __init__(self, client: Client, settings: Settings) -> None:
        self.client = client
        self._settings = settings
        self._in_flight = 0

    async def submit(self, call: Callable[[Client, timedelta], Awaitable[T]]) -> T:
        """Await ``call(client, rpc_timeout)``, the one Temporal call that makes an event durable.

        When it returns, the event is durable and the webhook may be acknowledged. Otherwise raises 503
        with Retry-After: at once when this process already has ``webhook_max_in_flight`` calls under
        way, or when Temporal was unreachable or did not answer within ``webhook_ack_timeout_seconds``.
        A call cut off by the deadline may still reach Temporal; the sender's retry then meets the same
        workflow id or event key, so nothing happens twice. Any other failure is a bug in the hub: 500,
        with its stack in the log, so it is not mistaken for an outage (and retried forever unseen).
        """
        settings = self._settings
        if self._in_flight >= settings.webhook_max_in_flight:
            raise unavailable(settings, "too many webhooks in flight")
        budget = settings.webhook_ack_timeout_seconds
        self._in_flight += 1
        IN_FLIGHT.inc()
        try:
            async with asyncio.timeout(budget):
                return await call(self.client, timedelta(seconds=budget))
        except Exception as error:  # not durable: never acknowledge
            if not temporal_unavailable(error):
                log.exception("event not made durable: a bug in the hub")
                raise HTTPException(
                    status.HTTP_500_INTERNAL_SERVER_ERROR, "event not accepted: internal error"
                ) from error
            log.warning("event not made durable: %s", type(error).__name__)
            raise unavailable(settings, "workflow engine unavailable") from error
        finally:
            self._in_flight -= 1
            IN_FLIGHT.dec()
