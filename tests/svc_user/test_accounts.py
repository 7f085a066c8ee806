"""Registration, profiles, roles and listing over gRPC against the real service."""

from __future__ import annotations

import asyncio
import uuid

import grpc
import psycopg
from google.protobuf.field_mask_pb2 import FieldMask

from elearn.user.v1 import user_service_pb2 as pb
from elearn.user.v1.user_service_pb2_grpc import UserServiceStub
from tests.conftest import Account, bearer, make_account, unique_email
from tests.grpc_assert import fails_with, violated_fields

OK_PASSWORD = "correct horse"


def register_request(
    email: str | None = None, key: str | None = None, **over: str
) -> pb.RegisterRequest:
    fields = {
        "email": email or unique_email(),
        "password": OK_PASSWORD,
        "display_name": "Ada",
        "idempotency_key": key or uuid.uuid4().hex,
    }
    fields.update(over)
    return pb.RegisterRequest(**fields)


def account_rows(sql: psycopg.Connection, email: str) -> int:
    row = sql.execute("SELECT count(*) FROM users.accounts WHERE email = %s", (email,)).fetchone()
    assert row is not None
    return int(row[0])


async def test_register_login_whoami(users: UserServiceStub) -> None:
    email = unique_email("Ada")
    registered = await users.Register(register_request(email=email))
    assert registered.user.email == email.lower()
    assert list(registered.user.roles) == [pb.ROLE_STUDENT]
    login = await users.Login(pb.LoginRequest(email=email.upper(), password=OK_PASSWORD))
    assert login.tokens.token_type == "Bearer" and login.tokens.expires_in == 900
    me = await users.GetMe(pb.GetMeRequest(), metadata=bearer(login.tokens.access_token))
    assert me.user.user_id == registered.user.user_id


async def test_register_retry_with_same_key_returns_same_account(
    users: UserServiceStub, sql: psycopg.Connection
) -> None:
    request = register_request()
    first, second = await asyncio.gather(users.Register(request), users.Register(request))
    third = await users.Register(request)
    assert first.user.user_id == second.user.user_id == third.user.user_id
    assert account_rows(sql, request.email) == 1


async def test_same_key_for_a_different_registration_is_refused(
    users: UserServiceStub, sql: psycopg.Connection
) -> None:
    key = uuid.uuid4().hex
    await users.Register(register_request(key=key))
    other = unique_email()
    await fails_with(
        grpc.StatusCode.FAILED_PRECONDITION,
        users.Register(register_request(email=other, key=key)),
        "idempotency_key",
    )
    assert account_rows(sql, other) == 0


async def test_duplicate_email_is_already_exists(users: UserServiceStub) -> None:
    email = unique_email()
    await users.Register(register_request(email=email))
    await fails_with(
        grpc.StatusCode.ALREADY_EXISTS, users.Register(register_request(email=email)), "e-mail"
    )


async def test_concurrent_registrations_of_one_email_make_one_account(
    users: UserServiceStub, sql: psycopg.Connection
) -> None:
    email = unique_email()
    results = await asyncio.gather(
        *(users.Register(register_request(email=email)) for _ in range(8)), return_exceptions=True
    )
    ok = [r for r in results if isinstance(r, pb.RegisterResponse)]
    refused = [r for r in results if isinstance(r, grpc.aio.AioRpcError)]
    assert len(ok) == 1 and len(refused) == 7
    assert all(r.code() == grpc.StatusCode.ALREADY_EXISTS for r in refused)
    assert account_rows(sql, email) == 1


async def test_bad_registrations_name_every_bad_field_and_write_nothing(
    users: UserServiceStub, sql: psycopg.Connection
) -> None:
    cases = {
        "empty": (pb.RegisterRequest(), {"email", "password", "display_name", "idempotency_key"}),
        "malformed email": (register_request(email="not-an-email"), {"email"}),
        "short password": (register_request(password="short"), {"password"}),
        "huge password": (register_request(password="p" * 10_000), {"password"}),
        "huge name": (register_request(display_name="n" * 1_000), {"display_name"}),
        "control chars": (register_request(display_name="a\x00b"), {"display_name"}),
        "huge key": (register_request(key="k" * 1_000), {"idempotency_key"}),
    }
    for name, (request, fields) in cases.items():
        error = await fails_with(grpc.StatusCode.INVALID_ARGUMENT, users.Register(request))
        assert set(violated_fields(error)) == fields, name
        if request.email:
            assert account_rows(sql, request.email.lower()) == 0, name


