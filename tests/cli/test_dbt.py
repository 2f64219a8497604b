"""``hub dbt build``: support's build never runs beside a scheduled one; ``hub dbt status``.

It holds the lease the scheduled builds hold (``activities.dbt``): it waits for one under way, and a
scheduled build waits for it. The builds are stand-in children that log their start and end, as in the
lease tests of the build activity; the CLI and the activity handle them as they handle dbt.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import cli.dbt
from activities.dbt import DbtActivities, DbtBuildInput
from contracts.dbt_build import BuildRequest, DbtBuildStatus, dbt_build_workflow_id, send_build_request
from core.settings import Settings
from db.engine import create_engine, session_factory
from db.leases import Holding, release, take
from tests.activities.test_dbt_lease import attempt, lines, stand_in, started
from tests.cli.conftest import HubCli
from tests.support import eventually
from tests.workflows.test_dbt_build import StandInBuilds, own_warehouse_settings, status
from warehouse.dbt import SUMMARY_PREFIX
from warehouse.dbt_child import BIGQUERY_JOB_TIMEOUT
from workflows.dbt_build import DbtBuildWorkflow

# What support sees of dbt: its lines as they come, then the summary.
BY_HAND = """
import json, os, sys, time
log, label, seconds, success = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4] == "pass"
with open(log, "a") as out: out.write(f"{{label}} start {{os.getpid()}}\\n")
print("1 of 1 START sql table model gold.customer_360", flush=True)
time.sleep(seconds)
with open(log, "a") as out: out.write(f"{{label}} end\\n")
failed = [] if success else ["unique_customer_360_customer_id: Got 2 results, configured to fail if != 0"]
summary = {{"success": success, "models_built": 1, "tests_failed": len(failed), "failures": failed}}
print({prefix!r} + json.dumps(summary), flush=True)
"""


def by_hand(monkeypatch: pytest.MonkeyPatch, log: Path, seconds: float, success: bool = True) -> None:
    script = BY_HAND.format(prefix=SUMMARY_PREFIX)

    def command(*_: Any, **__: Any) -> list[str]:
        return [sys.executable, "-c", script, str(log), "by-hand", str(seconds), "pass" if success else ""]

    monkeypatch.setattr(cli.dbt, "build_command", command)


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(environment="test", database_url=database_url, dbt_work_dir=str(tmp_path))


@pytest.fixture
def scheduled(settings: Settings, sessions: async_sessionmaker[AsyncSession]) -> DbtActivities:
    builds = DbtActivities(settings, sessions)
    builds._lease = timedelta(seconds=4)
    return builds


async def test_a_build_by_hand_waits_for_the_scheduled_build_under_way(
    hub_cli: HubCli,
    settings: Settings,
    scheduled: DbtActivities,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    log = tmp_path / "builds.log"
    stand_in(monkeypatch, log, "scheduled", seconds=1.5)
    under_way = asyncio.create_task(attempt(1).run(scheduled.dbt_build, DbtBuildInput()))
    await eventually(lambda: started(log), timeout=10, interval=0.02)
    by_hand(monkeypatch, log, seconds=0)

    ran = await hub_cli(settings, "dbt", "build", "--full-refresh", "--json")

    assert ran.code == 0, ran.err
    assert (await under_way).success
    assert lines(log) == ["scheduled start", "scheduled end", "by-hand start", "by-hand end"]
    [waited] = ran.lines("waiting")
    assert " on " in waited["holder"] and waited["free_by"]  # the scheduled attempt, its host and pid
    assert [line["line"] for line in ran.lines("dbt")] == ["1 of 1 START sql table model gold.customer_360"]
    [summary] = ran.lines("summary")
    assert summary["success"] and summary["models_built"] == 1


async def test_a_scheduled_build_waits_for_the_build_by_hand(
    hub_cli: HubCli,
    settings: Settings,
    scheduled: DbtActivities,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    log = tmp_path / "builds.log"
    by_hand(monkeypatch, log, seconds=1.5)
    support = asyncio.create_task(hub_cli(settings, "dbt", "build"))
    await eventually(lambda: started(log), timeout=10, interval=0.02)
    stand_in(monkeypatch, log, "scheduled", seconds=0)

    assert (await attempt(1).run(scheduled.dbt_build, DbtBuildInput())).success

    assert (await support).code == 0
    assert lines(log) == ["by-hand start", "by-hand end", "scheduled start", "scheduled end"]


async def test_a_failed_build_by_hand_says_what_failed_and_exits_1(
    hub_cli: HubCli, settings: Settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    by_hand(monkeypatch, tmp_path / "builds.log", seconds=0, success=False)

    ran = await hub_cli(settings, "dbt", "build")

    assert ran.code == 1
    assert "failed: unique_customer_360_customer_id: Got 2 results" in ran.out
    assert "dbt build FAILED" in ran.out
    assert "1 of 1 START sql table model gold.customer_360" in ran.out  # dbt's own lines, as they came
    assert "DBT-SUMMARY" not in ran.out


async def test_status_shows_the_build_under_way_its_lease_and_the_last_build(
    hub_cli: HubCli,
    temporal_env: WorkflowEnvironment,
    task_queue: str,
    sqlite_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = temporal_env.client
    engine = create_engine(sqlite_url)
    sessions = session_factory(engine)
    address = client.service_client.config.target_host
    settings = own_warehouse_settings(task_queue, database_url=sqlite_url, temporal_address=address)
    workflow_id = dbt_build_workflow_id(settings)

    before = await hub_cli(settings, "dbt", "status", "--json")
    assert before.code == 0
    assert before.lines("dbt_status") == [
        {
            "type": "dbt_status",
            "workflow_id": workflow_id,
            "workflow": "not_found",
            "status": None,
            "lease": None,
        }
    ]

    builds = StandInBuilds()
    async with Worker(
        client, task_queue=task_queue, workflows=[DbtBuildWorkflow], activities=[builds.dbt_build]
    ):
        await send_build_request(client, settings, BuildRequest("vtex orders"))
        await asyncio.wait_for(builds.started.wait(), timeout=30)
        await take(sessions, workflow_id, "attempt 1 on worker-7:42", timedelta(minutes=2))

        under_way = await hub_cli(settings, "dbt", "status")
        assert under_way.code == 0, under_way.err
        assert f"{workflow_id}: building" in under_way.out
        assert (
            f"lease {workflow_id}: held by attempt 1 on worker-7:42, renewed while its build runs"
            in under_way.out
        )

        builds.release.set()
        await release(sessions, workflow_id, "attempt 1 on worker-7:42")

        async def built() -> DbtBuildStatus | None:
            current = await status(client, workflow_id)
            return current if current.builds == 1 and not current.building else None

        await eventually(built, timeout=30)
        after = await hub_cli(settings, "dbt", "status")
    assert f"{workflow_id}: idle" in after.out
    assert "last build: dbt build passed" in after.out and "13 models built" in after.out
    assert f"lease {workflow_id}: free" in after.out

    # No warehouse worker answers the status query: said so, the lease still shown.
    monkeypatch.setattr(cli.dbt, "STATUS_TIMEOUT", timedelta(seconds=2))
    no_worker = await hub_cli(settings, "dbt", "status")
    await client.get_workflow_handle(workflow_id).terminate("test over")
    await engine.dispose()
    assert no_worker.code == 1
    assert f"{workflow_id} did not answer in 2 s: no warehouse worker polling" in no_worker.err
    assert f"lease {workflow_id}: free" in no_worker.out


def test_the_lease_reads_held_then_draining_then_free() -> None:
    # Renewed while its build runs; once it ended or stopped renewing, what it left may run until the
    # drain passed; only then does another build take it (db.leases.take), whatever the row still says.
    expires = datetime(2026, 12, 6, 20, 0, tzinfo=UTC)
    free_by = expires + BIGQUERY_JOB_TIMEOUT
    states = [
        cli.dbt.lease_view(Holding("attempt 1 on worker-7:42", expires, as_of=expires + after))
        for after in (-SECOND, SECOND, BIGQUERY_JOB_TIMEOUT)
    ]
    assert [(view.state, view.free_by) for view in states if view] == [
        ("held", free_by),
        ("draining", free_by),
        ("free", free_by),
    ]
    assert "free at 2026-12-06 20:10:00 UTC" in cli.dbt.describe_lease("dbt-build", states[1])
    assert "free (last held by attempt 1" in cli.dbt.describe_lease("dbt-build", states[2])
    assert cli.dbt.lease_view(None) is None


SECOND = timedelta(seconds=1)
