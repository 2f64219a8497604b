"""same-second stages: a deal's stage history keeps every stage Zoho stamped with one Modified_Time

Zoho's Modified_Time has second precision: two stage moves made within one second (a user's move and a
workflow rule's, two API updates) share it. The history was unique per (deal, time), so the second move
was taken for the first one sent again and lost. It is now unique per (deal, time, stage): a move sent
again is still recorded once. ``settled`` marks the stage Zoho's record showed at that second, the move
that came last there, so the history keeps the order of the moves within a second.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 04:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLE = "opportunity_stage_changes"
CONSTRAINT = "uq_opportunity_stage_change"


def upgrade() -> None:
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_constraint(CONSTRAINT, type_="unique")
        batch.create_unique_constraint(CONSTRAINT, ["deal_id", "changed_at", "stage"])
        batch.add_column(sa.Column("settled", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    # The older key holds one stage per second: the settled one stays (the deal's stage where that second
    # is its current state), else the first recorded.
    op.execute(
        f"delete from {TABLE} where exists (select 1 from {TABLE} as other"
        f" where other.deal_id = {TABLE}.deal_id and other.changed_at = {TABLE}.changed_at"
        f" and (other.settled and not {TABLE}.settled"
        f" or other.settled = {TABLE}.settled and other.id < {TABLE}.id))"
    )
    with op.batch_alter_table(TABLE) as batch:
        batch.drop_column("settled")
        batch.drop_constraint(CONSTRAINT, type_="unique")
        batch.create_unique_constraint(CONSTRAINT, ["deal_id", "changed_at"])
