"""dealer reports to hand on: each report the lead's run has yet to hear of carries when it is due

The API answers a dealer's status webhook once the report is committed, then hands it to the lead's run;
``dealer_feedback.signal_due`` stays set until that run has it, so a report whose hand-over failed (the
API stopped, Temporal was away) is handed on by the API's sweep once due. Reports from before were
handed on before they were answered: none is due.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-04 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("dealer_feedback") as batch:
        batch.add_column(sa.Column("signal_due", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_dealer_feedback_signal_due", "dealer_feedback", ["signal_due"])


def downgrade() -> None:
    op.drop_index("ix_dealer_feedback_signal_due", "dealer_feedback")
    with op.batch_alter_table("dealer_feedback") as batch:
        batch.drop_column("signal_due")
