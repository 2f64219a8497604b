"""Alembic environment: runs migrations with the sync driver of the configured URL."""

from __future__ import annotations

from typing import Any

from alembic import context
from sqlalchemy import create_engine, event, pool

from db.engine import sync_url
from db.models import Base

config = context.config
# A migration waiting for a table's lock (behind an open transaction) holds every statement on that
# table queued behind it, each then cut by its own lock timeout (10 s: a webhook's 503, a step's retry).
# It gives up after this instead, unless a DBA set a lock timeout of their own; the Job runs it again.
LOCK_TIMEOUT = "5s"


def _lock_timeout(dbapi_connection: Any, _record: Any) -> None:
    # Where nothing else set one (the URL's options, ALTER ROLE ... SET): a DBA's own limit stands.
    cursor = dbapi_connection.cursor()
    cursor.execute(
        f"select set_config('lock_timeout', '{LOCK_TIMEOUT}', false) from pg_settings"
        " where name = 'lock_timeout' and source = 'default'"
    )
    cursor.close()
    dbapi_connection.commit()  # a setting made in a transaction rolled back is undone


def run_migrations_online() -> None:
    url = sync_url(config.get_main_option("sqlalchemy.url") or "")
    connectable = create_engine(url, poolclass=pool.NullPool)
    if connectable.dialect.name == "postgresql":
        event.listen(connectable, "connect", _lock_timeout)
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
