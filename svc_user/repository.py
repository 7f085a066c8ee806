"""Every SQL statement of svc_user."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Row, and_, insert, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from svc_user.models import accounts, refresh_tokens

_ACCOUNT_COLUMNS = (
    accounts.c.id,
    accounts.c.email,
    accounts.c.display_name,
    accounts.c.roles,
    accounts.c.created_at,
)


async def account_by_id(conn: AsyncConnection, account_id: uuid.UUID) -> Row | None:
    stmt = select(*_ACCOUNT_COLUMNS).where(accounts.c.id == account_id)
    return (await conn.execute(stmt)).first()


async def account_by_id_for_update(conn: AsyncConnection, account_id: uuid.UUID) -> Row | None:
    stmt = select(*_ACCOUNT_COLUMNS).where(accounts.c.id == account_id).with_for_update()
    return (await conn.execute(stmt)).first()


async def credentials_by_email(conn: AsyncConnection, email: str) -> Row | None:
    stmt = select(*_ACCOUNT_COLUMNS, accounts.c.password_hash).where(accounts.c.email == email)
    return (await conn.execute(stmt)).first()


async def account_by_registration_key(conn: AsyncConnection, key: str) -> Row | None:
    stmt = select(*_ACCOUNT_COLUMNS).where(accounts.c.registration_key == key)
    return (await conn.execute(stmt)).first()


async def email_taken(conn: AsyncConnection, email: str) -> bool:
    stmt = select(accounts.c.id).where(accounts.c.email == email)
    return (await conn.execute(stmt)).first() is not None


async def insert_account(
    conn: AsyncConnection,
    *,
    email: str,
    display_name: str,
    password_hash: str,
    roles: list[str],
    registration_key: str | None,
) -> Row | None:
    """The new account, or None when the e-mail or the registration key is taken."""
    stmt = (
        pg_insert(accounts)
        .values(
            email=email,
            display_name=display_name,
            password_hash=password_hash,
            roles=roles,
            registration_key=registration_key,
        )
        .on_conflict_do_nothing()
        .returning(*_ACCOUNT_COLUMNS)
    )
    return (await conn.execute(stmt)).first()


async def set_display_name(conn: AsyncConnection, account_id: uuid.UUID, name: str) -> Row | None:
    stmt = (
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(display_name=name, updated_at=datetime.now().astimezone())
        .returning(*_ACCOUNT_COLUMNS)
    )
    return (await conn.execute(stmt)).first()


async def set_roles(conn: AsyncConnection, account_id: uuid.UUID, roles: list[str]) -> Row | None:
    stmt = (
        update(accounts)
        .where(accounts.c.id == account_id)
        .values(roles=roles, updated_at=datetime.now().astimezone())
        .returning(*_ACCOUNT_COLUMNS)
    )
    return (await conn.execute(stmt)).first()


async def list_accounts(
    conn: AsyncConnection, *, limit: int, after: tuple[datetime, uuid.UUID] | None, role: str | None
) -> list[Row]:
    """Newest first, keyset-paged on (created_at, id) by ix_accounts_created_id."""
    stmt = select(*_ACCOUNT_COLUMNS).order_by(accounts.c.created_at.desc(), accounts.c.id.desc())
    if after is not None:
        stmt = stmt.where(tuple_(accounts.c.created_at, accounts.c.id) < tuple_(*after))
    if role is not None:
        stmt = stmt.where(accounts.c.roles.contains([role]))
    return list((await conn.execute(stmt.limit(limit))).all())


async def insert_refresh_token(
    conn: AsyncConnection,
    *,
    family_id: uuid.UUID,
    account_id: uuid.UUID,
    token_hash: bytes,
    expires_at: datetime,
) -> None:
    await conn.execute(
        insert(refresh_tokens).values(
            family_id=family_id, account_id=account_id, token_hash=token_hash, expires_at=expires_at
        )
    )


async def refresh_token_for_update(conn: AsyncConnection, token_hash: bytes) -> Row | None:
    """The token and its account's roles, locked so concurrent refreshes serialize."""
    stmt = (
        select(
            refresh_tokens.c.id,
            refresh_tokens.c.family_id,
            refresh_tokens.c.account_id,
            refresh_tokens.c.expires_at,
            refresh_tokens.c.used_at,
            refresh_tokens.c.revoked_at,
            accounts.c.roles,
        )
        .join(accounts, accounts.c.id == refresh_tokens.c.account_id)
        .where(refresh_tokens.c.token_hash == token_hash)
        .with_for_update(of=refresh_tokens)
    )
    return (await conn.execute(stmt)).first()


async def mark_refresh_token_used(conn: AsyncConnection, token_id: uuid.UUID) -> None:
    await conn.execute(
        update(refresh_tokens)
        .where(refresh_tokens.c.id == token_id)
        .values(used_at=datetime.now().astimezone())
    )


async def revoke_family(conn: AsyncConnection, family_id: uuid.UUID) -> int:
    result = await conn.execute(
        update(refresh_tokens)
        .where(and_(refresh_tokens.c.family_id == family_id, refresh_tokens.c.revoked_at.is_(None)))
        .values(revoked_at=datetime.now().astimezone())
    )
    return int(result.rowcount or 0)


async def live_refresh_tokens(conn: AsyncConnection, account_id: uuid.UUID) -> int:
    """How many of the account's refresh tokens could still be used (for tests and ops)."""
    stmt = select(refresh_tokens.c.id).where(
        and_(
            refresh_tokens.c.account_id == account_id,
            refresh_tokens.c.revoked_at.is_(None),
            refresh_tokens.c.used_at.is_(None),
            or_(refresh_tokens.c.expires_at > datetime.now().astimezone()),
        )
    )
    return len((await conn.execute(stmt)).all())
