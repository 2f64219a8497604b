"""The dbt build workflow's contract: the one run per warehouse that builds silver and gold.

Flows that landed something ask for a build with a signal-with-start (``send_build_request``, or the
``BuildRequester`` that waits for a pause in landings); support reads the ``status`` query.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from temporalio.client import Client
from temporalio.common import WorkflowIDConflictPolicy

from core.constants import DBT_BUILD_WORKFLOW, DBT_BUILD_WORKFLOW_ID, REQUEST_BUILD_SIGNAL

if TYPE_CHECKING:
    from core.settings import Settings

log = logging.getLogger("contracts.dbt_build")
STATUS_QUERY = "status"
FLUSH_TIMEOUT_SECONDS = 10.0  # a stopping worker waits this long for its last build request


@dataclass
class DbtBuildSummary:
    """What one ``dbt build`` did; ``failures`` names every model or test that failed, with dbt's message."""

    success: bool = False
    models_built: int = 0
    models_failed: int = 0
    tests_passed: int = 0
    tests_failed: int = 0
    tests_warned: int = 0
    skipped: int = 0
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    error: str = ""  # dbt could not run at all (profile, connection, parse error)
    # "project" when the error is in the project or its profile (parse, compile, configuration):
    # running again cannot help until someone fixes it. Empty: it may pass later (a warehouse away).
    error_kind: str = ""
    # Full builds only: ``dbt source freshness`` of each bronze table, by table: "pass", "warn", "error"
    # (against the sources' warn_after/error_after), and when its newest row landed (ISO 8601 UTC).
    freshness: dict[str, str] = field(default_factory=dict)
    loaded_at: dict[str, str] = field(default_factory=dict)
    # The models an error-level test failed on (a key not unique, say): dbt skipped what reads them in
    # this build, and fast builds, which run no such tests, leave them and what reads them out until a
    # full build passes them again (``cleared``: models whose every test ran and passed or warned).
    blocked: list[str] = field(default_factory=list)
    cleared: list[str] = field(default_factory=list)


@dataclass
class BuildRequest:
    """Why a build is wanted (shown in the build workflow's history): a flow's name, never record data."""

    reason: str
    # When the hub received the oldest order change landed for this request (ISO 8601 UTC), if any: the
    # build that follows measures hook-to-gold from it.
    oldest_received_at: str | None = None
    full: bool = False  # every model and check now, not a fast build (the demo; support by hand)
    # The least time between two builds' starts (``dbt_build_spacing_seconds`` of the sender's settings,
    # set by ``send_build_request``); the newest request that says one holds. None: not said (a sender
    # of an earlier version), which leaves the spacing as it was.
    spacing_seconds: float | None = None


@dataclass
class DbtBuildStatus:
    """The build workflow's state: what the ``status`` query shows, and what continue-as-new carries."""

    builds: int = 0
    failed_builds: int = 0
    building: bool = False
    pending: list[str] = field(default_factory=list)  # reasons of requests not built yet
    last: DbtBuildSummary | None = None
    last_success_at: str | None = None  # when the last build that passed ended (ISO 8601 UTC)
    last_full_at: str | None = None  # when the last full build (every model and check) started
    last_started_at: str | None = None  # when the last build started (the next waits for the spacing)
    spacing_seconds: float = 0.0  # the least time between two builds' starts, from the newest request
    # The last full build: its tests are the latest word on the data (fast builds run none).
    last_full: DbtBuildSummary | None = None
    oldest_received_at: str | None = None  # of the pending requests' order changes
    full_asked: bool = False  # a pending request asked for a full build
    # Models fast builds leave out, with what reads them: a full build's error-level test failed on
    # each, and no full build since ran and passed its tests.
    blocked: list[str] = field(default_factory=list)


def dbt_build_workflow_id(settings: Settings) -> str:
    """One build workflow per warehouse: environments that share a project differ by dataset prefix."""
    prefix = settings.bigquery_dataset_prefix.strip("_-")
    return f"{DBT_BUILD_WORKFLOW_ID}-{prefix}" if prefix else DBT_BUILD_WORKFLOW_ID


