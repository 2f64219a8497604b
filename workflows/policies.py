"""Retry policies the workflows share, named for the kind of dependency they wait out, and how a
workflow reads the error an activity ended with."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

# The portal/central database may be down or locked for a while: keep trying, never lose an
# acknowledged event.
DATABASE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))


def error_type(error: ActivityError) -> str | None:
    """The type the activity gave its ``ApplicationError`` (e.g. ``PermanentFailure``); None for others."""
    cause = error.cause
    return cause.type if isinstance(cause, ApplicationError) else None
