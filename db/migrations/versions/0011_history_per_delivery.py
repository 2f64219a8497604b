"""lead history per delivery: a lead sent back to a dealer it left goes through its statuses again

The lead's history kept one row per (lead, status, dealer), so retries add nothing. A lead support sends
back to a dealer that had it before (``hub leads reassign``) is delivered, and accepted, again: those
rows were taken for the first delivery's and left out, so the history (and the warehouse's latest
status of the lead) stopped at the reassignment. ``lead_status_changes.delivery_claimed_at`` names the
delivery a status is about (when it was claimed). Rows from before carry none and are left as they are;
``db.lead_status`` takes one recorded after the current delivery's claim for one about that delivery,
so a write retried across the upgrade still adds nothing.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05 10:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COLUMNS = ["lead_id", "status", "dealer_id"]


def upgrade() -> None:
    with op.batch_alter_table("lead_status_changes") as batch:
        batch.add_column(sa.Column("delivery_claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch.drop_constraint("uq_lead_status_change", type_="unique")
        batch.create_unique_constraint("uq_lead_status_change", [*COLUMNS, "delivery_claimed_at"])


def downgrade() -> None:
    # Only the first row of each (lead, status, dealer) fits the old key: the later deliveries' go.
    op.execute(
        "delete from lead_status_changes where id not in"
        " (select min(id) from lead_status_changes group by lead_id, status, dealer_id)"
    )
    with op.batch_alter_table("lead_status_changes") as batch:
        batch.drop_constraint("uq_lead_status_change", type_="unique")
        batch.create_unique_constraint("uq_lead_status_change", COLUMNS)
        batch.drop_column("delivery_claimed_at")
