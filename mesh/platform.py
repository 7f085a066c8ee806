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


@dataclass(frozen=True)
class PlatformWorker:
    """A worker process: no gRPC API of its own, it serves only gRPC health (so readiness
    checks treat it like a service) and is never routed to by the edge."""

    name: str
    module: str  # run as `python -m <module>`
    service: str  # the service whose work it does; without that service it is not started


WORKERS: tuple[PlatformWorker, ...] = (
    PlatformWorker("quiz-worker", "svc_quiz.worker", service="quiz"),
    PlatformWorker("transcoder", "svc_course.transcoder", service="course"),
    # Video progress written behind (S1), off the loop that answers UpdateVideoProgress.
    PlatformWorker("progress-flusher", "svc_course.progress_worker", service="course"),
)

NAMES: tuple[str, ...] = tuple(s.name for s in SERVICES)
# Every process the launcher can start, services first: the order fixes default ports.
PROCESS_NAMES: tuple[str, ...] = NAMES + tuple(w.name for w in WORKERS)
GRPC_SERVICE_NAMES: tuple[str, ...] = tuple(s.grpc_service for s in SERVICES)
BY_NAME: Mapping[str, PlatformService] = MappingProxyType({s.name: s for s in SERVICES})
