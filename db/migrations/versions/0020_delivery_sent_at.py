"""delivery sent at: a delivery notes when its first create went out

A run of the lead that starts over (a resent webhook after a terminate, a redrive, a reset) took its
first attempt for the first send: an ADF document went out marked "new" again, and a SOAP DMS was looked
up without the pause that lets an earlier, slow create land first. The delivery now notes when a create
under its key was first sent; a later attempt of any run is a re-send. Rows from before have none.

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-07 18:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("sent_at")
