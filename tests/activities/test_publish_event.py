"""A lead event reaches every subscriber on its own: one that refuses it or is away keeps none of the
others from getting it, a retry sends only to those that neither got nor refused it, and a refusal is
counted for its alert and parked for support's redrive, as is an event a subscriber did not take within
its retry window."""

from __future__ import annotations

import asyncio
import dataclasses
from collections import Counter
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.errors import PERMANENT_FAILURE
from activities.leads import WINDOW_PASSED, LeadActivities, PublishEventInput
from clients.subscribers import EventPublisher
from clients.zoho import ZohoClient
from core.metrics import REGISTRY
from core.settings import Settings
from core.timeutil import utcnow
from db import refused_events
from db.tokens import DatabaseTokens

SUBSCRIBERS = ["https://refuses.example/hooks", "https://away.example/hooks", "https://takes.example/hooks"]
EVENT = {"id": "5b7c7f0e-0000-4000-8000-000000000001", "type": "LeadStatusAtualizado", "data": {}}


def refusals(origin: str) -> float:
    return REGISTRY.get_sample_value("hub_events_refused_total", {"subscriber": origin}) or 0.0


async def test_each_subscriber_gets_the_event_whatever_the_others_answer(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
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
    [parked] = await refused_events.of_event(sessions, EVENT["id"])  # for the one that refused only
    assert (parked.subscriber, parked.event, parked.redrives) == ("https://refuses.example:443", EVENT, 0)
    assert parked.reason.startswith("subscriber https://refuses.example:443: ") and "410" in parked.reason


async def test_a_subscriber_that_never_answers_keeps_no_other_waiting(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The first subscriber's host takes the connection and never answers: each attempt waited out its
    HTTP timeouts before the next subscriber, and three such (or one with a timeout as long as the
    attempt's 30 s) cut every attempt before the healthy one got the event. They are sent to at once."""
    answered, taken = asyncio.Event(), asyncio.Event()

    async def subscribers(request: httpx.Request) -> httpx.Response:
        if request.url.host == "silent.example":
            await answered.wait()  # still waiting when the other one takes the event
            raise httpx.ReadTimeout("no answer", request=request)
        taken.set()
        return httpx.Response(200, json={"status": "received"})

    settings = Settings(environment="test")
    urls = ["https://silent.example/hooks", "https://takes.example/hooks"]
    async with httpx.AsyncClient(transport=httpx.MockTransport(subscribers)) as http:
        publisher = EventPublisher(http, settings.event_signing_secret.get_secret_value())
        steps = LeadActivities(sessions, ZohoClient(http, settings, DatabaseTokens(sessions)), {}, publisher,
                               urls)  # fmt: skip
        publishing = asyncio.create_task(
            ActivityEnvironment().run(steps.publish_event, PublishEventInput(EVENT))
        )
        await asyncio.wait_for(taken.wait(), 5)
        assert not publishing.done()  # the silent one is still being waited for
        answered.set()
        with pytest.raises(ApplicationError) as away:
            await publishing
    assert not away.value.non_retryable and "silent.example" in str(away.value)


async def test_a_subscriber_that_answers_a_copy_with_409_has_the_event(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """A receiver that drops a copy by its webhook-id may say so with 409 Conflict (the first answer
    was lost, or support redrove the event): delivered, not parked as a refusal for support."""
    subscribers = Subscribers()
    subscribers.answers["takes.example"] = 409
    async with httpx.AsyncClient(transport=httpx.MockTransport(subscribers)) as http:
        steps = subscribers.steps(http, sessions, ["https://takes.example/hooks"])
        result = await ActivityEnvironment().run(steps.publish_event, PublishEventInput(event=EVENT))
    assert result.delivered_to == ["https://takes.example/hooks"]
    assert await refused_events.of_event(sessions, EVENT["id"]) == []


class Subscribers:
    """Subscribers at ``SUBSCRIBERS``' hosts, answering as ``answers`` says (200 where it says nothing;
    a 503 with ``retry_after`` seconds where that is set)."""

    def __init__(self) -> None:
        self.answers: dict[str, int] = {}
        self.retry_after: int | None = None
        self.calls: Counter[str] = Counter()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        host = request.url.host
        self.calls[host] += 1
        status = self.answers.get(host, 200)
        headers = {"Retry-After": str(self.retry_after)} if status == 503 and self.retry_after else {}
        body = {"status": "received" if status == 200 else "error"}
        return httpx.Response(status, json=body, headers=headers)

    def steps(
        self, http: httpx.AsyncClient, sessions: async_sessionmaker[AsyncSession], subscribers: list[str]
    ) -> LeadActivities:
        settings = Settings(environment="test")
        publisher = EventPublisher(http, settings.event_signing_secret.get_secret_value())
        zoho = ZohoClient(http, settings, DatabaseTokens(sessions))
        return LeadActivities(sessions, zoho, {}, publisher, subscribers)


def attempt(left: timedelta, number: int = 1) -> ActivityEnvironment:
    """An attempt of the lead flow's publish step (retried for 24 hours, backoff up to 10 minutes),
    ``left`` before its window ends."""
    environment = ActivityEnvironment()
    window = timedelta(hours=24)
    environment.info = dataclasses.replace(
        environment.info,
        attempt=number,
        schedule_to_close_timeout=window,
        start_to_close_timeout=timedelta(seconds=30),
        scheduled_time=utcnow() - window + left,
        retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=10)),
    )
    return environment


def local_try() -> ActivityEnvironment:
    """The workflow's first try, in a local activity: no heartbeat, no retry window of its own."""
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(environment.info, is_local=True)
    return environment


async def test_an_event_a_subscriber_did_not_take_all_window_long_waits_for_the_redrive(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Away all along: the last attempt the window allows parks the event for that subscriber before it
    tries (should it time out, the event still waits), and a subscriber that takes it then is taken off."""
    fake = Subscribers()
    fake.answers = {"away.example": 503, "takes.example": 503}
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        steps = fake.steps(http, sessions, SUBSCRIBERS[1:])
        with pytest.raises(ApplicationError):
            await attempt(timedelta(hours=2), 5).run(steps.publish_event, PublishEventInput(event=EVENT))
        assert await refused_events.count(sessions) == 0  # hours left: retried, not parked

        before = refusals("https://away.example:443")
        fake.answers = {"away.example": 503}
        with pytest.raises(ApplicationError) as last:
            await attempt(timedelta(minutes=5), number=90).run(
                steps.publish_event, PublishEventInput(event=EVENT)
            )
    assert not last.value.non_retryable  # the window ends it: nothing more is owed to the run
    [parked] = await refused_events.of_event(sessions, EVENT["id"])
    assert (parked.subscriber, parked.reason) == ("https://away.example:443", WINDOW_PASSED)
    assert refusals("https://away.example:443") - before == 1  # HubEventsRefused sees it


async def test_a_retry_after_past_the_window_parks_the_event_the_retry_would_have_sent(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """An hour left, and the subscriber asks for two: Temporal will not retry past the window, so this
    attempt parks the event for it."""
    fake = Subscribers()
    fake.answers, fake.retry_after = {"away.example": 503}, 7200
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        steps = fake.steps(http, sessions, SUBSCRIBERS[1:])
        with pytest.raises(ApplicationError) as away:
            await attempt(timedelta(hours=1), 40).run(steps.publish_event, PublishEventInput(event=EVENT))
    assert away.value.next_retry_delay == timedelta(hours=2)
    [parked] = await refused_events.of_event(sessions, EVENT["id"])
    assert parked.subscriber == "https://away.example:443" and parked.reason.endswith(", all along")


async def test_a_refusal_in_the_local_try_is_counted_once_and_taken_off_once_the_subscriber_takes_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The local try finds one subscriber refusing and another away: the activity after it sends to
    both again (a local try keeps no heartbeat). A second refusal is not counted again; a subscriber
    that takes the event then leaves nothing parked."""
    fake = Subscribers()
    fake.answers = {"refuses.example": 422, "away.example": 503}
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        steps = fake.steps(http, sessions, SUBSCRIBERS[:2])
        before = refusals("https://refuses.example:443")
        with pytest.raises(ApplicationError):
            await local_try().run(steps.publish_event, PublishEventInput(event=EVENT))
        with pytest.raises(ApplicationError):
            await attempt(timedelta(hours=24)).run(steps.publish_event, PublishEventInput(event=EVENT))
        assert refusals("https://refuses.example:443") - before == 1
        assert [each.subscriber for each in await refused_events.of_event(sessions, EVENT["id"])] == [
            "https://refuses.example:443"
        ]
        fake.answers = {}  # a later run of the lead sends the event again, under the same id
        await local_try().run(steps.publish_event, PublishEventInput(event=EVENT))
    assert await refused_events.count(sessions) == 0


async def test_a_redrive_sends_the_parked_event_to_whom_it_is_parked_for_until_each_takes_it(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    fake = Subscribers()
    at = utcnow()
    await refused_events.park(sessions, EVENT, SUBSCRIBERS[0], "subscriber refuses: 410", at)
    await refused_events.park(sessions, EVENT, SUBSCRIBERS[1], "no answer within its retry window", at)
    beats: list[Any] = []
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        steps = fake.steps(http, sessions, SUBSCRIBERS)
        fake.answers = {"refuses.example": 410, "away.example": 503}
        first = ActivityEnvironment()
        first.on_heartbeat = lambda *details: beats.append(details)
        with pytest.raises(ApplicationError) as away:
            await first.run(steps.redrive_event, EVENT["id"])
        assert not away.value.non_retryable  # the workflow's retry sends again, the Web UI shows it

        # Its retry asks only the one away: the one that refused in this redrive is not asked again.
        fake.answers = {"refuses.example": 410}
        retry = ActivityEnvironment()
        retry.info = dataclasses.replace(retry.info, attempt=2, heartbeat_details=list(beats[-1]))
        outcome = await retry.run(steps.redrive_event, EVENT["id"])
        assert outcome.startswith("refused again: https://refuses.example:443: ") and "410" in outcome
        [left] = await refused_events.of_event(sessions, EVENT["id"])
        assert (left.subscriber, left.redrives) == ("https://refuses.example:443", 1)
        assert fake.calls == {"refuses.example": 1, "away.example": 2}

        fake.answers = {}  # support's next redrive, once the cause is fixed
        assert await ActivityEnvironment().run(steps.redrive_event, EVENT["id"]) == "delivered"
        assert await ActivityEnvironment().run(steps.redrive_event, EVENT["id"]) == "nothing parked"
    assert fake.calls == {"refuses.example": 2, "away.example": 2}  # never one that took it
    assert await refused_events.count(sessions) == 0


async def test_a_parked_event_goes_to_its_subscribers_new_url_on_the_same_origin(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The subscriber's endpoint moved (or the token in its URL was rotated): the usual fix of a
    refusal. The redrive sends to the one configured URL of the same origin."""
    fake = Subscribers()
    seen: list[str] = []

    def subscriber(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        return fake(request)

    await refused_events.park(
        sessions, EVENT, "https://takes.example/old-hooks?token=1", "HTTP 410", utcnow()
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(subscriber)) as http:
        steps = fake.steps(http, sessions, SUBSCRIBERS)
        assert await ActivityEnvironment().run(steps.redrive_event, EVENT["id"]) == "delivered"
    assert seen == ["https://takes.example/hooks"]
    assert await refused_events.count(sessions) == 0


async def test_an_event_parked_for_a_subscriber_no_longer_configured_stays_for_support_to_discard(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    fake = Subscribers()
    await refused_events.park(sessions, EVENT, "https://old.example/hooks?token=s3cr3t", "gone", utcnow())
    async with httpx.AsyncClient(transport=httpx.MockTransport(fake)) as http:
        steps = fake.steps(http, sessions, SUBSCRIBERS)
        outcome = await ActivityEnvironment().run(steps.redrive_event, EVENT["id"])
    assert outcome == "refused again: https://old.example:443: no longer a configured subscriber"
    assert not fake.calls
    [parked] = await refused_events.of_event(sessions, EVENT["id"])
    assert "s3cr3t" not in repr(parked)  # the URL's token is kept in settings only
    assert await refused_events.discard(sessions, EVENT["id"]) == ["https://old.example:443"]
    assert await refused_events.count(sessions) == 0


async def test_parked_events_are_listed_and_counted_by_event_not_by_subscriber(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    at = utcnow()
    second = {**EVENT, "id": "5b7c7f0e-0000-4000-8000-000000000009"}
    for url in SUBSCRIBERS:
        await refused_events.park(sessions, EVENT, url, "HTTP 410", at)
    await refused_events.park(sessions, second, SUBSCRIBERS[0], "HTTP 410", at + timedelta(seconds=1))
    rows, total = await refused_events.parked(sessions, 1)
    assert total == 2 and {row.event_id for row in rows} == {EVENT["id"]} and len(rows) == 3
    rows, _ = await refused_events.parked(sessions, 2)
    assert [row.event_id for row in rows] == [EVENT["id"]] * 3 + [second["id"]]
