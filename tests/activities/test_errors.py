"""How a partner's refusal reaches Temporal's retry policy."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.errors import PERMANENT_FAILURE, SERVICE_UNAVAILABLE, external_call
from clients.errors import PermanentError, TransientError


def raised(is_local: bool, error: Exception) -> ApplicationError:
    """What an activity (or a local one) raises for ``error`` from a partner's call."""

    def call() -> None:
        with external_call():
            raise error

    env = ActivityEnvironment()
    env.info = dataclasses.replace(env.info, is_local=is_local)
    with pytest.raises(ApplicationError) as caught:
        env.run(call)
    return caught.value


def test_an_activity_waits_the_retry_after_a_partner_asked_for() -> None:
    refused = raised(False, TransientError("zoho", "busy", 429, retry_after=30))
    assert (refused.type, refused.next_retry_delay) == (SERVICE_UNAVAILABLE, timedelta(seconds=30))


def test_a_local_first_try_leaves_the_wait_to_the_activity_after_it() -> None:
    # A long Retry-After in a local activity would hold the workflow task, or wait on a timer the Web UI
    # does not show: the local try fails at once and the ordinary activity waits.
    refused = raised(True, TransientError("zoho", "busy", 429, retry_after=30))
    assert (refused.type, refused.next_retry_delay, refused.non_retryable) == (
        SERVICE_UNAVAILABLE,
        None,
        False,
    )


def test_a_permanent_refusal_is_not_retried_either_way() -> None:
    for is_local in (False, True):
        refused = raised(is_local, PermanentError("zoho", "no such lead", 404))
        assert (refused.type, refused.non_retryable) == (PERMANENT_FAILURE, True)
