"""Handing dealers' status reports to their leads' runs, once the dealer has its answer.

The dealer status webhook answers as soon as the report is committed (``db.feedback``), not once Temporal
has it: the dealer's CRM waits for the database alone, and a report taken while Temporal is away is not
lost. Each report due to reach its lead's run is handed on right after the answer; a sweep in each API
process hands on those whose first hand-over failed (the API stopped, Temporal did not answer in time),
each claimed by one process at a time. Only the newest report of a delivery is ever due
(``db.feedback``), so an older status never reaches a run after a newer one; one handed on twice (a
hand-over that timed out yet reached Temporal) is passed on again with the same values and the same
event id.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.client import Client

from api.metrics import REPORT_HANDOVERS
from contracts.leads import DealerStatusReport, report_dealer_status
from core.settings import Settings
from core.temporal import temporal_unavailable
from core.timeutil import utcnow
from db import feedback
from db.engine import database_unavailable
from db.feedback import DueReport

log = logging.getLogger("api.relay")

SWEEP_BATCH = 200
# Hand-overs under way at once in a sweep, so a backlog left by a Temporal outage does not wait one
# report's round trips after another, while Temporal and the database see a bounded load. Each is two
# short transactions and a signal-with-start: bench/sweep.py measured 1.4 x one at a time on PostgreSQL,
# 1.1 x on SQLite (one writer at a time).
SWEEP_CONCURRENCY = 16
CLAIM = timedelta(seconds=60)  # a claimed report whose hand-over failed is due again after this
# No sender waits on a hand-over: it may take longer than a webhook's acknowledgement, well within CLAIM
# and the grace before a sweep takes a report over (db.feedback.HAND_OVER_GRACE).
HAND_OVER_TIMEOUT = timedelta(seconds=10)


class ReportRelay:
    """Hands recorded reports to their leads' runs (signal-with-start), and marks them handed on."""

    def __init__(
        self,
        client: Client,
        settings: Settings,
        sessions: async_sessionmaker[AsyncSession],
        sweep_concurrency: int = SWEEP_CONCURRENCY,
    ) -> None:
        self._client = client
        self._settings = settings
        self._sessions = sessions
        self._sweep_concurrency = sweep_concurrency
        self._in_flight = 0

    async def after_answer(self, report: DueReport) -> None:
        """The first hand-over, once the dealer is answered. A burst beyond ``webhook_max_in_flight``
        hand-overs under way, or a failure, leaves the report to the sweep."""
        if self._in_flight >= self._settings.webhook_max_in_flight:
            REPORT_HANDOVERS.labels("after_answer", "deferred").inc()
            return
        self._in_flight += 1
        try:
            result = await self._counted_hand_on(report)
        finally:
            self._in_flight -= 1
        REPORT_HANDOVERS.labels("after_answer", result).inc()

    async def sweep(self) -> int:
        """Hand on every report due now; how many were handed on. Stops at the first that Temporal did
        not take (it is away: the next sweep tries again)."""
        handed = 0
        try:
            await feedback.guards_passed(self._sessions, utcnow())  # a move's command that died midway
        except Exception:  # the due reports are handed on all the same; the next sweep tries again
            log.exception("guards of support's moves not checked")
        while True:
            due = await feedback.due_reports(self._sessions, utcnow(), SWEEP_BATCH)
            results = await self._sweep_batch(due)
            handed += results.count("handed_on")
            if "failed" in results or len(due) < SWEEP_BATCH:
                return handed

    async def _sweep_batch(self, due: list[DueReport]) -> list[str]:
        """Claim and hand on each report, ``sweep_concurrency`` at a time; once one fails, no other
        starts and the rest are left for the next sweep. An error (the database away) ends the batch:
        the hand-overs under way are cancelled (a report claimed stays due after ``CLAIM``), and it is
        raised."""
        gate = asyncio.Semaphore(self._sweep_concurrency)
        failed = asyncio.Event()

        async def hand_on(report: DueReport) -> str:
            async with gate:
                if failed.is_set():
                    return "left"
                taken = await feedback.claim(self._sessions, report, utcnow() + CLAIM)
                if taken is None:
                    return "taken"  # another API process has it
                result = await self._counted_hand_on(taken)
                REPORT_HANDOVERS.labels("sweep", result).inc()
                if result == "failed":
                    failed.set()
                return result

        try:
            async with asyncio.TaskGroup() as batch:
                tasks = [batch.create_task(hand_on(report)) for report in due]
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None  # the first; the others were cancelled with it
        return [task.result() for task in tasks]

    async def sweep_forever(self) -> None:
        """Sweep every ``dealer_report_sweep_seconds`` until cancelled."""
        while True:
            await asyncio.sleep(self._settings.dealer_report_sweep_seconds)
            try:
                if handed := await self.sweep():
                    log.info("handed on %d dealer reports left due", handed)
            except Exception:  # the database is away, or a bug: the next sweep tries again
                log.exception("dealer report sweep failed")

    async def _counted_hand_on(self, report: DueReport) -> str:
        """``handed_on``, ``failed`` (Temporal did not take it, or the database did not record that it
        did) or ``error`` (a bug: its stack in the log). The report stays due unless handed on."""
        try:
            return "handed_on" if await self._hand_on(report) else "failed"
        except Exception as error:
            if database_unavailable(error):
                log.warning("dealer report %s still due: portal database unavailable", report.report_id)
                return "failed"
            log.exception("dealer report %s not handed on: a bug in the hub", report.report_id)
            return "error"

    async def _hand_on(self, report: DueReport) -> bool:
        """Signal the lead's run (starting one where none runs); False when Temporal did not take it."""
        signal = DealerStatusReport(report.dealer_id, report.status, report.at.isoformat())
        try:
            async with asyncio.timeout(HAND_OVER_TIMEOUT.total_seconds()):
                await report_dealer_status(
                    self._client, self._settings, report.lead_id, signal, HAND_OVER_TIMEOUT
                )
        except Exception as error:
            if not temporal_unavailable(error):
                raise  # a bug in the hub: its stack in the log
            log.warning("dealer report %s not handed on: %s", report.report_id, type(error).__name__)
            return False
        await feedback.handed_on(self._sessions, report)
        return True
