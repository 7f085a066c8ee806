"""The scenario registry: one module per workflow, listed here in the order `--list` shows.

To add one: write `bench/scenarios/<name>.py` with a `Scenario` subclass (see base.py), add it
to SCENARIOS, give it an entry in `bench/sla.yaml` (a test checks that every scenario has one)
and, when ghz can drive it, a `bench/ghz/<name>.json`.
"""

from __future__ import annotations

from bench.scenarios.analytics import AnalyticsCold, AnalyticsWarm
from bench.scenarios.base import Scenario, SetupContext
from bench.scenarios.enrollment import CheckEnrollment, Enroll
from bench.scenarios.health import Health
from bench.scenarios.live import Live
from bench.scenarios.login import Login
from bench.scenarios.progress import ProgressGrpc, ProgressJson
from bench.scenarios.quiz import ExamRush, QueuedGrading
from bench.scenarios.refresh import Refresh
from bench.scenarios.search import Search
from bench.scenarios.whoami import WhoAmI

SCENARIOS: dict[str, type[Scenario]] = {
    cls.name: cls
    for cls in (
        Health,
        Login,
        Refresh,
        WhoAmI,
        Search,
        Enroll,
        CheckEnrollment,
        ProgressGrpc,
        ProgressJson,
        ExamRush,
        QueuedGrading,
        AnalyticsWarm,
        AnalyticsCold,
        Live,
    )
}
CEILING = Health.name

__all__ = ["CEILING", "SCENARIOS", "Scenario", "SetupContext"]
