"""Who may call which LiveService method. Object checks (the course's instructor manages its
sessions; enrolled students join) are in svc_live.sessions and svc_live.course_access."""

from mesh.auth import SIGNED_IN, Policy

_S = "/elearn.live.v1.LiveService/"

POLICY = Policy(
    {
        _S + "ScheduleSession": SIGNED_IN,
        _S + "GetSession": SIGNED_IN,
        _S + "ListSessions": SIGNED_IN,
        _S + "StartSession": SIGNED_IN,
        _S + "EndSession": SIGNED_IN,
        _S + "Join": SIGNED_IN,
        _S + "Subscribe": SIGNED_IN,
        _S + "Send": SIGNED_IN,
    }
)
