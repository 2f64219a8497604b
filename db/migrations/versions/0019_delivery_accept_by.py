"""delivery accept by: a delivery keeps the SLA deadline it was given

A delivered lead's deadline to accept was computed again from the dealer's current rules wherever it
was needed (the run that follows the dealer, a later run of the lead, GET /v1/leads/{id}, the warehouse):
a rules reload (a longer SLA, a new closed day) moved the deadline of leads already waiting, while the
running timer kept the first. The delivery, and its withdrawal, now keep the deadline computed as the
dealer's CRM took the lead. Rows from before keep none and are computed as before.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 17:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table in ("deliveries", "withdrawals"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("accept_by", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    for table in ("withdrawals", "deliveries"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("accept_by")
