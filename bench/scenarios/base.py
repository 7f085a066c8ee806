"""What a scenario is: set up once in the parent, then called in a loop by every worker caller.

Lifecycle, for a scenario run with P processes x C callers over K channels:

1. parent: `await setup(ctx)` once; returns picklable data (tokens, ids) or None;
2. each worker: `make_stub(channel)` once per channel, `make_state(data, caller)` once per
   caller (caller is the global index 0 … P·C-1, so callers never share per-caller state);
3. each caller: `await call(stub, state)` in a loop; only this await is timed. A scenario that
   must repair its state between calls (a broken refresh chain) sets `needs_prepare` and does
   the repair in `prepare`, which is not timed.

Build request messages in `make_state` (serialized, where the stub takes bytes), not in
`call`: the driver shares the box's cores with the stack it measures.
"""

from __future__ import annotations

import argparse
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import grpc

from bench.endpoints import Endpoints
from bench.scenarios.accounts import AccountPool
from bench.sla import Target


@dataclass
class SetupContext:
    """What setup may use: a channel to the target and the run's shared account pool."""

    channel: grpc.aio.Channel
    accounts: AccountPool
    run_id: str
    callers: int
    # The stack's endpoints file (admin credentials …); None when --address bypassed it.
    endpoints: Endpoints | None = None
    # host:port the channel goes to (the edge, or the first replica with --target direct).
    address: str = ""


class Scenario(ABC):
    name: ClassVar[str]
    summary: ClassVar[str]
    # Whose replicas `--target direct` addresses (a key of endpoints.json "services").
    service: ClassVar[str] = "user"
    needs_prepare: ClassVar[bool] = False
    # A scenario that is not a call loop (live fan-out) runs whole through `run_standalone`,
    # in a thread of the CLI, and returns its report entry itself.
    standalone: ClassVar[bool] = False

    def __init__(self, timeout_s: float = 10.0) -> None:
        # Per-call deadline; every call passes it, so a stalled server cannot hang a caller.
        self.timeout_s = timeout_s

    async def setup(self, ctx: SetupContext) -> Any:
        return None

    def make_state(self, data: Any, caller: int) -> Any:
        return None

    @abstractmethod
    def make_stub(self, channel: grpc.aio.Channel) -> Any: ...

    @abstractmethod
    async def call(self, stub: Any, state: Any) -> None:
        """One timed call; raise (grpc.aio.AioRpcError or any Exception) when it failed."""

    async def prepare(self, stub: Any, state: Any) -> None:
        """Untimed repair before a call; only called when `needs_prepare` is set."""
        return None

    def run_standalone(
        self, args: argparse.Namespace, endpoints_path: Path, target: Target | None
    ) -> dict[str, Any]:
        raise NotImplementedError(f"{self.name} is a call-loop scenario")

    def counters(self, states: list[Any]) -> dict[str, int]:
        """Scenario-specific totals over one worker's caller states, summed into the report."""
        return {}


class UnexpectedResponse(Exception):
    """The server answered OK with something the scenario cannot accept; counted by name."""


def raw_method(channel: grpc.aio.Channel, path: str) -> grpc.aio.UnaryUnaryMultiCallable:
    """A multicallable that sends and returns bytes: the scenario serializes its requests once
    in make_state, and skips parsing responses it does not read."""
    return channel.unary_unary(path, _registered_method=True)
