"""Every SQL statement of svc_user."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Row, and_, delete, insert, or_, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from svc_user.models import accounts, refresh_token_dead_since, refresh_tokens

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


async def accounts_by_key_or_email(conn: AsyncConnection, key: str, email: str) -> list[Row]:
    """The account registered under this idempotency key and the one holding this e-mail
    (at most two rows, or one when they are the same), with what binds the key to a request."""
    stmt = select(
        *_ACCOUNT_COLUMNS, accounts.c.registration_key, accounts.c.registration_digest
    ).where(or_(accounts.c.registration_key == key, accounts.c.email == email))
    return list((await conn.execute(stmt)).all())


async def insert_account(
    conn: AsyncConnection,
    *,
    email: str,
    display_name: str,
    password_hash: str,
    roles: list[str],
    registration_key: str | None,
    registration_digest: bytes | None,
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
            registration_digest=registration_digest,
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


async def delete_dead_refresh_tokens(conn: AsyncConnection, *, before: datetime, limit: int) -> int:
    """Delete up to `limit` tokens expired, spent or revoked before `before`; uses the
    dead-since index, and skips rows a concurrent refresh holds."""
    doomed = (
        select(refresh_tokens.c.id)
        .where(refresh_token_dead_since < before)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    result = await conn.execute(delete(refresh_tokens).where(refresh_tokens.c.id.in_(doomed)))
    return int(result.rowcount or 0)