async def test_oversized_message_is_refused_and_the_service_keeps_serving(
    users: UserServiceStub,
) -> None:
    await fails_with(
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        users.Register(register_request(display_name="x" * (5 * 1024 * 1024))),
    )
    await users.Register(register_request())


async def test_update_me_changes_only_masked_fields(
    users: UserServiceStub, account: Account
) -> None:
    updated = await users.UpdateMe(
        pb.UpdateMeRequest(
            user=pb.User(display_name="  Grace  ", email="hijack@x.org"),
            update_mask=FieldMask(paths=["display_name"]),
        ),
        metadata=account.auth,
    )
    assert updated.user.display_name == "Grace"
    assert updated.user.email == account.user.email
    me = await users.GetMe(pb.GetMeRequest(), metadata=account.auth)
    assert me.user.display_name == "Grace", "cached profile must be invalidated"


async def test_update_me_refuses_bad_masks(users: UserServiceStub, account: Account) -> None:
    for mask in ([], ["email"], ["roles"]):
        await fails_with(
            grpc.StatusCode.INVALID_ARGUMENT,
            users.UpdateMe(
                pb.UpdateMeRequest(
                    user=pb.User(display_name="X"), update_mask=FieldMask(paths=mask)
                ),
                metadata=account.auth,
            ),
            "update_mask",
        )


async def test_signed_in_methods_refuse_missing_or_forged_tokens(users: UserServiceStub) -> None:
    await fails_with(
        grpc.StatusCode.UNAUTHENTICATED, users.GetMe(pb.GetMeRequest()), "access token"
    )
    await fails_with(
        grpc.StatusCode.UNAUTHENTICATED,
        users.GetMe(pb.GetMeRequest(), metadata=bearer("not.a.jwt")),
    )
    await fails_with(
        grpc.StatusCode.UNAUTHENTICATED,
        users.GetMe(pb.GetMeRequest(), metadata=(("authorization", "Basic abc"),)),
    )


async def test_students_cannot_read_others_or_administer(
    users: UserServiceStub, account: Account
) -> None:
    other = await make_account(users, "other")
    await fails_with(
        grpc.StatusCode.PERMISSION_DENIED,
        users.GetUser(pb.GetUserRequest(user_id=other.user.user_id), metadata=account.auth),
    )
    own = await users.GetUser(
        pb.GetUserRequest(user_id=account.user.user_id), metadata=account.auth
    )
    assert own.user.email == account.user.email
    for call in (
        users.ListUsers(pb.ListUsersRequest(), metadata=account.auth),
        users.GrantRole(
            pb.GrantRoleRequest(user_id=account.user.user_id, role=pb.ROLE_ADMIN),
            metadata=account.auth,
        ),
        users.RevokeRole(
            pb.RevokeRoleRequest(user_id=other.user.user_id, role=pb.ROLE_STUDENT),
            metadata=account.auth,
        ),
    ):
        await fails_with(grpc.StatusCode.PERMISSION_DENIED, call, "admin")


async def test_admin_grants_and_revokes_roles(
    users: UserServiceStub, admin: Account, account: Account
) -> None:
    uid = account.user.user_id
    granted = await users.GrantRole(
        pb.GrantRoleRequest(user_id=uid, role=pb.ROLE_INSTRUCTOR), metadata=admin.auth
    )
    assert list(granted.user.roles) == [pb.ROLE_STUDENT, pb.ROLE_INSTRUCTOR]
    again = await users.GrantRole(
        pb.GrantRoleRequest(user_id=uid, role=pb.ROLE_INSTRUCTOR), metadata=admin.auth
    )
    assert list(again.user.roles) == [pb.ROLE_STUDENT, pb.ROLE_INSTRUCTOR]
    seen = await users.GetUser(pb.GetUserRequest(user_id=uid), metadata=admin.auth)
    assert pb.ROLE_INSTRUCTOR in seen.user.roles, "profile cache must be invalidated"
    revoked = await users.RevokeRole(
        pb.RevokeRoleRequest(user_id=uid, role=pb.ROLE_INSTRUCTOR), metadata=admin.auth
    )
    assert list(revoked.user.roles) == [pb.ROLE_STUDENT]
    await fails_with(
        grpc.StatusCode.FAILED_PRECONDITION,
        users.RevokeRole(
            pb.RevokeRoleRequest(user_id=uid, role=pb.ROLE_STUDENT), metadata=admin.auth
        ),
    )


