"""A lead's outcome Zoho refuses for good is counted, for its alert: the run only logs it and goes on."""

from __future__ import annotations

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
