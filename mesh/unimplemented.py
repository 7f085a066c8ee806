"""A servicer that answers UNIMPLEMENTED for every method of a service whose issue has not
landed yet: it starts, reports SERVING and is routable, but never fakes a success."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from google.protobuf import descriptor_pool

from mesh.auth import OPTIONAL, Policy
from mesh.config import MeshSettings
from mesh.errors import Unimplemented
from mesh.logs import configure_logging
from mesh.server import ServiceSpec, run
from mesh.tracing import configure_tracing


def unimplemented_servicer(base: type, full_name: str, note: str) -> Any:
    service = descriptor_pool.Default().FindServiceByName(full_name)
    namespace: dict[str, Any] = {}
    for method in service.methods:
        namespace[method.name] = _refuse(
            f"{full_name}/{method.name} is not implemented yet ({note})"
        )
    return type(f"Unimplemented{service.name}", (base,), namespace)()


def _refuse(message: str) -> Any:
    async def handler(self: Any, request: Any, context: Any) -> Any:
        raise Unimplemented(message)

    return handler


async def serve_unimplemented(
    settings: MeshSettings, full_name: str, base: type, add: Callable[[Any, Any], None], note: str
) -> None:
    """Run a service whose implementation has not landed: health, reflection, metrics and
    UNIMPLEMENTED for every method."""
    listener = configure_logging(settings.service, settings.instance_name, settings.log_level)
    configure_tracing(settings.service, settings)
    servicer = unimplemented_servicer(base, full_name, note)
    methods = descriptor_pool.Default().FindServiceByName(full_name).methods
    # Every handler refuses, so there is nothing to guard yet; the real policy lands with the
    # implementation. Signed-in rules here would answer UNAUTHENTICATED where the truth is
    # UNIMPLEMENTED; optional ones still refuse a bad, expired or revoked token, so a client
    # learns early that its token is dead, on every service alike.
    policy = Policy({f"/{full_name}/{m.name}": OPTIONAL for m in methods})
    spec = ServiceSpec(
        name=settings.service,
        services=[full_name],
        register=lambda srv: add(servicer, srv),
        policy=policy,
    )
    try:
        await run(settings, spec)
    finally:
        listener.stop()
