"""The portal database away: the API answers 503 with Retry-After, so nothing a sender reported is lost;
a bug in a database statement stays a 500, logged with its stack and counted as an error."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from prometheus_client import REGISTRY

from api.app import create_app
from tests.hub import READ_TOKEN, hub_settings
from tests.support import free_port, serve

DEALER = "rest-sp-a"
SECRET = "dealer-secret-1"
LEAD = "5725767000000123001"
SOURCE = "dealers_{dealer_id}_leads_{lead_id}_status"


def counted(outcome: str) -> float:
    return REGISTRY.get_sample_value("hub_webhooks_total", {"source": SOURCE, "outcome": outcome}) or 0.0


async def report(database_url: str) -> tuple[httpx.Response, httpx.Response]:
    """A dealer's status report and a lead read, against an API on ``database_url``; Temporal is not
    needed (the API connects to it lazily) and never asked."""
    settings = hub_settings(
        database_url,
        f"127.0.0.1:{free_port()}",
        "http://127.0.0.1:9",
        "test-outage",
        dealer_webhook_secrets={DEALER: SECRET},
    )
    async with serve(create_app(settings)) as base, httpx.AsyncClient(timeout=30) as http:
        reported = await http.post(
            f"{base}/webhooks/dealers/{DEALER}/leads/{LEAD}/status",
            json={"status": "accepted"},
            headers={settings.dealer_webhook_secret_header: SECRET},
        )
        read = await http.get(f"{base}/v1/leads/{LEAD}", headers={"Authorization": f"Bearer {READ_TOKEN}"})
    return reported, read


async def test_with_the_database_down_a_dealer_is_told_to_send_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    before = counted("unavailable")
    nobody_listens = f"postgresql://hub@127.0.0.1:{free_port()}/portal"
    with caplog.at_level(logging.WARNING, logger="api"):
        reported, read = await report(nobody_listens)
    for answer in (reported, read):
        assert answer.status_code == 503, answer.text
        assert answer.headers["Retry-After"] == "5"
        assert answer.json() == {"detail": "the portal database is unavailable, retry later"}
    assert counted("unavailable") - before == 1
    assert "portal database unavailable for POST /webhooks/dealers/{dealer_id}/leads/{lead_id}/status" in (
        caplog.text
    )


async def test_a_bug_in_a_statement_is_a_500_with_its_stack_counted_as_an_error(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """A database without the hub's tables (never migrated) stands for a statement the hub got wrong."""
    before = counted("error")
    reported, read = await report(f"sqlite:///{tmp_path / 'never-migrated.db'}")
    assert (reported.status_code, read.status_code) == (500, 500)
    assert counted("error") - before == 1
    server_log = capfd.readouterr().err  # uvicorn writes a request's unhandled error to stderr
    assert "Traceback" in server_log and "no such table: deliveries" in server_log
