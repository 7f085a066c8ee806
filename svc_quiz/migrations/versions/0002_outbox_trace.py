"""outbox: the trace context of the transaction that wrote each event

Revision ID: 0002_outbox_trace
Revises: 0001
Create Date: 2026-12-04
"""

from mesh.outbox_migrations import downgrade_from_v3, upgrade_to_v3

revision = "0002_outbox_trace"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    upgrade_to_v3("quizzes")


def downgrade() -> None:
    downgrade_from_v3("quizzes")
