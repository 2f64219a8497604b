"""``/readyz``: a replica of new code takes no traffic until the portal database has its schema."""

from __future__ import annotations

from pathlib import Path

import httpx
from alembic import command
from alembic.script import ScriptDirectory
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from db.migrate import alembic_config
from db.schema import SCHEMA_HEAD
from tests.hub import hub_settings
from tests.support import serve


def test_the_schema_head_is_the_newest_migration() -> None:
    assert ScriptDirectory.from_config(alembic_config("sqlite:///unused.db")).get_heads() == [SCHEMA_HEAD]


async def test_a_replica_is_ready_once_the_schema_is_this_code_s(
    temporal_env: WorkflowEnvironment, tmp_path: Path, task_queue: str
) -> None:
    url = f"sqlite:///{tmp_path / 'portal.db'}"
    address = temporal_env.client.service_client.config.target_host
    settings = hub_settings(url, address, "http://127.0.0.1:9", task_queue)
    async with serve(create_app(settings)) as base, httpx.AsyncClient(timeout=30) as http:
        never = await http.get(f"{base}/readyz")  # a database no migration ran on
        assert never.status_code == 503
        assert (
            never.json()["schema"]
            == f"at no revision, this code needs {SCHEMA_HEAD}: run python -m db.migrate"
        )

        previous = f"{int(SCHEMA_HEAD) - 1:04d}"
        command.upgrade(alembic_config(url), previous)  # the rollout started before the migration ran
        behind = await http.get(f"{base}/readyz")
        assert behind.status_code == 503
        assert behind.json() == {
            "temporal": "ok",
            "database": "ok",
            "schema": f"at {previous}, this code needs {SCHEMA_HEAD}: run python -m db.migrate",
        }

        command.upgrade(alembic_config(url), "head")
        ready = await http.get(f"{base}/readyz")
        assert (ready.status_code, ready.json()) == (
            200,
            {"temporal": "ok", "database": "ok", "schema": "ok"},
        )