async def send_build_request(client: Client, settings: Settings, request: BuildRequest) -> None:
    """Ask the warehouse's build workflow for a build, starting it if it is not running.

    Contract: when this returns, a build that starts after this moment is guaranteed (a build already
    running does not count: it may have read bronze before the caller's rows landed). It starts once
    the settings' spacing since the last build's start has passed.
    """
    request = replace(request, spacing_seconds=settings.dbt_build_spacing_seconds)
    await client.start_workflow(
        DBT_BUILD_WORKFLOW,
        DbtBuildStatus(),
        id=dbt_build_workflow_id(settings),
        task_queue=settings.dbt_task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        start_signal=REQUEST_BUILD_SIGNAL,
        start_signal_args=[request],
    )


class BuildRequester:
    """Asks for a dbt build once order landings pause, and at least once per interval while they go on.

    A build costs about the same whether it carries one order or a thousand, and on BigQuery each one is
    billed for what it reads. During a burst of orders, one request once the burst is over (``quiet``
    seconds without a landing) serves them all; under steady traffic a request still goes out
    ``interval`` seconds after the oldest landing waiting for one, so gold stays within minutes of the
    hooks. Requests between builds coalesce in the build workflow anyway.
    """

    def __init__(self, client: Client, settings: Settings) -> None:
        self._client = client
        self._settings = settings
        self._quiet = settings.dbt_orders_build_quiet_seconds
        self._interval = settings.dbt_orders_build_interval_seconds
        self._reason = ""
        self._first_waiting: float | None = None  # monotonic time of the oldest landing not asked for
        self._last_landing = float("-inf")
        self._oldest_received: str | None = None  # of the order changes landed since the last request
        self._sender: asyncio.Task[None] | None = None

    async def request(self, request: BuildRequest) -> None:
        """Signal-with-start the build workflow (raises if Temporal does not answer); no-op when disabled."""
        if self._settings.dbt_builds_enabled:
            await send_build_request(self._client, self._settings, request)

    async def request_soon(self, reason: str, oldest_received_at: str | None = None) -> None:
        """Ask for a build once landings pause or the interval is up; returns at once, never raises.

        The landing that calls this has already succeeded: a request that fails is tried again a little
        later. ``oldest_received_at`` (order changes) goes with the next request sent.
        """
        if not self._settings.dbt_builds_enabled:
            return
        self._reason = reason
        self._oldest_received = earliest(self._oldest_received, oldest_received_at)
        self._last_landing = time.monotonic()
        if self._first_waiting is None:
            self._first_waiting = self._last_landing
        if self._sender is None or self._sender.done():
            self._sender = asyncio.create_task(self._send_when_due())

    async def flush(self) -> None:
        """Send a request still waiting now (the worker is stopping; it would be lost otherwise)."""
        if self._sender is not None and not self._sender.done():
            self._sender.cancel()
            await asyncio.wait([self._sender])  # a request it had under way is waiting again
        if self._first_waiting is None:
            return
        self._first_waiting = None
        try:
            async with asyncio.timeout(FLUSH_TIMEOUT_SECONDS):
                await self._request_now()
        except TimeoutError:
            log.warning("dbt build request not sent before stopping: no answer from Temporal in time")

    def _due(self, first_waiting: float) -> float:
        return min(self._last_landing + self._quiet, first_waiting + self._interval)

    async def _send_when_due(self) -> None:
        # Landings during a request wait for the next one: the loop goes on until none is waiting.
        while self._first_waiting is not None:
            wait = self._due(self._first_waiting) - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
                continue
            self._first_waiting = None
            if not await self._request_now():
                await asyncio.sleep(max(self._quiet, 1.0))  # Temporal away: try again, not in a tight loop

    async def _request_now(self) -> bool:
        oldest, self._oldest_received = self._oldest_received, None
        try:
            await self.request(BuildRequest(self._reason, oldest))
        except BaseException as error:  # failed or cancelled: the request waits for the next try
            due_at_once = time.monotonic() - self._interval
            self._first_waiting = min(self._first_waiting or due_at_once, due_at_once)
            self._oldest_received = earliest(self._oldest_received, oldest)
            if not isinstance(error, Exception):
                raise
            log.warning("could not request a dbt build (%s): %s", self._reason, error)
            return False
        return True


def earliest(first: str | None, second: str | None) -> str | None:
    """The earlier of two ISO 8601 UTC times written alike (``core.vtex.received_now``), ignoring None."""
    return min(filter(None, (first, second)), default=None)
