"""delivery claims: a lead's delivery decision is kept from the moment it is taken

A row of ``deliveries`` used to be written after the dealer's CRM took the lead. It is now written when
routing claims the dealer (status ``claimed``, with the idempotency key and the capacity it reserves)
and becomes ``delivered`` once the CRM confirmed. Rows written before this revision were deliveries:
they keep that status and get the key they were sent with.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-03 07:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("status", sa.String(length=16), nullable=False, server_default="delivered")
        )
        batch_op.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch_op.alter_column("dealer_lead_id", existing_type=sa.String(length=200), nullable=True)
        batch_op.alter_column("delivered_at", existing_type=sa.DateTime(timezone=True), nullable=True)
    # The key the released code sent (activities/leads.py before this revision): lead-<lead>-<dealer>.
    op.execute(
        "update deliveries set idempotency_key = 'lead-' || lead_id || '-' || dealer_id,"
        " claimed_at = delivered_at where idempotency_key is null"
    )


def downgrade() -> None:
    op.execute("delete from deliveries where status <> 'delivered'")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.alter_column("delivered_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        batch_op.alter_column("dealer_lead_id", existing_type=sa.String(length=200), nullable=False)
        batch_op.drop_column("reason")
        batch_op.drop_column("claimed_at")
        batch_op.drop_column("idempotency_key")
        batch_op.drop_column("status")
