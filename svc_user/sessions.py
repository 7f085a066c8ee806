"""Sign-in sessions: login, refresh with rotation and reuse detection, logout.

Each login starts a token family. A refresh spends its token and issues the next one in the
family. The same spent token presented again within a short grace window is a retry (a double
click, a lost answer) and gets the same successor (`refresh_retry`); later, it means the token
leaked, so the whole family is revoked and both holders must sign in again (OAuth 2.0 Security
BCP, 4.14), and every verifier is told to drop the family's access tokens.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy.ext.asyncio import AsyncConnection

from elearn.user.v1 import user_service_pb2 as pb
from mesh.db import Database
from mesh.errors import Unauthenticated
from mesh.outbox import Outbox
from mesh.revocation import record_session_revoked
from svc_user import repository as repo
from svc_user.accounts import to_proto
from svc_user.login_throttle import LoginThrottle
from svc_user.passwords import PasswordHashing
from svc_user.refresh_retry import RetryAnswers
from svc_user.tokens import AccessTokens, hash_refresh_token, new_refresh_token


class Sessions:
    def __init__(
        self,
        db: Database,
        outbox: Outbox,
        hashing: PasswordHashing,
        throttle: LoginThrottle,
        access: AccessTokens,
        retries: RetryAnswers,
        *,
        refresh_ttl_days: int,
        reuse_grace_seconds: int,
    ) -> None:
        self._db = db
        self._outbox = outbox
        self._hashing = hashing
        self._throttle = throttle
        self._access = access
        self._retries = retries
        self._refresh_ttl = timedelta(days=refresh_ttl_days)
        self._grace = timedelta(seconds=reuse_grace_seconds)

    async def login(
        self, email: str, password: str, client_address: str
    ) -> tuple[pb.TokenPair, pb.User]:
        attempt = await self._throttle.admit(email, client_address)
        try:
            async with self._db.read() as conn:
                row = await repo.credentials_by_email(conn, email)
            ok = await self._hashing.verify(row.password_hash if row else None, password)
        except Exception:
            # Shed by the hash pool or cut off by an outage: the password was never checked.
            await self._throttle.not_checked(attempt)
            raise
        if not ok or row is None:
            raise Unauthenticated("wrong e-mail or password")
        await self._throttle.succeeded(attempt)
        async with self._db.transaction() as conn:
            pair = await self._issue(conn, row.id, uuid.uuid4(), list(row.roles))
        return pair, to_proto(row)

    async def refresh(self, token: str) -> pb.TokenPair:
        token_hash = hash_refresh_token(token)
        async with self._db.transaction() as conn:
            # Locked: concurrent refreshes of one token serialize here, so the first spends it
            # and stores its answer before the others look.
            row = await repo.refresh_token_for_update(conn, token_hash)
            if row is None or row.revoked_at is not None:
                raise Unauthenticated("refresh token is not valid; sign in again")
            if row.used_at is not None:
                if datetime.now(UTC) - row.used_at <= self._grace:
                    answer = await self._retries.recall(token)
                    if answer is not None:
                        return answer
                await repo.revoke_family(conn, row.family_id)
                await record_session_revoked(
                    self._outbox,
                    conn,
                    user_id=str(row.account_id),
                    session_id=str(row.family_id),
                    reason="refresh token reuse",
                )
            elif row.expires_at <= datetime.now(UTC):
                raise Unauthenticated("refresh token expired; sign in again")
            else:
                await repo.mark_refresh_token_used(conn, row.id)
                pair = await self._issue(conn, row.account_id, row.family_id, list(row.roles))
                # Before the commit, so a retry waiting on the lock finds it.
                await self._retries.remember(token, pair)
                return pair
        # Raised after the commit so the revocation sticks.
        self._outbox.notify()
        raise Unauthenticated(
            "refresh token was already used; every session of that sign-in is now revoked"
        )

    async def logout(self, token: str) -> None:
        async with self._db.transaction() as conn:
            row = await repo.refresh_token_for_update(conn, hash_refresh_token(token))
            if row is None:
                raise Unauthenticated("refresh token is not valid")
            await repo.revoke_family(conn, row.family_id)
            await record_session_revoked(
                self._outbox,
                conn,
                user_id=row.account_id,
                session_id=row.family_id,
                reason="logout",
            )
        self._outbox.notify()

    async def _issue(
        self, conn: AsyncConnection, account_id: uuid.UUID, family_id: uuid.UUID, roles: list[str]
    ) -> pb.TokenPair:
        refresh, refresh_hash = new_refresh_token()
        expires = datetime.now(UTC) + self._refresh_ttl
        await repo.insert_refresh_token(
            conn,
            family_id=family_id,
            account_id=account_id,
            token_hash=refresh_hash,
            expires_at=expires,
        )
        expire_time = Timestamp()
        expire_time.FromDatetime(expires)
        return pb.TokenPair(
            access_token=self._access.mint(str(account_id), roles, session_id=str(family_id)),
            token_type="Bearer",
            expires_in=self._access.ttl_seconds,
            refresh_token=refresh,
            refresh_token_expire_time=expire_time,
        )
