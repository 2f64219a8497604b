"""lead fallback owner set: a lead notes when Zoho's Owner became its fallback owner

A lead no dealer accepted goes to a fallback owner in Zoho. A later run of the lead (a resent webhook
after a terminate, a redrive) handed it over again and wrote Zoho's Owner again, over an owner sales
had set by hand since. The lead now notes when Zoho took the fallback owner; a later hand-over leaves
Zoho's Owner as it is, until support moves the lead (``hub leads reassign`` clears the note). Rows from
before have none: their next hand-over writes the owner, as before.

Revision ID: 0021
Revises: 0020
Create Date: 2026-12-07 18:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.add_column(sa.Column("fallback_owner_set_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.drop_column("fallback_owner_set_at")
