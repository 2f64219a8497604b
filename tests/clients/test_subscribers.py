"""Events to subscribers: a failed delivery's error names the subscriber without its credentials."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest

from clients.errors import TransientError
from clients.subscribers import EventPublisher


async def test_a_failed_delivery_names_the_subscriber_without_its_token() -> None:
    """Errors reach logs and workflow histories in plain text: a token in the subscriber's URL (its
    query or its user info) must not."""
    url = "https://hook:pa55w0rd@portal.example:8443/events/T0/B1/s3cr3t-path?token=s3cr3t-token"
    async with httpx.AsyncClient(transport=httpx.MockTransport(lambda _: httpx.Response(503))) as http:
        publisher = EventPublisher(http, "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        with pytest.raises(TransientError) as failed:
            await publisher.publish(url, {"id": "e1", "type": "t"}, datetime.now(UTC))
    assert str(failed.value).startswith("subscriber https://portal.example:8443: HTTP 503")
    assert not {"s3cr3t-token", "s3cr3t-path", "pa55w0rd"} & set(str(failed.value).replace("/", " ").split())
