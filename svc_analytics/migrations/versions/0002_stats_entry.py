"""courses.stats_entry: each course's dashboard entry, serialized when its counters change

Revision ID: 0002_stats_entry
Revises: 0001
Create Date: 2026-12-04
"""

from alembic import op

revision = "0002_stats_entry"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # IF NOT EXISTS: 0001 creates the tables from the live models, which now hold the column.
    # Rows left NULL are filled by the first idle refresh at start-up (it refreshes every
    # course); until then the dashboard builds them from the counters.
    op.execute("ALTER TABLE analytics.courses ADD COLUMN IF NOT EXISTS stats_entry bytea")


def downgrade() -> None:
    op.execute("ALTER TABLE analytics.courses DROP COLUMN IF EXISTS stats_entry")
