"""The portal schema revision this code needs, and whether the database has it.

During a rollout, new API replicas and workers can start before the migration Job (or ``db.migrate``)
has run. Rather than take work and fail it on missing tables or columns, an API replica is not ready
(``/readyz`` 503 naming the schema) and a worker waits before it polls. A database newer than the code
(an old replica during the same rollout) is fine: migrations only add, or loosen a key (0017) that the
older code goes on using as before (a second stage move within one second is lost by it, as it was).
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession

# The newest revision under db/migrations/versions (tests/db/test_migrations.py holds them in step).
# Revisions are four digits, so they compare as text.
SCHEMA_HEAD = "0024"


async def schema_revision(session: AsyncSession) -> str | None:
    """The database's revision; None where no migration ran yet."""
    try:
        revision: str | None = await session.scalar(text("select version_num from alembic_version"))
    except DBAPIError as error:
        if "alembic_version" in str(error.orig):  # no such table: a database never migrated
            await session.rollback()
            return None
        raise
    return revision


def schema_behind(revision: str | None) -> str | None:
    """Why the database's schema is behind this code's, or None when it is not."""
    if revision is not None and revision >= SCHEMA_HEAD:
        return None
    return f"at {revision or 'no revision'}, this code needs {SCHEMA_HEAD}: run python -m db.migrate"
