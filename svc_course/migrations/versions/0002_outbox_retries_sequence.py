"""outbox: per-aggregate sequence numbers, attempts with back-off, dead-letter table

Revision ID: 0002_outbox
Revises: 0001
Create Date: 2026-12-04
"""

from mesh.outbox_migrations import downgrade_from_v2, upgrade_to_v2

revision = "0002_outbox"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    upgrade_to_v2("courses")


def downgrade() -> None:
    downgrade_from_v2("courses")
