"""A lead event reaches every subscriber on its own: one that refuses it or is away keeps none of the
others from getting it, a retry sends only to those that neither got nor refused it, and a refusal is
counted for its alert."""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.errors import PERMANENT_FAILURE
from activities.leads import LeadActivities, PublishEventInput
from clients.subscribers import EventPublisher
from clients.zoho import ZohoClient
from core.metrics import REGISTRY
from core.settings import Settings
from db.tokens import DatabaseTokens

SUBSCRIBERS = ["https://refuses.example/hooks", "https://away.example/hooks", "https://takes.example/hooks"]
EVENT = {"id": "5b7c7f0e-0000-4000-8000-000000000001", "type": "LeadStatusAtualizado", "data": {}}


def refusals(origin: str) -> float:
    return REGISTRY.get_sample_value("hub_events_refused_total", {"subscriber": origin}) or 0.0


async def test_each_subscriber_gets_the_event_whatever_the_others_answer() -> None:
    calls: Counter[str] = Counter()

    def subscribers(request: httpx.Request) -> httpx.Response:
        host = request.url.host
        calls[host] += 1
        if host == "refuses.example":
            return httpx.Response(410, json={"error": "gone"})
        if host == "away.example" and calls[host] == 1:
            raise httpx.ConnectError("connection refused", request=request)
        return httpx.Response(200, json={"status": "received"})

    settings = Settings(environment="test")
    sessions: async_sessionmaker[AsyncSession] = async_sessionmaker()  # publishing reads no database
    beats: list[Any] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(subscribers)) as http:
        publisher = EventPublisher(http, settings.event_signing_secret.get_secret_value())
        steps = LeadActivities(sessions, ZohoClient(http, settings, DatabaseTokens(sessions)), {}, publisher,
                               SUBSCRIBERS)  # fmt: skip
        before = refusals("https://refuses.example:443")
        first = ActivityEnvironment()
        first.on_heartbeat = lambda *details: beats.append(details)
        with pytest.raises(ApplicationError) as away:
            await first.run(steps.publish_event, PublishEventInput(event=EVENT))
        assert not away.value.non_retryable  # tried again: a subscriber was away
        assert calls == {"refuses.example": 1, "away.example": 1, "takes.example": 1}

        # The retry carries what the attempt's heartbeats said: only the one away is sent to again.
        retry = ActivityEnvironment()
        retry.info = dataclasses.replace(retry.info, attempt=2, heartbeat_details=list(beats[-1]))
        with pytest.raises(ApplicationError) as refused:
            await retry.run(steps.publish_event, PublishEventInput(event=EVENT))
    assert calls == {"refuses.example": 1, "away.example": 2, "takes.example": 1}
    assert (refused.value.non_retryable, refused.value.type) == (True, PERMANENT_FAILURE)
    assert "refused by https://refuses.example" in str(refused.value)
    assert refusals("https://refuses.example:443") - before == 1
