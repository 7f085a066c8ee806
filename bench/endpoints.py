"""Where the running stack listens: `.stack/endpoints.json`, written by `devstack start`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from devstack.runstate import Endpoints as StackEndpoints

DEFAULT_PATH = Path(".stack/endpoints.json")


class EndpointsMissing(Exception):
    """No endpoints file: the stack is not running (or was started elsewhere)."""


class NoSuchTarget(Exception):
    """The endpoints name no address for the requested target."""


@dataclass(frozen=True)
class Endpoints:
    """The fields bench reads; devstack writes more (database URLs, key files), ignored here."""

    edge: str | None
    services: dict[str, list[str]] = field(default_factory=dict)
    admin_email: str | None = None
    admin_password: str | None = None

    @classmethod
    def from_stack(cls, stack: StackEndpoints) -> Endpoints:
        return cls(
            edge=stack.edge,
            services={name: list(addrs) for name, addrs in stack.services.items()},
            admin_email=stack.admin_email,
            admin_password=stack.admin_password,
        )

    def addresses(self, target: str, service: str) -> list[str]:
        """`edge`: Envoy's one address; `direct`: every replica of `service`."""
        if target == "edge":
            if not self.edge:
                raise NoSuchTarget(
                    "endpoints list no edge (Envoy is not running): try --target direct"
                )
            return [self.edge]
        replicas = self.services.get(service)
        if not replicas:
            known = ", ".join(sorted(self.services)) or "none"
            raise NoSuchTarget(
                f"endpoints list no replicas of service {service!r} (known: {known})"
            )
        return list(replicas)


def load_endpoints(path: Path) -> Endpoints:
    if not path.is_file():
        raise EndpointsMissing(
            f"{path} not found: no running stack — run `make start` first "
            "(or pass --endpoints PATH / --address HOST:PORT)"
        )
    # One reader of endpoints.json: the launcher's, which wrote it.
    return Endpoints.from_stack(StackEndpoints.load(path))
