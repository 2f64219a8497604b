"""report guards: a move's guard over the report that may die with the run it ends

``hub leads reassign`` ends the run that reads an accepted lead's statuses. A report handed to that run
just before dies with it; the command looks at the ended run and makes the dealer's newest report due
again. A command that died before it looked lost that report. The command now writes a guard first
(hand the dealer's newest report on again at a time, unless cleared), which the API's sweep acts on.

Revision ID: 0022
Revises: 0021
Create Date: 2026-12-07 19:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0022"
down_revision: str | None = "0021"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "report_guards",
        sa.Column("lead_id", sa.String(length=64), nullable=False),
        sa.Column("dealer_id", sa.String(length=64), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("lead_id", "dealer_id"),
    )
    op.create_index(op.f("ix_report_guards_due_at"), "report_guards", ["due_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_report_guards_due_at"), table_name="report_guards")
    op.drop_table("report_guards")
