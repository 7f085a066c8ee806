"""Who may call which QuizService method: every method needs a signed-in caller; object
checks (the course's instructor authors, enrolled students take, students read only their own
submissions) are in the domain modules."""

from elearn.quiz.v1 import quiz_service_pb2
from mesh.auth import SIGNED_IN, Policy

_SERVICE = quiz_service_pb2.DESCRIPTOR.services_by_name["QuizService"]

POLICY = Policy({f"/{_SERVICE.full_name}/{m.name}": SIGNED_IN for m in _SERVICE.methods})
