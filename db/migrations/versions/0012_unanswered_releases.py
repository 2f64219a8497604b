"""unanswered releases: a claim given up because its CRM never answered may be at that dealer

A delivery whose create call got no answer the hub could take for the whole retry window is released,
and the lead goes to the next dealer; but the dealer's CRM may have stored it. The release now keeps the
delivery's claim time and key, and what the dealer's CRM answered when asked to drop the lead
(``crm_outcome``: ``pending`` until it answered, ``withdrawn`` or ``recorded``; none for releases that
need no such call: a dealer that refused the lead, a lead support moved).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05 11:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("delivery_releases") as batch:
        batch.add_column(sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("idempotency_key", sa.String(200), nullable=True))
        batch.add_column(sa.Column("crm_outcome", sa.String(16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("delivery_releases") as batch:
        batch.drop_column("crm_outcome")
        batch.drop_column("idempotency_key")
        batch.drop_column("claimed_at")
