"""Server reflection that also resolves method symbols.

grpcio-reflection answers FileContainingSymbol with the descriptor pool's
FindFileContainingSymbol, and the default (upb) pool resolves messages, enums and services but
not a method's full name: `grpcurl describe elearn.user.v1.UserService.Login` answered "Symbol not
found". gRPC's reflection spec counts methods as symbols (the C++ and Go servers resolve them),
so a name that is not found is retried as `<service>.<method>`: when the service is known and
has that method, the answer is the service's file.

It overrides `_file_containing_symbol`, the lookup hook grpcio-reflection's servicers share
(pinned exactly in pyproject.toml); tests/edge/test_reflection.py runs grpcurl against it, so
an upgrade that moves the hook fails there.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2, reflection_pb2_grpc

SERVICE_NAME: str = reflection.SERVICE_NAME


class ReflectionServicer(reflection.aio.ReflectionServicer):
    """grpc.aio reflection whose symbol lookup falls back to `pkg.Service.Method`."""

    def __init__(
        self, service_names: Iterable[str], pool: descriptor_pool.DescriptorPool | None = None
    ) -> None:
        super().__init__(service_names, pool=pool)
        self._symbols = pool or descriptor_pool.Default()

    def _file_containing_symbol(
        self, request: reflection_pb2.ServerReflectionRequest, fully_qualified_name: str
    ) -> reflection_pb2.ServerReflectionResponse:
        response: reflection_pb2.ServerReflectionResponse = super()._file_containing_symbol(
            request, fully_qualified_name
        )
        if not response.HasField("error_response"):
            return response
        service = method_owner(self._symbols, fully_qualified_name)
        if service is None:
            return response
        found: reflection_pb2.ServerReflectionResponse = super()._file_containing_symbol(
            request, service
        )
        return found


def method_owner(pool: descriptor_pool.DescriptorPool, symbol: str) -> str | None:
    """The full name of the service `symbol` is a method of ("pkg.Service.Method" ->
    "pkg.Service"), or None when it names no method in the pool."""
    service_name, _, method = symbol.rpartition(".")
    if not service_name:
        return None
    try:
        service = pool.FindServiceByName(service_name)
    except KeyError:
        return None
    return service_name if method in service.methods_by_name else None


def enable_server_reflection(
    service_names: Iterable[str],
    server: grpc.aio.Server,
    pool: descriptor_pool.DescriptorPool | None = None,
) -> None:
    """Serve reflection (v1alpha, which grpcurl falls back to) listing `service_names`."""
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        ReflectionServicer(service_names, pool), server
    )
