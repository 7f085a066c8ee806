"""Who may call which AnalyticsService method. Object checks (an instructor reads only their
own courses unless admin) are in svc_analytics.dashboard."""

from mesh.auth import SIGNED_IN, Policy

_S = "/elearn.analytics.v1.AnalyticsService/"

POLICY = Policy(
    {
        _S + "ListInstructorCourseStats": SIGNED_IN,
        _S + "GetCourseAnalytics": SIGNED_IN,
        _S + "ListAtRiskLearners": SIGNED_IN,
    }
)
