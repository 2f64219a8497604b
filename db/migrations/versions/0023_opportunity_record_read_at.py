"""opportunity record read at: a deal notes when the Zoho record it holds was read

Zoho's times have second precision, so a record read at the deal's own time is taken as the last word
of that second. A late attempt of an older read of the same second (a frozen worker's, or a run reset
to after its read) could then move the deal back to that second's first move. The deal now notes when
the record it holds was read (the worker's clock), and a read of the same second counts only where it
was made later. Rows from before have none: the next read of their second is taken, as before.

Revision ID: 0023
Revises: 0022
Create Date: 2026-12-07 21:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0023"
down_revision: str | None = "0022"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("opportunities") as batch:
        batch.add_column(sa.Column("record_read_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("opportunities") as batch:
        batch.drop_column("record_read_at")
