"""registration digest; index for purging dead refresh tokens

Revision ID: 0003
Revises: 0002_outbox
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002_outbox"
branch_labels = None
depends_on = None

S = "users"


def upgrade() -> None:
    # Rows registered before have no digest, so a retry of them is refused, never answered.
    op.add_column("accounts", sa.Column("registration_digest", sa.LargeBinary()), schema=S)
    op.create_index(
        "ix_refresh_tokens_dead_since",
        "refresh_tokens",
        [sa.text("LEAST(expires_at, used_at, revoked_at)")],
        schema=S,
    )


def downgrade() -> None:
    op.drop_index("ix_refresh_tokens_dead_since", "refresh_tokens", schema=S)
    op.drop_column("accounts", "registration_digest", schema=S)
