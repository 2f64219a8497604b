"""Parking: an acknowledged event that a partner refused for good waits in its run until support acts.

A revoked token or a record a partner serves in a shape the hub cannot read fails the same way however
often it is retried. Dropping the event would lose something a sender was told is safe; retrying it
forever would hide it. So the run holds it: the ``Parked`` search attribute names the partner, the memo
says why, the worker's metrics count parked runs (an alert fires), and ``hub parked redrive`` signals the
run to try again once the cause is fixed (a new token, a corrected record).
"""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from core.constants import PARKED


class Parking:
    """The parked state of one run; the workflow routes its ``redrive_parked`` signal to ``redrive``."""

    def __init__(self) -> None:
        self.redrives = 0
        self.reason: str | None = None

    def redrive(self) -> None:
        self.redrives += 1

    async def hold(self, partner: str, reason: str) -> None:
        """Wait until support redrives the run; the caller then tries the refused step again.

        ``reason`` reaches the memo: ids, error types and status codes only, never a partner's body
        (it may echo personal data).
        """
        seen = self.redrives
        self.reason = reason
        # The reason goes to the memo (encrypted with the history), not to the log: it carries the
        # partner's error message, which may quote a value the hub sent (pyarrow quotes what it refused).
        workflow.logger.warning("parked until redriven (%s); the memo says why", partner)
        workflow.upsert_search_attributes([PARKED.value_set(partner)])
        workflow.upsert_memo({"parked": reason})
        await workflow.wait_condition(lambda: self.redrives > seen)
        self.reason = None
        workflow.upsert_search_attributes([PARKED.value_unset()])
        workflow.upsert_memo({"parked": None})
