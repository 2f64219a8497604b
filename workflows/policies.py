"""Retry policies the workflows share, named for the kind of dependency they wait out, how a workflow
reads the error an activity ended with, and how a long job measures its pace."""

from __future__ import annotations

from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError, FailureError

with workflow.unsafe.imports_passed_through():
    from activities.errors import PERMANENT_FAILURE

# The portal/central database may be down or locked for a while: keep trying, never lose an
# acknowledged event.
DATABASE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
# The long jobs' pages (backfill, catalog and customer syncs): VTEX or the warehouse may be away for a
# while, so keep trying; their stream cursors make a retried page safe.
LONG_JOB_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(minutes=2),
    non_retryable_error_types=[PERMANENT_FAILURE],
)


def seconds_and_rate(started_at: str, done: int) -> tuple[float, float]:
    """A long job's seconds since ``started_at`` (workflow time) and what it did per second."""
    seconds = round((workflow.now() - datetime.fromisoformat(started_at)).total_seconds(), 3)
    return seconds, round(done / seconds, 2) if seconds > 0 else 0.0


def failure_cause(error: FailureError) -> BaseException | None:
    """What the activity raised: an activity's failure wraps it in an ``ActivityError``; a local
    activity's comes unwrapped."""
    return error.cause if isinstance(error, ActivityError) else error


def error_type(error: FailureError) -> str | None:
    """The type the activity gave its ``ApplicationError`` (e.g. ``PermanentFailure``); None for others."""
    cause = failure_cause(error)
    return cause.type if isinstance(cause, ApplicationError) else None
