"""change times: when each lead record last changed in the portal, for the warehouse sync

``lead_status_changes.at`` and ``deliveries.dealer_status_at`` are the dealer's times, which may lie in
the past when a report arrives; the warehouse sync reads changes by when the portal recorded them:
``lead_status_changes.recorded_at``, ``deliveries.updated_at`` and ``withdrawals.updated_at``. Rows from
before take their latest known time.

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
    op.execute(
        "update deliveries set updated_at = coalesce(dealer_status_at, delivered_at, claimed_at, "
        "current_timestamp)"
    )
    op.execute("update withdrawals set updated_at = withdrawn_at")
    for table, column in (
        ("lead_status_changes", "recorded_at"),
        ("deliveries", "updated_at"),
        ("withdrawals", "updated_at"),
    ):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(column, existing_type=sa.DateTime(timezone=True), nullable=False)
        op.create_index(f"ix_{table}_{column}", table, [column])


def downgrade() -> None:
    for table, column in (
        ("withdrawals", "updated_at"),
        ("deliveries", "updated_at"),
        ("lead_status_changes", "recorded_at"),
    ):
        op.drop_index(f"ix_{table}_{column}", table_name=table)
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column(column)
