"""Engines and sessions for the portal database (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, exc, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.ext.asyncio import AsyncSession as AsyncSession

from core.settings import Settings

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Shorter than an activity's 30 s step: an attempt gives up waiting before Temporal times it out.
POOL_WAIT_SECONDS = 20.0
# PostgreSQL that does not answer is "unavailable" (a 503 for a webhook, a retry for a step) within
# seconds, not after the driver's two-minute connect timeout, a TCP timeout or an endless lock wait.
# Each is a default: the same parameter in the database URL's query wins.
POSTGRES_CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 5,
    # A server gone without a word (a dropped route, a failed-over host) is noticed by the kernel
    # within a minute instead of hours; pre-ping then replaces the connection.
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
    # Data sent and never acknowledged (a request to a server gone mid-connection, pre-ping's included)
    # fails after this many milliseconds, where keepalives cover idle connections only.
    "tcp_user_timeout": 30_000,
}
# Each lock wait and statement is cut (an OperationalError: unavailable, tried again) past these. The
# hub's statements are single rows or pages; a minute is far more than any takes. Set on each new
# connection only where nothing else set them (the URL's ``?options=-c...``, PGOPTIONS, a service file,
# ``ALTER ROLE ... SET``): a DBA's own limits stand. Set after connecting, not as startup options,
# which poolers such as PgBouncer may refuse.
POSTGRES_TIMEOUTS = {"lock_timeout": "10s", "statement_timeout": "60s"}
# SQLite's codes for a database that cannot serve now (held by another writer, file or disk away);
# its other OperationalErrors (no such table, syntax) are bugs.
SQLITE_BUSY = ("SQLITE_BUSY", "SQLITE_LOCKED")  # held by another writer: it answers, but not in time
SQLITE_UNAVAILABLE = (*SQLITE_BUSY, "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_FULL")


def _with_driver(url: str, sqlite_driver: str) -> str:
    # PostgreSQL always goes through psycopg 3, which serves both sync and async engines.
    parsed = make_url(url)
    drivers = {"sqlite": sqlite_driver, "postgresql": "postgresql+psycopg"}
    driver = drivers.get(parsed.get_backend_name())
    return parsed.set(drivername=driver).render_as_string(hide_password=False) if driver else url


def async_url(url: str) -> str:
    """The async-driver form of a database URL (aiosqlite for SQLite, psycopg 3 for PostgreSQL)."""
    return _with_driver(url, "sqlite+aiosqlite")


def sync_url(url: str) -> str:
    """The sync-driver form of a database URL (used by migrations)."""
    return _with_driver(url, "sqlite")


def ensure_sqlite_dir(url: str) -> None:
    """Create the folder of a SQLite file so a fresh checkout starts without set-up."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        Path(str(parsed.database)).parent.mkdir(parents=True, exist_ok=True)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # busy_timeout makes writers queue instead of failing. It comes first: switching a new database to
    # WAL takes its exclusive lock, which processes connecting at once wait for too (the driver's own
    # 5 s can run out under load). WAL lets the API read while a worker writes.
    cursor = dbapi_connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    # In WAL mode NORMAL is still safe against a crash of the process; only a power cut can lose the
    # last commits. Production runs on PostgreSQL.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def create_engine(url: str, *, pool_size: int = 5, max_overflow: int = 10) -> AsyncEngine:
    """An async engine for ``url``; one per process, disposed on shutdown. ``pool_size`` and
    ``max_overflow``: PostgreSQL's connections kept, and opened beyond them at a peak.

    Its errors leave out the statement's parameters (``hide_parameters``): SQLAlchemy otherwise puts them
    in the error's text, and that text reaches logs and workflow histories (contact and account names of
    deals, for one)."""
    ensure_sqlite_dir(url)
    if make_url(url).get_backend_name() != "sqlite":
        engine = create_async_engine(
            async_url(url),
            pool_pre_ping=True,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=POOL_WAIT_SECONDS,
            connect_args=_postgres_connect_args(url),
            hide_parameters=True,
        )
        event.listen(engine.sync_engine, "connect", timeouts_where_unset(POSTGRES_TIMEOUTS))
        return engine
    # SQLite takes one writer at a time; concurrent writers poll its busy handler with sleeps of up to
    # 100 ms, which under load costs seconds per transaction. One connection per process makes them
    # queue for the pool instead (an asyncio wait, served in order) and needs no pre-ping: a local file
    # does not drop connections.
    engine = create_async_engine(
        async_url(url),
        pool_size=1,
        max_overflow=0,
        pool_timeout=POOL_WAIT_SECONDS,
        hide_parameters=True,
    )
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def engine_for(settings: Settings) -> AsyncEngine:
    """The process's engine for the portal database its settings name, with their pool."""
    return create_engine(
        settings.database_url,
        pool_size=settings.database_pool_size,
        max_overflow=settings.database_max_overflow,
    )


