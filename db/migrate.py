"""Apply the portal database migrations (``python -m db.migrate``)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from core.settings import MigrationSettings, get_settings
from db.engine import ensure_sqlite_dir, sync_url


def alembic_config(url: str) -> Config:
    """An Alembic config for ``url`` that finds the migrations inside this package."""
    config = Config()
    config.set_main_option("script_location", "db:migrations")
    config.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return config


def upgrade(url: str) -> None:
    """Bring the database at ``url`` to the newest schema; safe to run on every start."""
    ensure_sqlite_dir(url)
    command.upgrade(alembic_config(url), "head")


def main() -> None:
    upgrade(get_settings(MigrationSettings).database_url)


if __name__ == "__main__":
    main()
