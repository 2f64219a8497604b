"""deal leads: the Zoho lead a deal was converted from, when it was

Zoho's conversion record (the lead's ``$converted_detail.deal``) names the deal; the hub looks it up when
it first replicates a deal and keeps it here. Null: the deal came from no conversion the hub found.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-03 23:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("opportunities") as batch:
        batch.add_column(sa.Column("lead_id", sa.String(64), nullable=True))
        batch.create_index("ix_opportunities_lead_id", ["lead_id"])


def downgrade() -> None:
    with op.batch_alter_table("opportunities") as batch:
        batch.drop_index("ix_opportunities_lead_id")
        batch.drop_column("lead_id")