def _postgres_connect_args(url: str) -> dict[str, Any]:
    given = make_url(url).query
    return {name: value for name, value in POSTGRES_CONNECT_ARGS.items() if name not in given}


def timeouts_where_unset(timeouts: dict[str, str]) -> Callable[[Any, Any], None]:
    """A PostgreSQL engine's ``connect`` listener: it sets each of ``timeouts`` for the session where
    nothing else set it (the URL's options, PGOPTIONS, ALTER ROLE ... SET: a DBA's own limits stand)."""
    statement = (
        "select set_config(name, case name"
        + "".join(f" when '{name}' then '{value}'" for name, value in timeouts.items())
        + " end, false) from pg_settings where source = 'default' and name in ("
        + ", ".join(f"'{name}'" for name in timeouts)
        + ")"
    )

    def set_where_unset(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(statement)
        cursor.close()
        dbapi_connection.commit()  # a setting made in a transaction rolled back is undone

    return set_where_unset


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)


@asynccontextmanager
async def one_off_sessions(url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    """Sessions on the database at ``url`` for one short job (a command), its engine disposed after."""
    engine = create_engine(url)
    try:
        yield session_factory(engine)
    finally:
        await engine.dispose()


def on_sqlite(session: AsyncSession) -> bool:
    """Whether the session's database is a SQLite file (its own locking, clock and number types)."""
    return session.get_bind().dialect.name == "sqlite"


@asynccontextmanager
async def snapshot(sessions: async_sessionmaker[AsyncSession]) -> AsyncIterator[AsyncSession]:
    """A session whose reads all see the database as of its first one, for a view read in several
    statements: each statement on its own sees what was committed before it, so a lead's status could
    come from before a commit and its history from after it."""
    async with sessions() as session:
        if on_sqlite(session):
            # SQLite's driver begins no transaction for reads; in WAL mode one keeps its first read's view.
            await session.execute(text("BEGIN"))
        else:
            await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        yield session


async def lock_for_writing(session: AsyncSession) -> None:
    # SQLite starts a transaction only at the first write, so two worker processes would both rank on
    # the same snapshot; taking its write lock first makes them take turns (the busy timeout waits).
    if on_sqlite(session):
        await session.execute(text("BEGIN IMMEDIATE"))


# PostgreSQL's SQLSTATEs of a database that answers but is busy: a lock not granted in time, a
# statement cut by its timeout, a serialization failure, a deadlock.
POSTGRES_BUSY = frozenset({"55P03", "57014", "40001", "40P01"})


def database_busy(error: BaseException) -> bool:
    """Whether ``error`` is a database that answered but could not serve the statement in time (rows
    another process holds), rather than one that could not be reached."""
    if not isinstance(error, exc.DBAPIError):
        return False
    if isinstance(error.orig, sqlite3.Error):
        return str(getattr(error.orig, "sqlite_errorname", "")).startswith(SQLITE_BUSY)
    return getattr(error.orig, "sqlstate", None) in POSTGRES_BUSY


def database_unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the database could not serve the statement now (down, unreachable, out of
    connections, busy), so trying again later may succeed; False for a bug in the hub's SQL or data."""
    if isinstance(error, exc.TimeoutError):  # no pooled connection came free in time
        return True
    if not isinstance(error, exc.DBAPIError):
        return False
    if error.connection_invalidated:
        return True
    if isinstance(error.orig, sqlite3.Error):
        return str(getattr(error.orig, "sqlite_errorname", "")).startswith(SQLITE_UNAVAILABLE)
    # PostgreSQL's OperationalError classes: connection lost or refused, shutdown, out of resources,
    # lock or statement timeouts, serialization failures. Syntax and missing tables are other classes.
    return isinstance(error, exc.OperationalError)
