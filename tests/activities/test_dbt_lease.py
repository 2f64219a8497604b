"""A dbt build never runs beside another: each attempt holds the build lease in the portal database.

Temporal retries a build whose worker it lost (cut off beyond the heartbeat timeout) on another worker,
while the first may still be building. The builds here are stand-in children (the activity's own child
handling, with a command that logs its start and end), so the tests time the lease, not dbt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import activities.dbt
import warehouse.dbt
import warehouse.dbt_child
from activities.dbt import (
    CANNOT_RUN_ATTEMPTS,
    DBT_BUILD_LEASE_LOST,
    DBT_PROJECT_BROKEN,
    DbtActivities,
    DbtBuildInput,
)
from contracts.dbt_build import DbtBuildSummary
from core.settings import Settings
from core.timeutil import utcnow
from db.leases import take
from db.models import Lease
from tests.activities.test_dbt_child import running
from tests.support import eventually
from warehouse.dbt import SUMMARY_PREFIX
from warehouse.dbt_child import BIGQUERY_JOB_TIMEOUT, SETTLE_AFTER_STOP

# A build as far as the lease goes: it logs when it starts (with its pid) and ends, and prints a passing
# summary. "stubborn" ignores SIGINT, as a build stuck in a call that does not return would.
BUILD = """
import json, os, signal, sys, time
log, label, seconds, stubborn = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4] == "stubborn"
def interrupted(*_):
    with open(log, "a") as out: out.write(f"{{label}} interrupted\\n")
    sys.exit(1)
signal.signal(signal.SIGINT, signal.SIG_IGN if stubborn else interrupted)
with open(log, "a") as out: out.write(f"{{label}} start {{os.getpid()}}\\n")
time.sleep(seconds)
with open(log, "a") as out: out.write(f"{{label}} end\\n")
print({prefix!r} + json.dumps({{"success": True, "models_built": 1}}), flush=True)
"""


def stand_in(
    monkeypatch: pytest.MonkeyPatch, log: Path, label: str, seconds: float, stubborn: bool = False
) -> None:
    script = BUILD.format(prefix=SUMMARY_PREFIX)

    def command(*_: Any, **__: Any) -> list[str]:
        return [sys.executable, "-c", script, str(log), label, str(seconds), "stubborn" if stubborn else ""]

    monkeypatch.setattr(activities.dbt, "build_command", command)


async def started(log: Path) -> bool | None:
    return log.exists() or None


async def killed(pid: int) -> bool:
    return not running(pid)


def lines(log: Path) -> list[str]:
    """The log without pids."""
    return [" ".join(line.split()[:2]) for line in log.read_text().splitlines()]


def build_pid(log: Path) -> int:
    return int(log.read_text().split()[2])


BUILD_LEASE = "dbt-build"  # the build workflow's id names its lease
PROFILES = Path(__file__).resolve().parents[2] / "dbt" / "profiles.yml"


def attempt(number: int) -> ActivityEnvironment:
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(environment.info, workflow_id=BUILD_LEASE, attempt=number)
    return environment


@pytest.fixture
def builds(tmp_path: Path, sessions: async_sessionmaker[AsyncSession]) -> DbtActivities:
    builds = DbtActivities(Settings(environment="test", dbt_work_dir=str(tmp_path)), sessions)
    builds._lease = timedelta(seconds=4)  # renewed each second: the tests need not wait a minute's quarter
    return builds


async def test_a_retried_build_waits_for_the_attempt_still_building(
    builds: DbtActivities, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    log = tmp_path / "builds.log"
    stand_in(monkeypatch, log, "first", seconds=1.5)
    first = asyncio.create_task(attempt(1).run(builds.dbt_build, DbtBuildInput()))
    await eventually(lambda: started(log), timeout=10, interval=0.02)
    stand_in(monkeypatch, log, "retry", seconds=0.0)
    retry = await attempt(2).run(builds.dbt_build, DbtBuildInput())
    assert retry.success and (await first).success
    # The retry's build started only once the first attempt's had ended and let go of the lease.
    assert lines(log) == ["first start", "first end", "retry start", "retry end"]


async def test_a_build_that_lost_its_lease_stops_at_once(
    builds: DbtActivities,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The lease expired unrenewed (the database away) and another attempt took it: this one's build is
    told to stop, and the attempt fails retryable, to wait for the lease like any retry."""
    log = tmp_path / "build.log"
    stand_in(monkeypatch, log, "build", seconds=60)
    build = asyncio.create_task(attempt(1).run(builds.dbt_build, DbtBuildInput()))
    await eventually(lambda: started(log), timeout=10, interval=0.02)
    async with sessions.begin() as session:
        await session.execute(update(Lease).where(Lease.name == BUILD_LEASE).values(expires_at=utcnow()))
    assert (await take(sessions, BUILD_LEASE, "another attempt", builds._lease)).holder == "another attempt"
    with pytest.raises(ApplicationError) as stopped:
        await asyncio.wait_for(build, timeout=5)  # at its next renewal: a quarter of the lease
    assert stopped.value.type == DBT_BUILD_LEASE_LOST and not stopped.value.non_retryable
    assert not running(build_pid(log)) and lines(log) == ["build start", "build interrupted"]


