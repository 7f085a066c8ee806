"""Accounts: registration (idempotent), profiles, roles and listing."""

from __future__ import annotations

import uuid
from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Row

from elearn.events.v1 import user_events_pb2
from elearn.user.v1 import user_service_pb2 as pb
from mesh.cache import Cache, CacheKind
from mesh.db import Database
from mesh.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from mesh.outbox import Outbox, new_event_id
from mesh.pagination import decode_token, encode_token
from svc_user import repository as repo
from svc_user.passwords import PasswordHashing

ROLE_NAMES = {pb.ROLE_STUDENT: "student", pb.ROLE_INSTRUCTOR: "instructor", pb.ROLE_ADMIN: "admin"}
ROLE_VALUES = {name: value for value, name in ROLE_NAMES.items()}


def canonical_roles(names: set[str]) -> list[str]:
    return [ROLE_NAMES[v] for v in sorted(ROLE_VALUES[n] for n in names)]


def to_proto(row: Row) -> pb.User:
    created = Timestamp()
    created.FromDatetime(row.created_at)
    return pb.User(
        user_id=str(row.id),
        email=row.email,
        display_name=row.display_name,
        roles=[ROLE_VALUES[r] for r in row.roles],
        create_time=created,
    )


def _page_after(page_token: str) -> tuple[datetime, uuid.UUID] | None:
    key = decode_token(page_token, 2)
    if key is None:
        return None
    try:
        return datetime.fromisoformat(key[0]), uuid.UUID(key[1])
    except (TypeError, ValueError):
        raise InvalidArgument(
            "page_token is malformed",
            violations=[("page_token", "not a token this service issued")],
        ) from None


class Accounts:
    def __init__(
        self, db: Database, cache: Cache, outbox: Outbox, hashing: PasswordHashing, profile_ttl: int
    ) -> None:
        self._db = db
        self._cache = cache
        self._outbox = outbox
        self._hashing = hashing
        self.profiles = CacheKind("user", profile_ttl)

    async def register(
        self, email: str, password: str, display_name: str, key: str, roles: set[str] | None = None
    ) -> pb.User:
        # A retry must not pay for a second password hash: look the key up first.
        async with self._db.read() as conn:
            existing = await repo.account_by_registration_key(conn, key)
        if existing is not None:
            return self._same_registration(existing, email)
        password_hash = await self._hashing.hash(password)
        async with self._db.transaction() as conn:
            row = await repo.insert_account(
                conn,
                email=email,
                display_name=display_name,
                password_hash=password_hash,
                roles=canonical_roles(roles or {"student"}),
                registration_key=key,
            )
            if row is None:
                existing = await repo.account_by_registration_key(conn, key)
                if existing is not None:
                    return self._same_registration(existing, email)
                raise AlreadyExists("an account with this e-mail already exists")
            user = to_proto(row)
            event_id, occurred = new_event_id()
            event = user_events_pb2.UserRegistered(
                event_id=event_id,
                occur_time=occurred,
                user_id=user.user_id,
                email=user.email,
                display_name=user.display_name,
                roles=user.roles,
            )
            await self._outbox.add(conn, "elearn.user.user_registered", event_id, event)
        self._outbox.notify()
        return user

    @staticmethod
    def _same_registration(existing: Row, email: str) -> pb.User:
        if existing.email != email:
            raise FailedPrecondition(
                "idempotency_key was already used for a different registration"
            )
        return to_proto(existing)

    async def get(self, user_id: str) -> pb.User:
        async def load() -> bytes | None:
            async with self._db.read() as conn:
                row = await repo.account_by_id(conn, uuid.UUID(user_id))
            return None if row is None else to_proto(row).SerializeToString()

        data = await self._cache.get_or_load(self.profiles, user_id, load)
        if data is None:
            raise NotFound(f"user {user_id} not found")
        return pb.User.FromString(data)

    async def rename(self, user_id: str, display_name: str) -> pb.User:
        async with self._db.transaction() as conn:
            row = await repo.set_display_name(conn, uuid.UUID(user_id), display_name)
        if row is None:
            raise NotFound(f"user {user_id} not found")
        await self._cache.invalidate(self.profiles, user_id)
        return to_proto(row)

    async def change_role(self, user_id: str, role: str, *, grant: bool) -> pb.User:
        async with self._db.transaction() as conn:
            row = await repo.account_by_id_for_update(conn, uuid.UUID(user_id))
            if row is None:
                raise NotFound(f"user {user_id} not found")
            held = set(row.roles)
            wanted = held | {role} if grant else held - {role}
            if wanted != held:
                row = await repo.set_roles(conn, row.id, canonical_roles(wanted))
                assert row is not None
                event_id, occurred = new_event_id()
                kind = user_events_pb2.RoleGranted if grant else user_events_pb2.RoleRevoked
                event = kind(
                    event_id=event_id, occur_time=occurred, user_id=user_id, role=ROLE_VALUES[role]
                )
                subject = "elearn.user.role_granted" if grant else "elearn.user.role_revoked"
                await self._outbox.add(conn, subject, event_id, event)
        self._outbox.notify()
        await self._cache.invalidate(self.profiles, user_id)
        return to_proto(row)

    async def list(
        self, page_size: int, page_token: str, role: str | None
    ) -> tuple[list[pb.User], str]:
        after = _page_after(page_token)
        async with self._db.read() as conn:
            rows = await repo.list_accounts(conn, limit=page_size + 1, after=after, role=role)
        more = len(rows) > page_size
        rows = rows[:page_size]
        token = ""
        if more:
            last = rows[-1]
            token = encode_token([last.created_at.isoformat(), str(last.id)])
        return [to_proto(r) for r in rows], token

    async def ensure_admin(self, email: str, password: str) -> pb.User:
        """Create the bootstrap admin if missing; make sure it holds the admin role."""
        async with self._db.read() as conn:
            row = await repo.credentials_by_email(conn, email)
        if row is None:
            try:
                user = await self.register(
                    email,
                    password,
                    "Administrator",
                    f"bootstrap-admin:{email}",
                    roles={"student", "instructor", "admin"},
                )
            except AlreadyExists:
                async with self._db.read() as conn:
                    row = await repo.credentials_by_email(conn, email)
                assert row is not None
                user = to_proto(row)
        else:
            user = to_proto(row)
        for role in ("instructor", "admin"):
            if ROLE_VALUES[role] not in user.roles:
                user = await self.change_role(user.user_id, role, grant=True)
        return user
