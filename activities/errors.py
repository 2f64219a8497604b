"""How activities report a failed external call to Temporal: retry it (maybe after a delay) or give up.

Every activity turns the clients' ``TransientError`` and ``PermanentError`` into an ``ApplicationError``
here, so the workflows' retry policies see one vocabulary of error types.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from clients.errors import PermanentError, TransientError

# Error types the workflows' retry policies name.
SERVICE_UNAVAILABLE = "ServiceUnavailable"  # retried, after the server's Retry-After when it gave one
PERMANENT_FAILURE = "PermanentFailure"  # non-retryable: the same request fails the same way


def as_application_error(
    error: TransientError | PermanentError, permanent_type: str = PERMANENT_FAILURE
) -> ApplicationError:
    """Translate a client error into what Temporal's retry policy understands."""
    if isinstance(error, TransientError):
        delay = timedelta(seconds=error.retry_after) if error.retry_after is not None else None
        if delay is not None and activity.in_activity() and activity.info().is_local:
            # A local activity is a short first try (workflows' _done_locally): a long wait would hold
            # the workflow task, or wait on a timer nobody sees. The activity it falls back to waits.
            delay = None
        return ApplicationError(str(error), type=SERVICE_UNAVAILABLE, next_retry_delay=delay)
    return ApplicationError(str(error), type=permanent_type, non_retryable=True)


@contextmanager
def external_call(permanent_type: str = PERMANENT_FAILURE) -> Iterator[None]:
    """Raise client errors of the block as Temporal application errors.

    ``permanent_type`` names a permanent failure, for workflows that treat one differently (a dealer that
    rejects a lead passes it to the next).
    """
    try:
        yield
    except (TransientError, PermanentError) as error:
        raise as_application_error(error, permanent_type) from error
