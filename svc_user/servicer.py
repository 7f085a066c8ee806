"""UserService over gRPC: validate, authorize, call the domain. Errors are mapped by the
mesh interceptor, so handlers only raise."""

from __future__ import annotations

from grpc.aio import ServicerContext

from elearn.user.v1 import user_service_pb2 as pb
from elearn.user.v1 import user_service_pb2_grpc
from mesh.context import Caller, current_caller
from mesh.errors import FailedPrecondition, PermissionDenied
from mesh.pagination import page_size
from svc_user import validation as check
from svc_user.accounts import Accounts
from svc_user.client_address import ClientAddresses
from svc_user.sessions import Sessions


def _caller() -> Caller:
    caller = current_caller.get()
    assert caller is not None, "policy admits signed-in methods only with a caller"
    return caller


class UserServicer(user_service_pb2_grpc.UserServiceServicer):
    def __init__(self, accounts: Accounts, sessions: Sessions, addresses: ClientAddresses) -> None:
        self._accounts = accounts
        self._sessions = sessions
        self._addresses = addresses

    async def Register(
        self, request: pb.RegisterRequest, context: ServicerContext
    ) -> pb.RegisterResponse:
        email, name = check.register(request)
        user = await self._accounts.register(email, request.password, name, request.idempotency_key)
        return pb.RegisterResponse(user=user)

    async def Login(self, request: pb.LoginRequest, context: ServicerContext) -> pb.LoginResponse:
        email = check.login(request)
        address = self._addresses.of(context)
        tokens, user = await self._sessions.login(email, request.password, address)
        return pb.LoginResponse(tokens=tokens, user=user)

    async def Refresh(
        self, request: pb.RefreshRequest, context: ServicerContext
    ) -> pb.RefreshResponse:
        tokens = await self._sessions.refresh(check.refresh_token(request.refresh_token))
        return pb.RefreshResponse(tokens=tokens)

    async def Logout(
        self, request: pb.LogoutRequest, context: ServicerContext
    ) -> pb.LogoutResponse:
        await self._sessions.logout(check.refresh_token(request.refresh_token))
        return pb.LogoutResponse()

    async def GetMe(self, request: pb.GetMeRequest, context: ServicerContext) -> pb.GetMeResponse:
        return pb.GetMeResponse(user=await self._accounts.get(_caller().user_id))

    async def UpdateMe(
        self, request: pb.UpdateMeRequest, context: ServicerContext
    ) -> pb.UpdateMeResponse:
        name = check.update_me(request)
        return pb.UpdateMeResponse(user=await self._accounts.rename(_caller().user_id, name))

    async def GetUser(
        self, request: pb.GetUserRequest, context: ServicerContext
    ) -> pb.GetUserResponse:
        user_id = check.user_id(request.user_id)
        caller = _caller()
        if user_id != caller.user_id and not caller.is_admin:
            raise PermissionDenied("only admins may read other accounts")
        return pb.GetUserResponse(user=await self._accounts.get(user_id))

    async def ListUsers(
        self, request: pb.ListUsersRequest, context: ServicerContext
    ) -> pb.ListUsersResponse:
        size = page_size(request.page_size)
        role = check.role(request.role) if request.role else None
        users, token = await self._accounts.list(size, request.page_token, role)
        return pb.ListUsersResponse(users=users, next_page_token=token)

    async def GrantRole(
        self, request: pb.GrantRoleRequest, context: ServicerContext
    ) -> pb.GrantRoleResponse:
        user_id, role = check.user_id(request.user_id), check.role(request.role)
        return pb.GrantRoleResponse(
            user=await self._accounts.change_role(user_id, role, grant=True)
        )

    async def RevokeRole(
        self, request: pb.RevokeRoleRequest, context: ServicerContext
    ) -> pb.RevokeRoleResponse:
        user_id, role = check.user_id(request.user_id), check.role(request.role)
        if role == "student":
            raise FailedPrecondition("every account keeps the student role")
        if user_id == _caller().user_id and role == "admin":
            raise FailedPrecondition("admins cannot revoke their own admin role")
        return pb.RevokeRoleResponse(
            user=await self._accounts.change_role(user_id, role, grant=False)
        )
