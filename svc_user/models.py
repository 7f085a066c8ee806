"""svc_user's tables, all in the `users` schema."""

from __future__ import annotations

from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Index,
    LargeBinary,
    MetaData,
    Table,
    Text,
    Uuid,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY

from mesh.outbox import outbox_table

SCHEMA = "users"
metadata = MetaData(schema=SCHEMA)

accounts = Table(
    "accounts",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=text("gen_random_uuid()")),
    Column("email", Text, nullable=False, unique=True),
    Column("display_name", Text, nullable=False),
    Column("password_hash", Text, nullable=False),
    Column("roles", ARRAY(Text), nullable=False, server_default=text("'{student}'")),
    # The client's idempotency key for the Register call that created the account.
    Column("registration_key", Text, unique=True),
    # HMAC of that call's canonical fields, password included, under a key derived from the
    # signing key: a retry must match it, and a leaked table holds no fast password hash.
    Column("registration_digest", LargeBinary),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("updated_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    # ListUsers pages newest first by (created_at, id); role filters use the GIN index.
    Index("ix_accounts_created_id", text("created_at DESC"), text("id DESC")),
    Index("ix_accounts_roles", "roles", postgresql_using="gin"),
)

refresh_tokens = Table(
    "refresh_tokens",
    metadata,
    Column("id", Uuid, primary_key=True, server_default=text("gen_random_uuid()")),
    # Every token descending from one login shares a family; reuse revokes the family.
    Column("family_id", Uuid, nullable=False),
    Column("account_id", Uuid, ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    # SHA-256 of the token: the token is 256 random bits, so a slow hash would add nothing.
    Column("token_hash", LargeBinary, nullable=False, unique=True),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True)),
    Column("revoked_at", DateTime(timezone=True)),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Index("ix_refresh_tokens_family", "family_id"),
    Index("ix_refresh_tokens_account", "account_id"),
)

# When a refresh token stopped being usable: the earliest of expiry, use and revocation
# (LEAST skips NULLs). The purge deletes by it, through the expression index below.
refresh_token_dead_since = func.least(
    refresh_tokens.c.expires_at, refresh_tokens.c.used_at, refresh_tokens.c.revoked_at
)
Index("ix_refresh_tokens_dead_since", refresh_token_dead_since)

outbox = outbox_table(metadata)
