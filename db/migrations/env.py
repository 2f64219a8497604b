"""Alembic environment: runs migrations with the sync driver of the configured URL."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from db.engine import sync_url
from db.models import Base

config = context.config


def run_migrations_online() -> None:
    url = sync_url(config.get_main_option("sqlalchemy.url") or "")
    connectable = create_engine(url, poolclass=pool.NullPool)
    with connectable.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
