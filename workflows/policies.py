"""Retry policies the workflows share, named for the kind of dependency they wait out."""

from __future__ import annotations

from datetime import timedelta

from temporalio.common import RetryPolicy

# The portal/central database may be down or locked for a while: keep trying, never lose an
# acknowledged event.
DATABASE_RETRY = RetryPolicy(initial_interval=timedelta(seconds=1), maximum_interval=timedelta(minutes=1))
