"""deal changes: when the hub recorded each stage change, for the warehouse sync; a lead's source

``opportunity_stage_changes.changed_at`` is Zoho's ``Modified_Time``: a change that arrives late lies in
the past. The warehouse sync reads stage changes by ``recorded_at``, the hub's clock, as it reads the
lead flow's records (0006); rows from before take their change time. ``leads.lead_source`` keeps Zoho's
``Lead_Source`` (a channel) for the warehouse's funnel; leads from before have none.

The sync lands deals from this revision on. Its watermark is cleared so that its next run reads every
record once, the deals and stage changes recorded before included; what bronze already holds is not
landed again (each version's key is checked), so that run adds only the deals.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-04 03:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

WATERMARK = "portal-leads"  # workflows.lead_warehouse_sync.WATERMARK


def upgrade() -> None:
    with op.batch_alter_table("opportunity_stage_changes") as batch:
        batch.add_column(sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("update opportunity_stage_changes set recorded_at = changed_at")
    with op.batch_alter_table("opportunity_stage_changes") as batch:
        batch.alter_column("recorded_at", existing_type=sa.DateTime(timezone=True), nullable=False)
    op.create_index("ix_opportunity_stage_changes_recorded_at", "opportunity_stage_changes", ["recorded_at"])
    with op.batch_alter_table("leads") as batch:
        batch.add_column(sa.Column("lead_source", sa.String(120), nullable=True))
    op.execute(sa.text("delete from sync_watermarks where name = :name").bindparams(name=WATERMARK))


def downgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.drop_column("lead_source")
    op.drop_index("ix_opportunity_stage_changes_recorded_at", "opportunity_stage_changes")
    with op.batch_alter_table("opportunity_stage_changes") as batch:
        batch.drop_column("recorded_at")
