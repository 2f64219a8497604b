"""The API's /metrics: open locally, behind a bearer token once one is set (production requires one)."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from api.app import create_app
from core.settings import ApiSettings, Settings
from tests.support import PRODUCTION_SETTINGS

TOKEN = "mt-3c9d-scraper"


async def scrape(settings: Settings, headers: dict[str, str] | None = None) -> httpx.Response:
    """GET /metrics from the app in process (no lifespan: no Temporal or database needed)."""
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        return await client.get("/metrics", headers=headers)


async def test_with_a_token_metrics_need_it_as_a_bearer_token() -> None:
    settings = Settings(environment="test", metrics_token=TOKEN)
    missing = await scrape(settings)
    assert (missing.status_code, missing.json()["detail"]) == (401, "missing Authorization header")
    for wrong in (f"Bearer {TOKEN}x", "Bearer mt-3c9d", f"Basic {TOKEN}", TOKEN):
        assert (await scrape(settings, {"Authorization": wrong})).status_code == 401, wrong
    right = await scrape(settings, {"Authorization": f"Bearer {TOKEN}"})
    assert right.status_code == 200
    assert "hub_webhooks_total" in right.text
    assert TOKEN not in missing.text


async def test_without_a_token_metrics_stay_open_locally() -> None:
    assert (await scrape(Settings(environment="test"))).status_code == 200


def test_production_refuses_to_start_without_a_metrics_token() -> None:
    with pytest.raises(ValidationError, match="metrics_token is empty"):
        ApiSettings(**{**PRODUCTION_SETTINGS, "metrics_token": ""})
    assert ApiSettings(**PRODUCTION_SETTINGS).metrics_token.get_secret_value()
