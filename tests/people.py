"""People with access tokens signed by the stack's own key, the way svc_user signs them, so a
test can have 500 distinct students without paying 500 argon2 registrations; the services only
ever see verified tokens, exactly as in production."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from devstack.runstate import Endpoints
from svc_user.tokens import AccessTokens, load_private_key


@dataclass(frozen=True)
class Person:
    user_id: str
    token: str

    @property
    def auth(self) -> tuple[tuple[str, str]]:
        return (("authorization", f"Bearer {self.token}"),)


class People:
    def __init__(self, signer: AccessTokens) -> None:
        self._signer = signer

    def make(self, *roles: str) -> Person:
        user_id = str(uuid.uuid4())
        token = self._signer.mint(user_id, ["student", *roles], session_id=str(uuid.uuid4()))
        return Person(user_id, token)

    def student(self) -> Person:
        return self.make()

    def instructor(self) -> Person:
        return self.make("instructor")

    def admin(self) -> Person:
        return self.make("instructor", "admin")


def people_of(stack: Endpoints) -> People:
    return People(AccessTokens(load_private_key(stack.jwt_private_key_file), 3600))
