"""dealer reports per delivery: a dealer that gets a lead back reports about a new delivery

Support may send a lead back to a dealer that had it before (``hub leads reassign``). A report was one
row per (lead, dealer, status), so that dealer's acceptance of the lead it got back was taken for a
repeat of its earlier one and changed nothing. ``dealer_feedback.delivery_claimed_at`` names the
delivery a report is about (when it was claimed), and ``withdrawals.claimed_at`` keeps it for a late
report about a delivery the lead lost. Rows from before carry none and are left as they are (their keys
in bronze stay the same); ``db.feedback`` takes a report from before that arrived after the claim of the
lead's current delivery at that dealer for one about that delivery, so a resent report is still a repeat.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 08:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ["lead_id", "dealer_id", "status"]


def upgrade() -> None:
    with op.batch_alter_table("withdrawals") as batch:
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
    with op.batch_alter_table("dealer_feedback") as batch:
        batch.add_column(sa.Column("delivery_claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch.drop_constraint("uq_dealer_feedback", type_="unique")
        batch.create_unique_constraint("uq_dealer_feedback", [*COLUMNS, "delivery_claimed_at"])


def downgrade() -> None:
    # Only the first report of each (lead, dealer, status) fits the old key: the later ones go.
    op.execute(
        "delete from dealer_feedback where id not in"
        " (select min(id) from dealer_feedback group by lead_id, dealer_id, status)"
    )
    with op.batch_alter_table("dealer_feedback") as batch:
        batch.drop_constraint("uq_dealer_feedback", type_="unique")
        batch.create_unique_constraint("uq_dealer_feedback", COLUMNS)
        batch.drop_column("delivery_claimed_at")
    with op.batch_alter_table("withdrawals") as batch:
        batch.drop_column("claimed_at")
