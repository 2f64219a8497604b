"""dealer SLA: opening hours, weights, the dealer's reported status, withdrawals

Dealers gain opening hours, an SLA to accept, a status poll interval, a weight and the credit of the
weighted rotation. A delivery keeps the newest status its dealer reported. A lead keeps what routing looked at (state, city, model). ``withdrawals`` keeps every
delivery a lead lost when its dealer missed the SLA; ``dealer_feedback`` every status a dealer reported.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dealers", schema=None) as batch_op:
        batch_op.add_column(sa.Column("hours", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("sla_minutes", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("status_poll_seconds", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("weight", sa.Integer(), nullable=False, server_default="1"))
        batch_op.add_column(sa.Column("rotation_credit", sa.Integer(), nullable=False, server_default="0"))
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("routing_profile", sa.JSON(), nullable=True))
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("dealer_status", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("dealer_status_at", sa.DateTime(timezone=True), nullable=True))
    op.create_table(
        "withdrawals",
        sa.Column("lead_id", sa.String(length=64), nullable=False),
        sa.Column("dealer_id", sa.String(length=64), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("routing_reason", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("dealer_lead_id", sa.String(length=200), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("crm_outcome", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["dealer_id"], ["dealers.id"]),
        sa.PrimaryKeyConstraint("lead_id", "dealer_id"),
    )
    op.create_index("ix_withdrawals_day", "withdrawals", ["day"])
    op.create_table(
        "dealer_feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("lead_id", sa.String(length=64), nullable=False),
        sa.Column("dealer_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("lead_id", "dealer_id", "status", name="uq_dealer_feedback"),
    )
    op.create_index("ix_dealer_feedback_lead_id", "dealer_feedback", ["lead_id"])


def downgrade() -> None:
    op.drop_index("ix_dealer_feedback_lead_id", table_name="dealer_feedback")
    op.drop_table("dealer_feedback")
    op.drop_index("ix_withdrawals_day", table_name="withdrawals")
    op.drop_table("withdrawals")
    with op.batch_alter_table("deliveries", schema=None) as batch_op:
        batch_op.drop_column("dealer_status_at")
        batch_op.drop_column("dealer_status")
    with op.batch_alter_table("leads", schema=None) as batch_op:
        batch_op.drop_column("routing_profile")
    with op.batch_alter_table("dealers", schema=None) as batch_op:
        batch_op.drop_column("rotation_credit")
        batch_op.drop_column("weight")
        batch_op.drop_column("status_poll_seconds")
        batch_op.drop_column("sla_minutes")
        batch_op.drop_column("hours")
