"""scroll calls: the calls each Master Data scroll token served, claimed before each call

A customer sync's run holds its scroll token in its state. A run reset to an earlier page holds the
same token while Master Data has moved the scroll on: its next call skipped the pages the run before
the reset had taken. Each call with a token is now claimed here by count first.

Revision ID: 0024
Revises: 0023
Create Date: 2026-12-08 00:30:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0024"
down_revision: str | None = "0023"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "scroll_calls",
        sa.Column("token_digest", sa.String(length=64), nullable=False),
        sa.Column("calls", sa.Integer(), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("token_digest"),
    )
    op.create_index(op.f("ix_scroll_calls_used_at"), "scroll_calls", ["used_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_scroll_calls_used_at"), table_name="scroll_calls")
    op.drop_table("scroll_calls")