async def test_role_admin_edges(users: UserServiceStub, admin: Account) -> None:
    await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        users.GrantRole(
            pb.GrantRoleRequest(user_id="nope", role=pb.ROLE_ADMIN), metadata=admin.auth
        ),
        "UUID",
    )
    await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        users.GrantRole(
            pb.GrantRoleRequest(user_id=str(uuid.uuid4()), role=pb.ROLE_UNSPECIFIED),
            metadata=admin.auth,
        ),
        "role",
    )
    await fails_with(
        grpc.StatusCode.NOT_FOUND,
        users.GrantRole(
            pb.GrantRoleRequest(user_id=str(uuid.uuid4()), role=pb.ROLE_ADMIN), metadata=admin.auth
        ),
    )
    await fails_with(
        grpc.StatusCode.NOT_FOUND,
        users.GetUser(pb.GetUserRequest(user_id=str(uuid.uuid4())), metadata=admin.auth),
    )


async def test_list_users_pages_without_gaps_or_repeats(
    users: UserServiceStub, admin: Account
) -> None:
    created = {(await make_account(users, "lister")).user.user_id for _ in range(5)}
    seen: list[str] = []
    token = ""
    for _ in range(1000):
        page = await users.ListUsers(
            pb.ListUsersRequest(page_size=2, page_token=token), metadata=admin.auth
        )
        assert len(page.users) <= 2
        seen += [u.user_id for u in page.users]
        token = page.next_page_token
        if not token:
            break
    assert len(seen) == len(set(seen))
    assert created <= set(seen)
    admins = await users.ListUsers(pb.ListUsersRequest(role=pb.ROLE_ADMIN), metadata=admin.auth)
    assert all(pb.ROLE_ADMIN in u.roles for u in admins.users) and admins.users
    await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        users.ListUsers(pb.ListUsersRequest(page_token="garbage!"), metadata=admin.auth),
        "page_token",
    )
    await fails_with(
        grpc.StatusCode.INVALID_ARGUMENT,
        users.ListUsers(pb.ListUsersRequest(page_size=-1), metadata=admin.auth),
    )


async def test_same_key_and_email_with_another_password_is_refused_without_the_profile(
    users: UserServiceStub,
) -> None:
    """Someone who guessed a key and knows the e-mail learns nothing without the password."""
    request = register_request()
    await users.Register(request)
    for changed in ({"password": "another horse"}, {"display_name": "Eve"}):
        guess = pb.RegisterRequest()
        guess.CopyFrom(request)
        for name, value in changed.items():
            setattr(guess, name, value)
        error = await fails_with(
            grpc.StatusCode.FAILED_PRECONDITION, users.Register(guess), "idempotency_key"
        )
        assert request.email not in (error.details() or "")
        assert not error.trailing_metadata() or all(
            request.email.encode() not in (v if isinstance(v, bytes) else v.encode())
            for _, v in error.trailing_metadata()
        )


async def test_a_retry_with_different_case_and_spacing_is_the_same_request(
    users: UserServiceStub,
) -> None:
    request = register_request()
    first = await users.Register(request)
    retry = pb.RegisterRequest()
    retry.CopyFrom(request)
    retry.email = "  " + request.email.upper()
    retry.display_name = request.display_name + " "
    again = await users.Register(retry)
    assert again.user == first.user


async def test_duplicate_emails_are_already_exists_even_past_hash_admission(
    users: UserServiceStub, sql: psycopg.Connection
) -> None:
    """The e-mail is checked before a password hash is spent, so a burst of duplicates is
    answered ALREADY_EXISTS rather than shed as RESOURCE_EXHAUSTED by the hash pool."""
    email = unique_email()
    await users.Register(register_request(email=email))
    results = await asyncio.gather(
        *(users.Register(register_request(email=email)) for _ in range(60)),
        return_exceptions=True,
    )
    codes = {r.code() if isinstance(r, grpc.aio.AioRpcError) else "ok" for r in results}
    assert codes == {grpc.StatusCode.ALREADY_EXISTS}
    assert account_rows(sql, email) == 1
