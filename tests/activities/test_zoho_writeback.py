"""A lead's outcome Zoho refuses for good is counted, for its alert, and parked for support's redrive:
the run only logs it and goes on."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.common import RetryPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.leads import LeadActivities, UpdateZohoLeadInput
from clients.subscribers import EventPublisher
from clients.zoho import ZohoClient
from contracts.leads import WRITEBACK_DROPPED
from core.background import in_background
from core.metrics import REGISTRY
from core.settings import Settings
from core.timeutil import utcnow
from db import refused_events, zoho_writebacks
from db.tokens import DatabaseTokens
from tests.support import eventually
from workers.flows import count_parked

LEAD = "5725767000000123456"


def refused() -> float:
    return REGISTRY.get_sample_value("hub_zoho_writebacks_refused_total", {"flow": "leads"}) or 0.0


def dropped() -> float:
    return REGISTRY.get_sample_value("hub_zoho_writebacks_dropped_total", {"flow": "leads"}) or 0.0


@pytest.mark.parametrize(("answer", "counted"), [(400, 1), (503, 0)])
async def test_a_write_back_zoho_refuses_for_good_is_counted_one_it_may_take_later_is_not(
    sessions: async_sessionmaker[AsyncSession], answer: int, counted: int
) -> None:
    def zoho(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/v2/token"):
            return httpx.Response(200, json={"access_token": "1000.t", "expires_in": 3600})
        if request.method == "GET":  # the lead, which Zoho still has
            return httpx.Response(200, json={"data": [{"id": LEAD}]})
        body = {"data": [{"code": "INVALID_DATA", "status": "error", "message": "invalid picklist value"}]}
        return httpx.Response(answer, json=body)

    async with zoho_steps(sessions, httpx.MockTransport(zoho)) as steps:
        before = refused()
        with pytest.raises(ApplicationError) as failed:
            await attempt(timedelta(hours=6)).run(
                steps.update_zoho_lead, UpdateZohoLeadInput(lead_id=LEAD, fields={"Lead_Status": "Sold"})
            )
    assert failed.value.non_retryable is (answer == 400)
    assert refused() - before == counted
    assert (await zoho_writebacks.get(sessions, LEAD) is not None) is bool(counted)


def attempt(left: timedelta) -> ActivityEnvironment:
    """An attempt of a step retried for 6 hours (backoff up to 5 minutes), ``left`` before its end."""
    environment = ActivityEnvironment()
    window = timedelta(hours=6)
    environment.info = dataclasses.replace(
        environment.info,
        schedule_to_close_timeout=window,
        start_to_close_timeout=timedelta(seconds=30),
        scheduled_time=utcnow() - window + left,
        retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=5)),
    )
    return environment


@asynccontextmanager
async def lead_steps(
    sessions: async_sessionmaker[AsyncSession], refused: set[str], written: list[dict[str, Any]]
) -> AsyncIterator[LeadActivities]:
    """The lead activities against a Zoho whose org refuses the values in ``refused``; the records it
    took go to ``written``."""

    def zoho(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/v2/token"):
            return httpx.Response(200, json={"access_token": "1000.t", "expires_in": 3600})
        if request.method == "GET":  # the lead, which Zoho still has
            return httpx.Response(200, json={"data": [{"id": LEAD}]})
        record = json.loads(request.content)["data"][0]
        if refused & {value for value in record.values() if isinstance(value, str)}:
            body = {"data": [{"code": "INVALID_DATA", "status": "error", "message": "invalid data"}]}
            return httpx.Response(400, json=body)
        written.append(record)
        return httpx.Response(200, json={"data": [{"code": "SUCCESS", "status": "success"}]})

    async with zoho_steps(sessions, httpx.MockTransport(zoho)) as steps:
        yield steps


@asynccontextmanager
async def zoho_steps(
    sessions: async_sessionmaker[AsyncSession], zoho: httpx.MockTransport
) -> AsyncIterator[LeadActivities]:
    """The lead activities against ``zoho``."""
    settings = Settings(
        environment="test", zoho_api_base_url="http://zoho.example", zoho_accounts_url="http://zoho.example"
    )
    async with httpx.AsyncClient(transport=zoho) as http:
        zoho_client = ZohoClient(http, settings, DatabaseTokens(sessions))
        publisher = EventPublisher(http, settings.event_signing_secret.get_secret_value())
        yield LeadActivities(sessions, zoho_client, {}, publisher, [])


async def update(steps: LeadActivities, fields: dict[str, Any]) -> bool:
    """Whether Zoho took the write-back."""
    try:
        await ActivityEnvironment().run(
            steps.update_zoho_lead, UpdateZohoLeadInput(lead_id=LEAD, fields=fields)
        )
    except ApplicationError:
        return False
    return True


async def test_refused_fields_wait_for_the_redrive_and_a_later_write_takes_what_it_wrote_off(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    refused: set[str] = {"delivered", "Contacted"}
    written: list[dict[str, Any]] = []
    async with lead_steps(sessions, refused, written) as steps:
        assert not await update(steps, {"Status_Distribuicao": "delivered", "Concessionaria_Id": "d1"})
        assert not await update(steps, {"Lead_Status": "Contacted"})
        parked = await zoho_writebacks.get(sessions, LEAD)
        assert parked is not None and "INVALID_DATA" in parked.reason
        assert parked.fields == {
            "Status_Distribuicao": "delivered",
            "Concessionaria_Id": "d1",
            "Lead_Status": "Contacted",
        }

        # A newer status Zoho takes: the refused older one must not be written over it by a redrive.
        assert await update(steps, {"Lead_Status": "Pre-Qualified"})
        parked = await zoho_writebacks.get(sessions, LEAD)
        assert parked is not None and "Lead_Status" not in parked.fields

        environment = ActivityEnvironment()
        assert (await environment.run(steps.redrive_zoho_writeback, LEAD)).startswith("refused again")
        parked = await zoho_writebacks.get(sessions, LEAD)
        assert parked is not None and parked.redrives == 1

        refused.clear()  # the admin put the value back
        assert await environment.run(steps.redrive_zoho_writeback, LEAD) == "written"
        assert written[-1] == {"id": LEAD, "Status_Distribuicao": "delivered", "Concessionaria_Id": "d1"}
        assert await zoho_writebacks.get(sessions, LEAD) is None
        assert await environment.run(steps.redrive_zoho_writeback, LEAD) == "nothing parked"


async def test_a_newer_write_waits_for_a_redrive_in_flight_so_zoho_keeps_the_newer_value(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The redrive's write of the older parked value is slow on the wire; the dealer's newer status goes
    to Zoho meanwhile: it waits for the redrive, so Zoho ends with the newer value, and nothing is owed."""
    zoho_values: dict[str, Any] = {}
    redrive_sent = asyncio.Event()

    async def zoho(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/v2/token"):
            return httpx.Response(200, json={"access_token": "1000.t", "expires_in": 3600})
        record = json.loads(request.content)["data"][0]
        if record.get("Lead_Status") == "Contacted":  # the redrive's
            redrive_sent.set()
            await asyncio.sleep(0.5)
        zoho_values.update(record)
        return httpx.Response(200, json={"data": [{"code": "SUCCESS", "status": "success"}]})

    await zoho_writebacks.park(sessions, LEAD, {"Lead_Status": "Contacted"}, "refused", utcnow())
    async with zoho_steps(sessions, httpx.MockTransport(zoho)) as steps:
        redrive = asyncio.create_task(ActivityEnvironment().run(steps.redrive_zoho_writeback, LEAD))
        await redrive_sent.wait()
        assert await update(steps, {"Lead_Status": "Pre-Qualified"})
        assert await redrive == "written"
    assert zoho_values["Lead_Status"] == "Pre-Qualified"
    assert await zoho_writebacks.get(sessions, LEAD) is None


@pytest.mark.parametrize("parked_before", [False, True])
async def test_a_write_back_to_a_lead_zoho_no_longer_has_is_not_parked_and_a_redrive_drops_it(
    sessions: async_sessionmaker[AsyncSession], parked_before: bool
) -> None:
    """The lead was deleted in Zoho (or converted): Zoho refuses every write to it and answers its read
    with 204. The write-back is not parked (no redrive could place it) nor counted for the alert, and a
    redrive of fields parked before drops them."""

    def zoho(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/v2/token"):
            return httpx.Response(200, json={"access_token": "1000.t", "expires_in": 3600})
        if request.method == "GET":
            return httpx.Response(204)
        item = {
            "code": "INVALID_DATA",
            "details": {"id": LEAD},
            "message": "the id given seems to be invalid",
        }
        return httpx.Response(400, json={"data": [{**item, "status": "error"}]})

    if parked_before:
        await zoho_writebacks.park(sessions, LEAD, {"Status_Distribuicao": "delivered"}, "refused", utcnow())
    async with zoho_steps(sessions, httpx.MockTransport(zoho)) as steps:
        before, dropped_before = refused(), dropped()
        assert await update(steps, {"Lead_Status": "Contacted"})
        assert (refused() - before, dropped() - dropped_before) == (0, 1)
        assert await zoho_writebacks.get(sessions, LEAD) is None  # and what was parked before goes too
        await zoho_writebacks.park(sessions, LEAD, {"Lead_Status": "Sold"}, "refused", utcnow())
        assert await ActivityEnvironment().run(steps.redrive_zoho_writeback, LEAD) == WRITEBACK_DROPPED
    assert await zoho_writebacks.get(sessions, LEAD) is None


@pytest.mark.parametrize("read_answer", [401, 503, None])  # None: the connection fails
async def test_a_refusal_whose_lead_could_not_be_read_is_parked_as_refused(
    sessions: async_sessionmaker[AsyncSession], read_answer: int | None
) -> None:
    """Zoho refuses the write, then its read of the lead fails (for good, for now, or on the network):
    that tells nothing of the lead, so the refusal is parked and counted as any other, with Zoho's
    refusal as the reason."""

    def zoho(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/v2/token"):
            return httpx.Response(200, json={"access_token": "1000.t", "expires_in": 3600})
        if request.method == "GET" and read_answer is None:
            raise httpx.ConnectError("connection refused", request=request)
        if request.method == "GET":
            return httpx.Response(read_answer, json={"code": "INVALID_TOKEN"})
        body = {"data": [{"code": "INVALID_DATA", "status": "error", "message": "invalid picklist value"}]}
        return httpx.Response(400, json=body)

    async with zoho_steps(sessions, httpx.MockTransport(zoho)) as steps:
        before, dropped_before = refused(), dropped()
        with pytest.raises(ApplicationError) as failed:
            await attempt(timedelta(hours=6)).run(
                steps.update_zoho_lead, UpdateZohoLeadInput(lead_id=LEAD, fields={"Lead_Status": "Sold"})
            )
    assert failed.value.non_retryable
    assert (refused() - before, dropped() - dropped_before) == (1, 0)
    parked = await zoho_writebacks.get(sessions, LEAD)
    assert parked is not None and "INVALID_DATA" in parked.reason


@pytest.mark.parametrize(
    ("left", "retry_after", "parked"),
    [
        (timedelta(hours=5), None, False),
        (timedelta(minutes=3), None, True),
        (timedelta(minutes=30), None, False),
        (timedelta(minutes=30), "3600", True),  # Temporal waits the hour Zoho asked for: past the window
    ],
)
async def test_a_write_back_zoho_keeps_failing_is_parked_on_its_last_chance(
    sessions: async_sessionmaker[AsyncSession], left: timedelta, retry_after: str | None, parked: bool
) -> None:
    """Zoho away (or out of API credits) for the step's whole retry window: its last attempt parks the
    fields, where an earlier one leaves them to the next attempt."""

    def zoho(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/v2/token"):
            return httpx.Response(200, json={"access_token": "1000.t", "expires_in": 3600})
        headers = {"Retry-After": retry_after} if retry_after else {}
        return httpx.Response(429, json={"code": "TOO_MANY_REQUESTS"}, headers=headers)

    async with zoho_steps(sessions, httpx.MockTransport(zoho)) as steps:
        with pytest.raises(ApplicationError) as failed:
            await attempt(left).run(
                steps.update_zoho_lead, UpdateZohoLeadInput(lead_id=LEAD, fields={"Lead_Status": "Sold"})
            )
    assert not failed.value.non_retryable  # Temporal's retries (if any are left) go on
    held = await zoho_writebacks.get(sessions, LEAD)
    assert (held is not None) is parked
    if held is not None:
        assert held.fields == {"Lead_Status": "Sold"} and "429" in held.reason


@pytest.mark.parametrize(
    ("left", "older", "reason"),
    [
        (timedelta(minutes=3), "Contacted", "refused"),  # that refusal's reason stands
        (timedelta(minutes=3), None, "no answer from Zoho within the write-back's retry window"),
        (timedelta(minutes=30), None, None),
    ],
)
async def test_a_last_attempt_that_times_out_leaves_its_fields_parked_over_older_ones(
    sessions: async_sessionmaker[AsyncSession], left: timedelta, older: str | None, reason: str | None
) -> None:
    """Zoho does not answer the step's last attempt, which Temporal then times out: no retry follows,
    so the fields wait parked for the redrive, newer than the value parked before. An earlier attempt
    leaves them to the next."""
    asked = asyncio.Event()

    async def zoho(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/v2/token"):
            return httpx.Response(200, json={"access_token": "1000.t", "expires_in": 3600})
        asked.set()
        await asyncio.Event().wait()  # no answer
        raise AssertionError("unreachable")

    if older:
        await zoho_writebacks.park(sessions, LEAD, {"Lead_Status": older}, "refused", utcnow())
    async with zoho_steps(sessions, httpx.MockTransport(zoho)) as steps:
        write = UpdateZohoLeadInput(lead_id=LEAD, fields={"Lead_Status": "Sold"})
        running = asyncio.create_task(attempt(left).run(steps.update_zoho_lead, write))
        await asyncio.wait_for(asked.wait(), timeout=10)
        running.cancel()  # the attempt's time-out
        with pytest.raises(asyncio.CancelledError):
            await running
    held = await zoho_writebacks.get(sessions, LEAD)
    if reason is None:
        assert held is None
        return
    assert held is not None and held.fields == {"Lead_Status": "Sold"}
    assert held.reason == reason


async def test_a_last_attempt_zoho_answers_leaves_nothing_parked(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    written: list[dict[str, Any]] = []
    async with lead_steps(sessions, set(), written) as steps:
        write = UpdateZohoLeadInput(lead_id=LEAD, fields={"Lead_Status": "Sold"})
        await attempt(timedelta(minutes=3)).run(steps.update_zoho_lead, write)
    assert written and written[-1]["Lead_Status"] == "Sold"
    assert await zoho_writebacks.get(sessions, LEAD) is None


async def test_the_flows_worker_counts_the_parked_write_backs_and_events_for_their_alerts(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    def parked(writebacks: int, events: int) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            counted = (
                REGISTRY.get_sample_value("hub_zoho_writebacks_parked"),
                REGISTRY.get_sample_value("hub_events_parked"),
            )
            return counted == (writebacks, events)

        return check

    await zoho_writebacks.park(sessions, LEAD, {"Lead_Status": "Contacted"}, "refused", utcnow())
    await zoho_writebacks.park(sessions, "5725767000000123457", {"Lead_Status": "Sold"}, "refused", utcnow())
    event = {"id": "5b7c7f0e-0000-4000-8000-000000000002", "type": "LeadStatusAtualizado", "subject": LEAD}
    await refused_events.park(sessions, event, "https://portal.example/hooks", "refused", utcnow())
    async with in_background(count_parked(sessions, 0.05)):
        await eventually(parked(2, 1), timeout=5)
        assert await zoho_writebacks.discard(sessions, LEAD) == {"Lead_Status": "Contacted"}
        assert await refused_events.discard(sessions, event["id"]) == ["https://portal.example:443"]
        await eventually(parked(1, 0), timeout=5)


async def test_a_redrive_refused_after_its_lead_was_discarded_leaves_nothing_parked(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Another process discarded the row while a redrive wrote (SQLite holds the lead only within a
    process): the redrive refused again finds no row, and parks no empty one."""
    held = zoho_writebacks.Held({"Lead_Status": "Contacted"})
    held.refused({}, "refused again", utcnow(), redrive=True)
    async with sessions.begin() as session:
        await held.apply(session, LEAD, None)
    assert await zoho_writebacks.get(sessions, LEAD) is None
    assert await zoho_writebacks.count(sessions) == 0
