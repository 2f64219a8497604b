"""Activities that build silver and gold with dbt, and that ask for such a build.

The build runs ``python -m warehouse.dbt build`` as a child process and heartbeats while it waits: a
cancelled or timed-out activity stops the child (SIGINT, then a kill), and a worker killed outright takes
it along. A worker cut off from Temporal hears of neither, so each build also holds a lease in the
portal database (``db.leases``): Temporal's retry on another worker waits for it, and a build that
loses it stops. Asking for
a build is a signal-with-start of the one ``DbtBuildWorkflow`` (``contracts.dbt_build``), which
coalesces the requests that arrive while it builds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.heartbeats import heartbeating
from contracts.dbt_build import BuildRequest, BuildRequester, DbtBuildSummary, dbt_build_workflow_id
from core.metrics import ORDER_CHANGE_LATENCY
from core.settings import Settings
from core.timeutil import seconds_since
from db.leases import Held, Holding, held
from warehouse.dbt import SUMMARY_PREFIX, build_command, dbt_environment, parse_summary

log = logging.getLogger("activities.dbt")
# The build must not outlive its worker. A worker killed outright (SIGKILL, the OOM killer on a bare host)
# runs no ``finally``, and its orphaned build would go on beside the one Temporal's retry starts on
# another worker, both writing the same tables. setpriv (util-linux, in the image) has the kernel kill the
# child with its parent (PR_SET_PDEATHSIG). In a container the two die together anyway.
DIES_WITH_WORKER: tuple[str, ...] = (
    ("setpriv", "--pdeathsig", "KILL", "--") if shutil.which("setpriv") else ()
)
# A build that cannot run until someone fixes the dbt project or profile (parse, compile, configuration).
DBT_PROJECT_BROKEN = "DbtProjectBroken"
# A build stopped because it lost its lease: another may be building; the retry waits for the lease.
DBT_BUILD_LEASE_LOST = "DbtBuildLeaseLost"
# The longest a BigQuery job of a build may run (dbt/profiles.yml's job_execution_timeout_seconds, the
# job's own time-out on the server): a build killed outright leaves its jobs running that long, so the
# next waits that much past its lease's end.
BIGQUERY_JOB_TIMEOUT = timedelta(seconds=600)
# A build told to stop (SIGINT) cancels the BigQuery jobs of the models it runs and exits (7 s measured on
# the emulator, the machine idle); past this it is killed.
STOP_GRACE_SECONDS = 15.0
# What a build stopped that way may leave running: a hook's query between models, a job whose cancel
# BigQuery (best effort) has not done yet. The next build waits this long.
SETTLE_AFTER_STOP = timedelta(seconds=60)
# The child's longest line read (its summary, one JSON line, can be long); asyncio's default is 64 KiB.
OUTPUT_LINE_LIMIT = 16 * 1024 * 1024


@dataclass
class DbtBuildInput:
    fast: bool = False  # leave out unit tests and what is tagged hourly (warehouse.dbt.FAST_BUILD_EXCLUDES)
    # The oldest order change this build brings to gold (``BuildRequest.oldest_received_at``).
    oldest_received_at: str | None = None
    # Fast builds: models the last full build's error-level tests failed on, left out with what reads them.
    blocked: list[str] = field(default_factory=list)


class DbtActivities:
    """Runs dbt builds for this worker's settings."""

    def __init__(self, settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._environment = {**os.environ, **dbt_environment(settings)}
        self._work_dir = Path(settings.dbt_work_dir).resolve()
        self._sessions = sessions
        self._lease = timedelta(seconds=settings.dbt_build_lease_seconds)

    @activity.defn
    async def dbt_build(self, params: DbtBuildInput) -> DbtBuildSummary:
        """Run ``dbt build``; failed tests come back in the summary (a build that could not run raises)."""
        command = build_command(
            self._work_dir, fast=params.fast, blocked=params.blocked if params.fast else ()
        )
        # One lease per build workflow (per warehouse dataset prefix): the builds that write the same tables.
        name = activity.info().workflow_id or "dbt-build"
        async with (
            heartbeating(),
            held(self._sessions, name, _holder(), self._lease, drain=BIGQUERY_JOB_TIMEOUT) as lease,
        ):
            output = await run_child(command, self._environment, lease)
        text = output.decode(errors="replace")
        summary = parse_summary(text)
        if summary.error:
            log.error("dbt build could not run: %s", summary.error)
            if summary.error_kind == "project":  # a broken profile or model: retrying cannot help
                raise ApplicationError(
                    f"dbt project or profile broken: {summary.error}"[:2000],
                    type=DBT_PROJECT_BROKEN,
                    non_retryable=True,
                )
            raise RuntimeError(f"dbt build could not run: {summary.error}")
        if not summary.success:
            log.warning("dbt build failed: %s", "; ".join(summary.failures)[:2000])
        elif params.oldest_received_at:
            ORDER_CHANGE_LATENCY.labels("gold").observe(seconds_since(params.oldest_received_at))
        return summary


async def run_child(
    command: list[str],
    environment: dict[str, str],
    lease: Held,
    echo: Callable[[str], None] | None = None,
) -> bytes:
    """Run a build's child under ``lease``: its output once it ends (each line handed to ``echo`` as it
    comes); stopped, and an error raised, once the lease is lost. A child still running when this ends
    (cancelled, timed out, lost) is stopped, and the lease ends so that the next build waits for what
    it may leave running."""
    process = await asyncio.create_subprocess_exec(
        *DIES_WITH_WORKER,
        *command,
        env=environment,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,  # a Ctrl-C at the worker's terminal is the worker's to handle
        limit=OUTPUT_LINE_LIMIT,
    )
    build = asyncio.ensure_future(_output(process, echo))
    lost = asyncio.ensure_future(lease.lost.wait())
    try:
        await asyncio.wait((build, lost), return_when=asyncio.FIRST_COMPLETED)
        if build.done():
            return build.result()
        raise ApplicationError("the dbt build lost its lease and stopped", type=DBT_BUILD_LEASE_LOST)
    finally:
        lost.cancel()
        try:
            if process.returncode is None:  # cancelled, timed out or lost: it must not outlive us
                lease.lingers_for = BIGQUERY_JOB_TIMEOUT  # until it is known to have stopped when told
                if await stop(process):
                    lease.lingers_for = SETTLE_AFTER_STOP
        finally:
            build.cancel()  # (nothing when done)
        lease.lingers_for = max(lease.lingers_for, lingering(process.returncode))


async def _output(process: asyncio.subprocess.Process, echo: Callable[[str], None] | None) -> bytes:
    """The child's output once it exited, each line handed to ``echo`` on the way."""
    assert process.stdout is not None
    lines = []
    async for line in process.stdout:
        lines.append(line)
        if echo is not None and not line.startswith(SUMMARY_PREFIX.encode()):
            echo(line.decode(errors="replace").rstrip("\n"))
    await process.wait()
    return b"".join(lines)


def lingering(returncode: int | None) -> timedelta:
    """How long a build that exited so may leave BigQuery jobs running: killed by a signal (the OOM
    killer, or past the grace), until their time-out; ended by SIGINT, a minute; otherwise nothing."""
    if returncode is None or returncode >= 0:
        return timedelta(0)
    return SETTLE_AFTER_STOP if returncode == -signal.SIGINT else BIGQUERY_JOB_TIMEOUT


async def stop(process: asyncio.subprocess.Process) -> bool:
    """Stop a build: True when it exited on being told to (dbt cancels its BigQuery jobs on SIGINT),
    False when it had to be killed after STOP_GRACE_SECONDS (its jobs run on until their time-out)."""
    with contextlib.suppress(ProcessLookupError):
        process.send_signal(signal.SIGINT)
    try:
        await asyncio.wait_for(process.wait(), STOP_GRACE_SECONDS)
        return True
    except TimeoutError:
        _kill(process)
        await process.wait()
        return False
    except BaseException:  # cancelled again meanwhile: the build still must not outlive us
        _kill(process)
        raise


def _kill(process: asyncio.subprocess.Process) -> None:
    with contextlib.suppress(ProcessLookupError):
        process.kill()


def _holder() -> str:
    """This attempt, in this process (what support reads in the lease row and the waiting log), and a
    token of its own: a reset or restarted workflow repeats run-less ids and attempt numbers."""
    info = activity.info()
    attempt = f"{info.workflow_run_id} {info.activity_id}#{info.attempt} {uuid.uuid4().hex[:12]}"
    return f"{attempt} on {socket.gethostname()}:{os.getpid()}"[:255]


async def build_by_hand(
    settings: Settings,
    sessions: async_sessionmaker[AsyncSession],
    command: list[str],
    echo: Callable[[str], None],
    waiting: Callable[[Holding], None],
) -> DbtBuildSummary:
    """A build support runs (``hub dbt build``), under the lease of the scheduled builds of the same
    warehouse: it waits for one under way, and they wait for it. ``echo`` gets dbt's output lines."""
    holder = f"hub dbt build {uuid.uuid4().hex[:12]} on {socket.gethostname()}:{os.getpid()}"[:255]
    environment = {**os.environ, **dbt_environment(settings)}
    length = timedelta(seconds=settings.dbt_build_lease_seconds)
    name = dbt_build_workflow_id(settings)
    async with held(sessions, name, holder, length, drain=BIGQUERY_JOB_TIMEOUT, waiting=waiting) as lease:
        output = await run_child(command, environment, lease, echo)
    return parse_summary(output.decode(errors="replace"))


class BuildRequestActivities:
    """The activity through which a workflow that landed something asks for a build."""

    def __init__(self, requester: BuildRequester) -> None:
        self._requester = requester

    @activity.defn
    async def request_dbt_build(self, params: BuildRequest) -> None:
        """Ask for a build (a sync or backfill that landed something); coalesced with others."""
        await self._requester.request(params)
