"""A lead's outcome Zoho refuses for good is counted, for its alert, and parked for support's redrive:
the run only logs it and goes on."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.leads import LeadActivities, UpdateZohoLeadInput
from clients.subscribers import EventPublisher
from clients.zoho import ZohoClient
from core.metrics import REGISTRY
from core.settings import Settings
from core.timeutil import utcnow
from db import zoho_writebacks
from db.tokens import DatabaseTokens

LEAD = "5725767000000123456"


def refused() -> float:
    return REGISTRY.get_sample_value("hub_zoho_writebacks_refused_total", {"flow": "leads"}) or 0.0


@pytest.mark.parametrize(("answer", "counted"), [(400, 1), (503, 0)])
async def test_a_write_back_zoho_refuses_for_good_is_counted_one_it_may_take_later_is_not(
    sessions: async_sessionmaker[AsyncSession], answer: int, counted: int
) -> None:
    def zoho(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/v2/token"):
            return httpx.Response(200, json={"access_token": "1000.t", "expires_in": 3600})
        body = {"data": [{"code": "INVALID_DATA", "status": "error", "message": "invalid picklist value"}]}
        return httpx.Response(answer, json=body)

    settings = Settings(
        environment="test", zoho_api_base_url="http://zoho.example", zoho_accounts_url="http://zoho.example"
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(zoho)) as http:
        zoho_client = ZohoClient(http, settings, DatabaseTokens(sessions))
        steps = LeadActivities(
            sessions,
            zoho_client,
            {},
            EventPublisher(http, settings.event_signing_secret.get_secret_value()),
            [],
        )
        before = refused()
        with pytest.raises(ApplicationError) as failed:
            await ActivityEnvironment().run(
                steps.update_zoho_lead, UpdateZohoLeadInput(lead_id=LEAD, fields={"Lead_Status": "Sold"})
            )
    assert failed.value.non_retryable is (answer == 400)
    assert refused() - before == counted


@asynccontextmanager
async def lead_steps(
    sessions: async_sessionmaker[AsyncSession], refused: set[str], written: list[dict[str, Any]]
) -> AsyncIterator[LeadActivities]:
    """The lead activities against a Zoho whose org refuses the values in ``refused``; the records it
    took go to ``written``."""

    def zoho(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/oauth/v2/token"):
            return httpx.Response(200, json={"access_token": "1000.t", "expires_in": 3600})
        record = json.loads(request.content)["data"][0]
        if refused & {value for value in record.values() if isinstance(value, str)}:
            body = {"data": [{"code": "INVALID_DATA", "status": "error", "message": "invalid data"}]}
            return httpx.Response(400, json=body)
        written.append(record)
        return httpx.Response(200, json={"data": [{"code": "SUCCESS", "status": "success"}]})

    settings = Settings(
        environment="test", zoho_api_base_url="http://zoho.example", zoho_accounts_url="http://zoho.example"
    )
    async with httpx.AsyncClient(transport=httpx.MockTransport(zoho)) as http:
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


async def test_a_value_refused_again_during_a_redrive_stays_parked(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """The redrive wrote what it read; a newer value parked meanwhile is still owed."""
    await zoho_writebacks.park(sessions, LEAD, {"Lead_Status": "Contacted"}, "refused", utcnow())
    await zoho_writebacks.park(sessions, LEAD, {"Lead_Status": "Pre-Qualified"}, "refused", utcnow())
    await zoho_writebacks.written(sessions, LEAD, {"Lead_Status": "Contacted"}, redrive=True)
    parked = await zoho_writebacks.get(sessions, LEAD)
    assert parked is not None and parked.fields == {"Lead_Status": "Pre-Qualified"}
    await zoho_writebacks.written(sessions, LEAD, {"Lead_Status": "Pre-Qualified"}, redrive=True)
    assert await zoho_writebacks.get(sessions, LEAD) is None
