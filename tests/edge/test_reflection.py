"""Server reflection resolves method symbols (`grpcurl describe pkg.Service.Method`), on a
server using mesh.reflection directly and through the edge, which routes reflection to user."""

from __future__ import annotations

import pytest
from google.protobuf import descriptor_pool

from elearn.user.v1 import user_service_pb2  # noqa: F401  (registers the file in the pool)
from mesh.reflection import method_owner
from tests.edge.harness import LOOPBACK, USER_SERVICE, Edge, FakeUserService, grpcurl

LOGIN_SIGNATURE = (
    "rpc Login ( .elearn.user.v1.LoginRequest ) returns ( .elearn.user.v1.LoginResponse )"
)


@pytest.mark.parametrize(
    ("symbol", "owner"),
    [
        (f"{USER_SERVICE}.Login", USER_SERVICE),
        (f"{USER_SERVICE}.GetMe", USER_SERVICE),
        (f"{USER_SERVICE}.NoSuchMethod", None),
        ("elearn.user.v1.LoginRequest.email", None),  # a field is no method
        ("elearn.user.v1.NoService.Login", None),
        ("Login", None),
    ],
)
def test_method_owner_names_the_service_of_a_method_only(symbol: str, owner: str | None) -> None:
    assert method_owner(descriptor_pool.Default(), symbol) == owner


async def test_grpcurl_describes_a_method_on_the_service_itself(
    fake_user: tuple[FakeUserService, int],
) -> None:
    _, port = fake_user
    code, out, err = await grpcurl(
        "-plaintext", f"{LOOPBACK}:{port}", "describe", f"{USER_SERVICE}.Login"
    )
    assert code == 0, err
    assert f"{USER_SERVICE}.Login is a method:" in out
    assert LOGIN_SIGNATURE in out


async def test_grpcurl_describes_a_method_through_the_edge(edge: Edge) -> None:
    code, out, err = await grpcurl("-plaintext", edge.target, "describe", f"{USER_SERVICE}.GetMe")
    assert code == 0, err
    assert f"{USER_SERVICE}.GetMe is a method:" in out
    assert "returns ( .elearn.user.v1.GetMeResponse )" in out


async def test_messages_and_services_still_resolve_and_unknown_methods_do_not(edge: Edge) -> None:
    code, out, err = await grpcurl("-plaintext", edge.target, "describe", USER_SERVICE)
    assert code == 0, err
    assert LOGIN_SIGNATURE in out
    code, out, err = await grpcurl(
        "-plaintext", edge.target, "describe", "elearn.user.v1.LoginRequest"
    )
    assert code == 0, err
    assert "string email = 1;" in out
    code, _, err = await grpcurl(
        "-plaintext", edge.target, "describe", f"{USER_SERVICE}.NoSuchMethod"
    )
    assert code != 0
    assert "Symbol not found" in err
