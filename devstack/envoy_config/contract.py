"""What the edge reads out of the protoset: services, streaming methods, REST templates, and
the descriptor the JSON transcoder is given."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from google.api import annotations_pb2, http_pb2
from google.protobuf import descriptor, descriptor_pb2
from google.rpc import error_details_pb2, status_pb2

# Types a service may put in google.rpc.Status details (mesh.errors sends BadRequest). The
# transcoder renders a status for JSON callers only if it knows every detail's type; with an
# unknown one it answers an empty body, so these are added to the descriptor it reads.
ERROR_MODEL_FILES = (status_pb2.DESCRIPTOR, error_details_pb2.DESCRIPTOR)


@dataclass(frozen=True)
class Upstream:
    """One platform service behind the edge."""

    name: str  # "user"
    grpc_service: str  # "elearn.user.v1.UserService"
    endpoints: list[tuple[str, int]]  # every replica's (host, port)


@dataclass(frozen=True)
class Contract:
    """What the edge needs from the descriptor set."""

    services: frozenset[str]
    # "/pkg.Service/Method" of every client-, server- or bidi-streaming method.
    streaming_paths: tuple[str, ...]
    # Service -> the path templates of its google.api.http bindings ("/api/users/{user_id}").
    rest_templates: dict[str, tuple[str, ...]]


def read_contract(protoset: Path) -> Contract:
    """Read services, streaming methods and REST paths out of a FileDescriptorSet."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(protoset.read_bytes())
    services: set[str] = set()
    streaming: list[str] = []
    templates: dict[str, tuple[str, ...]] = {}
    for file in fds.file:
        for service in file.service:
            full = f"{file.package}.{service.name}" if file.package else service.name
            services.add(full)
            paths: list[str] = []
            for method in service.method:
                if method.client_streaming or method.server_streaming:
                    streaming.append(f"/{full}/{method.name}")
                if method.options.HasExtension(annotations_pb2.http):
                    paths.extend(_rule_paths(method.options.Extensions[annotations_pb2.http]))
            templates[full] = tuple(paths)
    return Contract(frozenset(services), tuple(sorted(streaming)), templates)


def _rule_paths(rule: http_pb2.HttpRule) -> Iterable[str]:
    pattern = rule.WhichOneof("pattern")
    if pattern == "custom":
        yield rule.custom.path
    elif pattern is not None:
        yield getattr(rule, pattern)
    for extra in rule.additional_bindings:
        yield from _rule_paths(extra)


def transcoder_descriptor(protoset: Path) -> bytes:
    """The protoset plus the error-model files it lacks, without source info (comments are for
    grpcurl; Envoy needs only the types, and the descriptor is inlined in the config)."""
    fds = descriptor_pb2.FileDescriptorSet.FromString(protoset.read_bytes())
    for file in fds.file:
        file.ClearField("source_code_info")
    present = {file.name for file in fds.file}

    def add(file: descriptor.FileDescriptor) -> None:
        if file.name in present:
            return
        for dependency in file.dependencies:  # Envoy builds files in order: imports first
            add(dependency)
        file.CopyToProto(fds.file.add())
        present.add(file.name)

    for file in ERROR_MODEL_FILES:
        add(file)
    return fds.SerializeToString()


def rest_matchers(templates: Iterable[str]) -> list[dict[str, str]]:
    """Route matches covering the templates: a prefix for templated paths
    ("/api/users/{user_id}" -> "/api/users/"), the exact path for literal ones."""
    prefixes: set[str] = set()
    paths: set[str] = set()
    for template in templates:
        head = template.split("{", 1)[0].split("*", 1)[0].split(":", 1)[0]
        if head == template:
            paths.add(template)
            continue
        prefix = head[: head.rfind("/") + 1]
        if prefix == "/":  # its route would catch every path
            raise ValueError(f"REST template {template!r} must start with a literal segment")
        prefixes.add(prefix)
    kept = sorted(p for p in prefixes if not any(p != q and p.startswith(q) for q in prefixes))
    exact = sorted(p for p in paths if not any(p.startswith(q) for q in kept))
    return [{"prefix": p} for p in kept] + [{"path": p} for p in exact]
