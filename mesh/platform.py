"""The platform's services, listed once: the launcher, the edge config, reflection and the bench
read their names from here, so adding a service means adding one line.

The order matters: it fixes each service's default port (see devstack.ports) and the order in
which listings show them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class PlatformService:
    name: str  # short name: process names, env prefixes (USER_GRPC_PORT), replica flags
    grpc_service: str  # fully qualified gRPC service, as Envoy routes and transcodes it
    module: str  # the Python package run as `python -m <module>`


SERVICES: tuple[PlatformService, ...] = (
    PlatformService("user", "elearn.user.v1.UserService", "svc_user"),
    PlatformService("course", "elearn.course.v1.CourseService", "svc_course"),
    PlatformService("quiz", "elearn.quiz.v1.QuizService", "svc_quiz"),
    PlatformService("live", "elearn.live.v1.LiveService", "svc_live"),
    PlatformService("analytics", "elearn.analytics.v1.AnalyticsService", "svc_analytics"),
)


# Worker processes without a gRPC port of their own, run as `python -m <module>` beside the
# services (the launcher starts `replicas` of each by default).
@dataclass(frozen=True)
class PlatformWorker:
    name: str
    module: str
    replicas: int = 1


WORKERS: tuple[PlatformWorker, ...] = (PlatformWorker("transcoder", "svc_course.transcoder"),)
WORKER_NAMES: tuple[str, ...] = tuple(w.name for w in WORKERS)

NAMES: tuple[str, ...] = tuple(s.name for s in SERVICES)
GRPC_SERVICE_NAMES: tuple[str, ...] = tuple(s.grpc_service for s in SERVICES)
BY_NAME: Mapping[str, PlatformService] = MappingProxyType({s.name: s for s in SERVICES})
