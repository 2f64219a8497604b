"""Alembic environment: runs migrations with the sync driver of the configured URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, event, pool

from db.engine import sync_url, timeouts_where_unset
from db.models import Base

config = context.config
# A migration waiting for a table's lock (behind an open transaction) holds every statement on that
# table queued behind it, each then cut by its own lock timeout (10 s: a webhook's 503, a step's retry).
# It gives up after this instead, unless a DBA set a lock timeout of their own; the Job runs it again.
LOCK_TIMEOUT = "5s"


def run_migrations_online() -> None:
    url = sync_url(config.get_main_option("sqlalchemy.url") or "")
    connectable = create_engine(url, poolclass=pool.NullPool)
    if connectable.dialect.name == "postgresql":
        event.listen(connectable, "connect", timeouts_where_unset({"lock_timeout": LOCK_TIMEOUT}))
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
