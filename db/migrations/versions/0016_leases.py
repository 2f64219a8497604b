"""leases: work that must never run twice at once (a dbt build), who holds it and until when

A dbt build's activity takes the lease before it builds and renews it while it builds. A worker cut off
from Temporal beyond the heartbeat timeout goes on building while Temporal's retry starts the build
elsewhere: the retry waits for the lease instead of building beside it.

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 17:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(255), primary_key=True),
        sa.Column("holder", sa.String(255), nullable=False),
        sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("leases")
