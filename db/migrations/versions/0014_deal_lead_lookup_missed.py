"""deal lead lookup missed: a deal stored without its converted lead because Zoho did not answer in time

A deal's first read looks up the lead it was converted from. Where Zoho does not answer that lookup in
time, the deal is stored without the link rather than held back; this flag tells its next change to look
again, until the lookup answers (found or not).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05 23:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("opportunities") as batch:
        batch.add_column(
            sa.Column("lead_lookup_missed", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("opportunities") as batch:
        batch.drop_column("lead_lookup_missed")
