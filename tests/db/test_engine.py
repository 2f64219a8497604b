"""The portal database's engine, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy import Engine, make_url, text
from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy.exc import DBAPIError

from core.settings import Settings
from db.engine import (
    create_engine,
    database_busy,
    database_unavailable,
    engine_for,
    session_factory,
    snapshot,
    sync_url,
)
from tests.support import free_port

PERSON = "Maria Aparecida da Silva"


async def test_a_failed_statement_names_no_parameter(database_url: str) -> None:
    """A statement's error text reaches logs and workflow histories: it names the statement, never the
    values it carried (a deal's contact name, say)."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            with pytest.raises(DBAPIError) as failed:
                await connection.execute(text("select no_such_column, :contact"), {"contact": PERSON})
    finally:
        await engine.dispose()
    assert "no_such_column" in str(failed.value)
    assert PERSON not in str(failed.value)


@pytest.mark.postgres
def test_a_busy_or_absent_database_is_unavailable_and_a_bad_statement_is_not(
    tmp_path: Path, postgres_url: str
) -> None:
    """``database_unavailable`` tells an outage (answer 503, try again) from a bug (500)."""
    path = tmp_path / "portal.db"
    holder = sqlite3.connect(path)
    holder.execute("create table t (x int)")
    holder.execute("begin immediate")  # another process holds the write lock
    impatient = create_sync_engine(f"sqlite:///{path}", connect_args={"timeout": 0})
    nobody_listens = create_sync_engine(f"postgresql+psycopg://hub@127.0.0.1:{free_port()}/portal")
    postgres = create_sync_engine(sync_url(postgres_url))
    try:
        held = failure(impatient, "insert into t values (1)")
        assert database_unavailable(held) and database_busy(held)  # `hub` says busy, not "cannot reach"
        assert not database_unavailable(failure(impatient, "select * from no_such_table"))
        absent = failure(nobody_listens, "select 1")
        assert database_unavailable(absent) and not database_busy(absent)
        assert not database_unavailable(failure(postgres, "select * from no_such_table"))
        assert not database_unavailable(ValueError("not a database error"))
    finally:
        holder.close()
        for engine in (impatient, nobody_listens, postgres):
            engine.dispose()


def failure(engine: Engine, statement: str) -> DBAPIError:
    with pytest.raises(DBAPIError) as failed, engine.begin() as connection:
        connection.execute(text(statement))
    return failed.value


@pytest.mark.postgres
async def test_a_lock_held_too_long_is_unavailable_not_a_hang(postgres_url: str) -> None:
    """A row another transaction holds (a worker stuck mid-transaction) is waited for a bounded time,
    then the database counts as unavailable (a webhook's 503, a step's retry), never an endless wait.
    The URL's own options (here the test's schema) still apply, and a limit they set stands."""
    schema = make_url(postgres_url).query["options"]
    assert isinstance(schema, str) and schema.startswith("-csearch_path=")
    engine = create_engine(postgres_url)
    try:
        async with engine.begin() as setup:
            await setup.execute(text("create table held (id int primary key)"))
            await setup.execute(text("insert into held values (1)"))
        async with engine.connect() as holder, engine.connect() as waiter:
            await holder.execute(text("begin"))
            await holder.execute(text("select * from held where id = 1 for update"))
            assert await waiter.scalar(text("show lock_timeout")) == "10s"
            assert await waiter.scalar(text("show search_path")) == schema.removeprefix("-csearch_path=")
            started = time.monotonic()
            with pytest.raises(DBAPIError) as failed:
                await waiter.execute(text("select * from held where id = 1 for update"))
            waited = time.monotonic() - started
            await holder.rollback()
    finally:
        await engine.dispose()
    assert database_unavailable(failed.value)
    assert database_busy(failed.value)  # `hub` says busy, not "cannot reach": the rows are held
    assert 9 < waited < 30

    own = create_engine(f"{postgres_url} -cstatement_timeout=5s")  # a limit of the URL's own
    try:
        async with own.connect() as connection:
            assert await connection.scalar(text("show statement_timeout")) == "5s"
            assert await connection.scalar(text("show lock_timeout")) == "10s"
    finally:
        await own.dispose()


async def test_a_snapshot_reads_one_moment_while_another_process_commits(database_url: str) -> None:
    """A view read in several statements (a lead and its history) is of one moment: a change another
    process commits between them is not half in it. Sessions after it see the change."""
    reader, writer = create_engine(database_url), create_engine(database_url)
    status = "select status from leads where lead_id = 'L'"
    insert = (
        "insert into leads (lead_id, status, workflow_id, created_at, updated_at)"
        " values ('L', 'received', 'lead-L', '2026-12-01 10:00:00', '2026-12-01 10:00:00')"
    )
    try:
        async with writer.begin() as connection:
            await connection.execute(text(insert))
        async with snapshot(session_factory(reader)) as session:
            assert await session.scalar(text(status)) == "received"
            async with writer.begin() as connection:
                await connection.execute(text("update leads set status = 'delivered' where lead_id = 'L'"))
            assert await session.scalar(text(status)) == "received"
        async with session_factory(reader)() as session:
            assert await session.scalar(text(status)) == "delivered"
    finally:
        await reader.dispose()
        await writer.dispose()


async def test_each_process_holds_at_most_the_connections_its_settings_allow(postgres_url: str) -> None:
    """Replicas x (pool + overflow) is what PostgreSQL's max_connections must hold: the settings size it."""
    settings = Settings(
        environment="test", database_url=postgres_url, database_pool_size=2, database_max_overflow=1
    )
    engine = engine_for(settings)
    try:
        sessions = session_factory(engine)
        held = [sessions() for _ in range(3)]
        for session in held:
            await session.execute(text("select 1"))
        assert engine.pool.checkedout() == 3  # type: ignore[attr-defined]
        with pytest.raises(TimeoutError):  # a fourth waits for one of them
            async with sessions() as fourth:
                await asyncio.wait_for(fourth.execute(text("select 1")), 1)
        for session in held:
            await session.close()
    finally:
        await engine.dispose()