async def test_a_build_releases_its_lease_when_it_fails(
    builds: DbtActivities,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setattr(
        activities.dbt, "build_command", lambda *_, **__: [sys.executable, "-c", "print('no summary')"]
    )
    with pytest.raises(RuntimeError, match="no summary"):
        await attempt(1).run(builds.dbt_build, DbtBuildInput())
    assert (await take(sessions, BUILD_LEASE, "next attempt", builds._lease)).holder == "next attempt"


async def test_a_build_that_still_cannot_run_after_its_attempts_is_recorded_as_failed(
    builds: DbtActivities, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A child that crashes before dbt's summary (or credentials revoked) is no warehouse away for a
    while: after its attempts the build is not retried but recorded as failed (the workflow takes this
    type as such), so the requests waiting behind it go on and the alert names it."""
    monkeypatch.setattr(
        activities.dbt, "build_command", lambda *_, **__: [sys.executable, "-c", "print('no summary')"]
    )
    with pytest.raises(RuntimeError, match="no summary"):
        await attempt(CANNOT_RUN_ATTEMPTS - 1).run(builds.dbt_build, DbtBuildInput())
    with pytest.raises(ApplicationError) as recorded:
        await attempt(CANNOT_RUN_ATTEMPTS).run(builds.dbt_build, DbtBuildInput())
    assert recorded.value.type == DBT_PROJECT_BROKEN and recorded.value.non_retryable
    assert f"could not run in {CANNOT_RUN_ATTEMPTS} attempts" in recorded.value.message


async def cancel_mid_build(
    builds: DbtActivities, monkeypatch: pytest.MonkeyPatch, log: Path, *, stubborn: bool
) -> None:
    """Cancel an attempt (its worker stopping, Temporal's time-out) while its build runs; the build ends."""
    stand_in(monkeypatch, log, "build", seconds=60, stubborn=stubborn)
    environment = attempt(1)
    build = asyncio.create_task(environment.run(builds.dbt_build, DbtBuildInput()))
    await eventually(lambda: started(log), timeout=10, interval=0.02)
    environment.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(build, timeout=5)
    assert not running(build_pid(log))


async def test_a_cancelled_build_that_stops_when_told_keeps_the_next_waiting_a_minute(
    builds: DbtActivities,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """Told to stop (SIGINT), dbt cancels the BigQuery jobs of its models and exits."""
    log = tmp_path / "build.log"
    await cancel_mid_build(builds, monkeypatch, log, stubborn=False)
    assert lines(log) == ["build start", "build interrupted"]
    # What it may have left running (a hook's query, a cancel BigQuery has not done yet) gets a minute.
    held_by = await take(sessions, BUILD_LEASE, "next attempt", builds._lease, BIGQUERY_JOB_TIMEOUT)
    free_in = held_by.expires_at + BIGQUERY_JOB_TIMEOUT - utcnow()
    assert held_by.holder != "next attempt" and SETTLE_AFTER_STOP - timedelta(seconds=5) < free_in
    assert free_in <= SETTLE_AFTER_STOP


async def test_a_build_killed_after_the_grace_keeps_the_next_waiting_for_its_jobs_time_out(
    builds: DbtActivities,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A build that does not stop when told is killed; its BigQuery jobs may run on until their own
    time-out, so the lease ends now and the next build waits that long past it."""
    monkeypatch.setattr(warehouse.dbt_child, "STOP_GRACE_SECONDS", 0.5)
    await cancel_mid_build(builds, monkeypatch, tmp_path / "build.log", stubborn=True)
    held_by = await take(sessions, BUILD_LEASE, "next attempt", builds._lease, BIGQUERY_JOB_TIMEOUT)
    assert held_by.holder != "next attempt"
    assert utcnow() - timedelta(seconds=5) < held_by.expires_at <= utcnow()  # the next waits 600 s past it
    # Ten minutes on, the time-out of its last jobs passed: the next build takes the lease.
    async with sessions.begin() as session:
        ended = utcnow() - BIGQUERY_JOB_TIMEOUT - timedelta(seconds=1)
        await session.execute(update(Lease).where(Lease.name == BUILD_LEASE).values(expires_at=ended))
    next_build = await take(sessions, BUILD_LEASE, "next attempt", builds._lease, BIGQUERY_JOB_TIMEOUT)
    assert next_build.holder == "next attempt"


def test_the_drain_covers_the_longest_job_time_out_of_every_dbt_target() -> None:
    profiles = yaml.safe_load(PROFILES.read_text())
    outputs = profiles["integrations_hub"]["outputs"]
    timeouts = {name: output["job_execution_timeout_seconds"] for name, output in outputs.items()}
    assert timeouts and all(
        0 < seconds <= BIGQUERY_JOB_TIMEOUT.total_seconds() for seconds in timeouts.values()
    )


def test_a_build_started_with_sigint_ignored_still_stops_when_told(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SIGINT is how a build is told to stop (dbt then cancels its BigQuery jobs). A process started
    with it ignored (a shell's background job, some supervisors) would run on to its end."""
    handlers: list[Any] = []

    def build(*_: Any, **__: Any) -> DbtBuildSummary:
        handlers.append(signal.getsignal(signal.SIGINT))
        return DbtBuildSummary(success=True)

    monkeypatch.setattr(warehouse.dbt, "run_build", build)
    monkeypatch.setenv("HUB_DBT_TARGET", "emulator")
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(SystemExit) as ended:
            warehouse.dbt.main(["build", "--work-dir", str(tmp_path)])
    finally:
        signal.signal(signal.SIGINT, previous)
    assert ended.value.code == 0 and handlers == [signal.default_int_handler]


async def test_a_build_killed_from_outside_keeps_the_next_waiting_for_its_jobs_time_out(
    builds: DbtActivities,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The OOM killer takes dbt alone (its memory is why it runs in a child): the attempt fails and is
    retried, and the jobs it had running go on until their time-out, so the lease ends now."""
    log = tmp_path / "build.log"
    stand_in(monkeypatch, log, "build", seconds=60)
    build = asyncio.create_task(attempt(1).run(builds.dbt_build, DbtBuildInput()))
    await eventually(lambda: started(log), timeout=10, interval=0.02)
    os.kill(build_pid(log), signal.SIGKILL)
    with pytest.raises(RuntimeError, match="no summary"):
        await asyncio.wait_for(build, timeout=5)
    held_by = await take(sessions, BUILD_LEASE, "next attempt", builds._lease, BIGQUERY_JOB_TIMEOUT)
    assert held_by.holder != "next attempt"
    assert utcnow() - timedelta(seconds=5) < held_by.expires_at <= utcnow()  # the next waits 600 s past it


async def test_a_build_cancelled_again_while_told_to_stop_is_killed_at_once(
    builds: DbtActivities,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """A worker stopping after the server cancelled the attempt cancels it a second time: the build
    still must not outlive the attempt, and its jobs may run on, so the next waits their time-out."""
    monkeypatch.setattr(warehouse.dbt_child, "STOP_GRACE_SECONDS", 30)
    log = tmp_path / "build.log"
    stand_in(monkeypatch, log, "build", seconds=60, stubborn=True)
    environment = attempt(1)
    build = asyncio.create_task(environment.run(builds.dbt_build, DbtBuildInput()))
    await eventually(lambda: started(log), timeout=10, interval=0.02)
    environment.cancel()
    await asyncio.sleep(0.5)
    assert running(build_pid(log))  # told to stop, and ignoring it
    build.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(build, timeout=5)
    # Killed (SIGKILL sent as the attempt ends; the kernel takes a moment on a busy machine).
    await eventually(lambda: killed(build_pid(log)), timeout=5, interval=0.02)
    held_by = await take(sessions, BUILD_LEASE, "next attempt", builds._lease, BIGQUERY_JOB_TIMEOUT)
    assert held_by.holder != "next attempt"
    assert utcnow() - timedelta(seconds=5) < held_by.expires_at <= utcnow()
