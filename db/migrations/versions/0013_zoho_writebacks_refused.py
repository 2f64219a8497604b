"""zoho writebacks refused: a lead's fields Zoho refused for good wait for support's redrive

The lead's run goes on when Zoho refuses a write-back for good (its SLA clock must not wait on Zoho), so
the fields it could not write are kept here, one row per lead, until support fixes the cause and runs
``hub parked redrive``.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05 16:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "zoho_writebacks_refused",
        sa.Column("lead_id", sa.String(64), primary_key=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("refused_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("redrives", sa.Integer(), nullable=False),
    )
    op.create_index("ix_zoho_writebacks_refused_refused_at", "zoho_writebacks_refused", ["refused_at"])


def downgrade() -> None:
    op.drop_index("ix_zoho_writebacks_refused_refused_at", table_name="zoho_writebacks_refused")
    op.drop_table("zoho_writebacks_refused")
