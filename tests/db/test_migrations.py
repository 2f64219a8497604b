"""Migrations that change data: what a database written by an earlier version holds afterwards."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command

from db.migrate import alembic_config, upgrade


def test_deal_changes_take_their_change_time_and_the_lead_sync_reads_everything_once(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'portal.db'}"
    command.upgrade(alembic_config(url), "0007")
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "insert into opportunities (deal_id, stage, modified_time, updated_at)"
                " values ('k-1', 'Closed Won', '2026-12-01 10:00:00.000000', '2026-12-01 10:00:01.000000')"
            )
        )
        connection.execute(
            sa.text(
                "insert into opportunity_stage_changes (deal_id, stage, changed_at)"
                " values ('k-1', 'Closed Won', '2026-12-01 10:00:00.000000')"
            )
        )
        connection.execute(
            sa.text(
                "insert into sync_watermarks (name, watermark, updated_at) values"
                " ('portal-leads', '2026-12-03 00:00:00.000000', '2026-12-03 00:00:00.000000'),"
                " ('vtex-customers', '2026-12-03 00:00:00.000000', '2026-12-03 00:00:00.000000')"
            )
        )
    upgrade(url)
    with engine.connect() as connection:
        recorded = connection.execute(sa.text("select recorded_at from opportunity_stage_changes")).scalar()
        watermarks = connection.execute(sa.text("select name from sync_watermarks")).scalars().all()
    engine.dispose()
    assert str(recorded).startswith("2026-12-01 10:00:00")
    # The lead sync's next run reads every record once, the deals from before included; others keep theirs.
    assert watermarks == ["vtex-customers"]
