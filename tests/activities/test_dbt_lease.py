"""A dbt build never runs beside another: each attempt holds the build lease in the portal database.

Temporal retries a build whose worker it lost (cut off beyond the heartbeat timeout) on another worker,
while the first may still be building. The builds here are stand-in children (the activity's own child
handling, with a command that logs its start and end), so the tests time the lease, not dbt.
"""

from __future__ import annotations

import asyncio
import dataclasses
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

import activities.dbt
from activities.dbt import DBT_BUILD_LEASE_LOST, DbtActivities, DbtBuildInput
from core.settings import Settings
from core.timeutil import utcnow
from db.leases import take
from db.models import Lease
from tests.support import eventually
from warehouse.dbt import SUMMARY_PREFIX

# A build as far as the lease goes: it logs when it starts and ends, and prints a passing summary.
BUILD = """
import json, sys, time
log, label, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
with open(log, "a") as out: out.write(f"{{label}} start\\n")
time.sleep(seconds)
with open(log, "a") as out: out.write(f"{{label}} end\\n")
print({prefix!r} + json.dumps({{"success": True, "models_built": 1}}), flush=True)
"""


def stand_in(monkeypatch: pytest.MonkeyPatch, log: Path, label: str, seconds: float) -> None:
    script = BUILD.format(prefix=SUMMARY_PREFIX)

    def command(*_: Any, **__: Any) -> list[str]:
        return [sys.executable, "-c", script, str(log), label, str(seconds)]

    monkeypatch.setattr(activities.dbt, "build_command", command)


async def started(log: Path) -> bool | None:
    return log.exists() or None


BUILD_LEASE = "dbt-build"  # the build workflow's id names its lease


def attempt(number: int) -> ActivityEnvironment:
    environment = ActivityEnvironment()
    environment.info = dataclasses.replace(environment.info, workflow_id=BUILD_LEASE, attempt=number)
    return environment


@pytest.fixture
def builds(tmp_path: Path, sessions: async_sessionmaker[AsyncSession]) -> DbtActivities:
    settings = Settings(environment="test", dbt_work_dir=str(tmp_path), dbt_build_lease_seconds=4)
    return DbtActivities(settings, sessions)


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
    assert log.read_text().splitlines() == ["first start", "first end", "retry start", "retry end"]


async def test_a_build_that_lost_its_lease_stops_at_once(
    builds: DbtActivities,
    sessions: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    """The lease expired unrenewed (the database away) and another attempt took it: this one's build is
    killed, and the attempt fails retryable, to wait for the lease like any retry."""
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
    await asyncio.sleep(0.5)
    assert log.read_text() == "build start\n"  # killed: it never reached its end


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
