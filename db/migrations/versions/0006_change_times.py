"""change times: when each lead record last changed in the portal, for the warehouse sync; releases

``lead_status_changes.at`` and ``deliveries.dealer_status_at`` are the dealer's times, which may lie in
the past when a report arrives; the warehouse sync reads changes by when the portal recorded them:
``lead_status_changes.recorded_at``, ``deliveries.updated_at`` and ``withdrawals.updated_at``. Rows from
before take their latest known time. ``delivery_releases`` keeps each delivery that routing or support
took back without an SLA miss (its decision row is replaced), so the warehouse sees it end.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03 19:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for table, column in (
        ("lead_status_changes", "recorded_at"),
        ("deliveries", "updated_at"),
        ("withdrawals", "updated_at"),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column(column, sa.DateTime(timezone=True), nullable=True))
    op.execute("update lead_status_changes set recorded_at = at")
    # The latest of a delivery's times (a dealer's report may carry a time before its delivery).
    op.execute("update deliveries set updated_at = claimed_at")
    for column in ("delivered_at", "dealer_status_at"):
        op.execute(
            f"update deliveries set updated_at = {column} where {column} is not null"
            f" and (updated_at is null or {column} > updated_at)"
        )
    op.execute("update withdrawals set updated_at = withdrawn_at")
    # A decision without any time (none is written so): the first sync, which reads everything, has it.
    op.execute("update deliveries set updated_at = '1970-01-01 00:00:00.000000' where updated_at is null")
    for table, column in (
        ("lead_status_changes", "recorded_at"),
        ("deliveries", "updated_at"),
        ("withdrawals", "updated_at"),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(column, existing_type=sa.DateTime(timezone=True), nullable=False)
        op.create_index(f"ix_{table}_{column}", table, [column])
    op.create_table(
        "delivery_releases",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("lead_id", sa.String(length=64), nullable=False),
        sa.Column("dealer_id", sa.String(length=64), nullable=False),
        sa.Column("status_before", sa.String(length=16), nullable=False),
        sa.Column("routing_reason", sa.Text(), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_delivery_releases_lead_id", "delivery_releases", ["lead_id"])
    op.create_index("ix_delivery_releases_released_at", "delivery_releases", ["released_at"])


def downgrade() -> None:
    op.drop_table("delivery_releases")
    for table, column in (
        ("withdrawals", "updated_at"),
        ("deliveries", "updated_at"),
        ("lead_status_changes", "recorded_at"),
    ):
        op.drop_index(f"ix_{table}_{column}", table_name=table)
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column(column)
