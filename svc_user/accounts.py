"""Accounts: registration (idempotent), profiles, roles and listing."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import Row

from elearn.events.v1 import user_events_pb2
from elearn.user.v1 import user_service_pb2 as pb
from mesh.cache import Cache, CacheKind
from mesh.db import Database
from mesh.errors import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from mesh.outbox import Outbox, new_event_id
from mesh.pagination import decode_token, encode_token
from mesh.revocation import record_session_revoked
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


def _earlier_answer(rows: list[Row], key: str, digest: bytes) -> pb.User | None:
    """What an earlier registration says about this one: its answer when this is a retry of
    it, a refusal when the key or the e-mail is taken, None when neither is."""
    for row in rows:
        if row.registration_key == key:
            if row.registration_digest is not None and hmac.compare_digest(
                row.registration_digest, digest
            ):
                return to_proto(row)
            raise FailedPrecondition(
                "idempotency_key was already used for a different registration;"
                " use a new key for a new request"
            )
    if rows:
        raise AlreadyExists("an account with this e-mail already exists")
    return None


def registration_digest_key(private_key: Ed25519PrivateKey) -> bytes:
    """The HMAC key for registration digests, derived from the signing key svc_user holds
    anyway, so there is no second secret to provision."""
    raw = private_key.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    return hashlib.sha256(b"elearn registration digest\0" + raw).digest()


class Accounts:
    def __init__(
        self,
        db: Database,
        cache: Cache,
        outbox: Outbox,
        hashing: PasswordHashing,
        profile_ttl: int,
        *,
        digest_key: bytes,
    ) -> None:
        self._db = db
        self._digest_key = digest_key
        self._cache = cache
        self._outbox = outbox
        self._hashing = hashing
        self.profiles = CacheKind("user", profile_ttl)

    async def register(
        self, email: str, password: str, display_name: str, key: str, roles: set[str] | None = None
    ) -> pb.User:
        """Create an account. The same key with the same request answers the first result; the
        same key with any other request is FAILED_PRECONDITION and reveals nothing of the
        account, so a guessed key plus an e-mail reads no profile without the password."""
        granted = canonical_roles(roles or {"student"})
        digest = self._digest(email, password, display_name, granted)
        # One indexed read, before any hash: a retry or a taken e-mail costs no argon2 time
        # and is never shed by the hash pool.
        async with self._db.read() as conn:
            earlier = await repo.accounts_by_key_or_email(conn, key, email)
        answered = _earlier_answer(earlier, key, digest)
        if answered is not None:
            return answered
        password_hash = await self._hashing.hash(password)
        async with self._db.transaction() as conn:
            row = await repo.insert_account(
                conn,
                email=email,
                display_name=display_name,
                password_hash=password_hash,
                roles=granted,
                registration_key=key,
                registration_digest=digest,
            )
            if row is None:
                # Lost a race; the winner has committed, so this read sees it.
                earlier = await repo.accounts_by_key_or_email(conn, key, email)
                answered = _earlier_answer(earlier, key, digest)
                if answered is not None:
                    return answered
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

    def _digest(self, email: str, password: str, display_name: str, roles: list[str]) -> bytes:
        fields = (email, password, display_name, ",".join(roles))
        # Length-prefixed, so no two different requests share an encoding.
        canonical = b"".join(len(f.encode()).to_bytes(4, "big") + f.encode() for f in fields)
        return hmac.new(self._digest_key, canonical, hashlib.sha256).digest()

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
                if not grant:
                    # Live access tokens still carry the role: every session must drop them.
                    await record_session_revoked(
                        self._outbox, conn, user_id=user_id, session_id="", reason="role revoked"
                    )
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
        """Create the bootstrap admin. An account that already holds the e-mail becomes (or
        stays) admin only if the configured password verifies against it; otherwise whoever
        registered the address first would be promoted, so the service refuses to start."""
        async with self._db.read() as conn:
            row = await repo.credentials_by_email(conn, email)
        if row is None:
            try:
                return await self.register(
                    email,
                    password,
                    "Administrator",
                    f"bootstrap-admin:{email}",
                    roles={"student", "instructor", "admin"},
                )
            except (AlreadyExists, FailedPrecondition):
                # Someone else (another replica, a registration) took the e-mail meanwhile.
                async with self._db.read() as conn:
                    row = await repo.credentials_by_email(conn, email)
                assert row is not None
        if not await self._hashing.verify(row.password_hash, password):
            raise SystemExit(
                f"user: an account with the admin e-mail {email} already exists and the"
                " configured admin password does not match it; refusing to start rather than"
                " make it an admin. Set USER_ADMIN_EMAIL and USER_ADMIN_PASSWORD to that"
                " account's credentials, or remove the account."
            )
        user = to_proto(row)
        for role in ("instructor", "admin"):
            if ROLE_VALUES[role] not in user.roles:
                user = await self.change_role(user.user_id, role, grant=True)
        return user
