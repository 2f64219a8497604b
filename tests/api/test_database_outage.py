"""The portal database away: the API answers 503 with Retry-After, so nothing a sender reported is lost;
a bug in a database statement stays a 500, logged with its stack and counted as an error."""

from __future__ import annotations

import logging
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from prometheus_client import REGISTRY
from temporalio.client import Client

from api.app import create_app
from api.relay import ReportRelay
from api.routes import dealers
from db.engine import create_engine, session_factory
from db.feedback import DueReport
from tests.hub import READ_TOKEN, hub_settings
from tests.support import eventually, free_port, serve

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


class TemporalTakesIt:
    """A Temporal client whose signal-with-start always succeeds."""

    async def start_workflow(self, *_: Any, **__: Any) -> None:
        return None


def handovers(result: str) -> float:
    labels = {"way": "after_answer", "result": result}
    return REGISTRY.get_sample_value("hub_dealer_report_handovers_total", labels) or 0.0


@pytest.mark.parametrize(
    ("database", "result"),
    [("down", "failed"), ("never migrated", "error")],
)
async def test_a_hand_over_the_database_cannot_record_stays_due_and_only_a_bug_is_an_error(
    database: str, result: str, tmp_path: Path
) -> None:
    """Temporal has the report, but marking it handed on fails: with the database down the report stays
    due (``failed``, the sweep hands it on again, the run ignores the repeat); a statement the hub got
    wrong is a bug (``error``, logged with its stack)."""
    url = (
        f"postgresql://hub@127.0.0.1:{free_port()}/portal"
        if database == "down"
        else f"sqlite:///{tmp_path / 'never-migrated.db'}"
    )
    settings = hub_settings(url, "127.0.0.1:9", "http://127.0.0.1:9", "test-outage")
    engine = create_engine(url)
    relay = ReportRelay(cast(Client, TemporalTakesIt()), settings, session_factory(engine))
    now = datetime.now(UTC)
    before = {outcome: handovers(outcome) for outcome in ("handed_on", "failed", "error")}
    try:
        await relay.after_answer(DueReport(1, LEAD, DEALER, "accepted", now, now))
    finally:
        await engine.dispose()
    changed = {outcome: handovers(outcome) - count for outcome, count in before.items()}
    assert changed == {"handed_on": 0, "failed": 0, "error": 0, result: 1}


async def test_a_database_that_does_not_record_in_time_is_a_503_not_a_hung_webhook(
    sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another process holds the portal's write lock (a failover or a silent connection on PostgreSQL
    holds a report the same way, for minutes): the dealer is answered 503 with Retry-After at the
    route's time limit, not after the database's own waits, which a cancellation does not cut. The
    recording goes on alone and ends once the lock is free; the dealer's resend is answered as any."""
    monkeypatch.setattr(dealers, "RECORD_TIMEOUT_SECONDS", 1)
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite:///"), isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")  # as the hub's processes keep the file
    holder.execute("BEGIN IMMEDIATE")
    settings = hub_settings(
        sqlite_url, f"127.0.0.1:{free_port()}", "http://127.0.0.1:9", "test-outage",
        dealer_webhook_secrets={DEALER: SECRET},
    )  # fmt: skip

    async def nothing_left_alone() -> bool:
        return not dealers._OUTLIVING

    async with serve(create_app(settings)) as base, httpx.AsyncClient(timeout=60) as http:
        url = f"{base}/webhooks/dealers/{DEALER}/leads/{LEAD}/status"
        headers = {settings.dealer_webhook_secret_header: SECRET}
        held = await http.post(url, json={"status": "accepted"}, headers=headers)
        assert dealers._OUTLIVING  # still waiting for the lock: the answer did not
        holder.execute("ROLLBACK")
        holder.close()
        await eventually(nothing_left_alone)
        again = await http.post(url, json={"status": "accepted"}, headers=headers)
    assert held.status_code == 503, held.text
    assert held.headers["Retry-After"] == "5"
    assert "did not answer in time" in held.json()["detail"]
    assert again.status_code == 404  # answered as sent: this lead was never delivered to the dealer
