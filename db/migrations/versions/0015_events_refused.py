"""events refused: a lead event a subscriber refused for good waits for support's redrive

The lead's run goes on when a subscriber refuses its event for good, or does not take it within the
event's retry window, so the event is kept here, one row per event and subscriber, until support fixes
the cause and runs ``hub parked redrive``.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-06 03:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "events_refused",
        sa.Column("event_id", sa.String(64), primary_key=True),
        sa.Column("subscriber_key", sa.String(64), primary_key=True),
        sa.Column("subscriber", sa.String(255), nullable=False),
        sa.Column("event_type", sa.String(64), nullable=False),
        sa.Column("lead_id", sa.String(64), nullable=True),
        sa.Column("event", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("refused_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("redrives", sa.Integer(), nullable=False),
    )
    op.create_index("ix_events_refused_refused_at", "events_refused", ["refused_at"])


def downgrade() -> None:
    op.drop_index("ix_events_refused_refused_at", table_name="events_refused")
    op.drop_table("events_refused")
