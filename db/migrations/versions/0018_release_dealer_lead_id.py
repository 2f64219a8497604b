"""release dealer lead id: a delivery support moved away keeps the dealer CRM's id of the lead

A delivered lead support moves to another dealer is released owing a drop: the first dealer's CRM is
asked to drop it. The release now keeps that CRM's id of the lead, so the drop names it (as a withdrawal
after a missed SLA does) instead of looking the lead up by its external id, which a CRM may not answer.
Releases from before keep none and are looked up as before.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_releases") as batch:
        batch.add_column(sa.Column("dealer_lead_id", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("delivery_releases") as batch:
        batch.drop_column("dealer_lead_id")
