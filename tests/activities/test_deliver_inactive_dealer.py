"""A delivery attempt that finds its dealer taken out of the rules says whether it was the first: only
after earlier attempts may the dealer's CRM hold the lead (the run then has it asked to drop it)."""

from __future__ import annotations

import dataclasses

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ActivityError, ApplicationError, RetryState
from temporalio.testing import ActivityEnvironment

from activities.leads import NO_EARLIER_ATTEMPT, UNKNOWN_DEALER, DeliverLeadInput
from tests.activities.test_zoho_writeback import zoho_steps
from workflows.lead_distribution import _after_earlier_attempts


def activity_error(cause: ApplicationError) -> ActivityError:
    error = ActivityError(
        "activity failed",
        scheduled_event_id=5,
        started_event_id=6,
        identity="worker",
        activity_type="deliver_lead",
        activity_id="1",
        retry_state=RetryState.NON_RETRYABLE_FAILURE,
    )
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(("attempt", "maybe_at_its_crm"), [(1, False), (3, True)])
async def test_an_inactive_dealer_owes_a_drop_only_after_earlier_attempts(
    sessions: async_sessionmaker[AsyncSession], attempt: int, maybe_at_its_crm: bool
) -> None:
    async with zoho_steps(sessions, httpx.MockTransport(lambda _: httpx.Response(500))) as steps:
        environment = ActivityEnvironment()
        environment.info = dataclasses.replace(environment.info, attempt=attempt)
        with pytest.raises(ApplicationError) as raised:
            await environment.run(
                steps.deliver_lead, DeliverLeadInput(lead_id="L1", dealer_id="gone", lead={})
            )
    assert raised.value.type == UNKNOWN_DEALER and raised.value.non_retryable
    assert (NO_EARLIER_ATTEMPT in raised.value.details) is not maybe_at_its_crm
    assert _after_earlier_attempts(activity_error(raised.value)) is maybe_at_its_crm
    # A failure recorded before attempts were told apart (no details) counts as after earlier ones.
    bare = ApplicationError("no active dealer gone", type=UNKNOWN_DEALER, non_retryable=True)
    assert _after_earlier_attempts(activity_error(bare))
