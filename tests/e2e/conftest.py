"""The observed stack: Jaeger and Prometheus on, every span sampled. One per session, shared by
the trace test and the Prometheus test, since a second full stack costs more than both tests."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from devstack.stack import Endpoints, Stack, StackConfig


@pytest.fixture(scope="session")
def observed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Endpoints]:
    config = StackConfig.for_tests(
        tmp_path_factory.mktemp("observed"),
        # Only what the traced flows touch: starting fewer processes keeps the stack quick.
        replicas={"live": 0, "transcoder": 0},
        observe=True,
        trace_sample_ratio=1.0,
    )
    running = Stack(config)
    try:
        yield running.start(timeout=float(os.environ.get("ELEARN_TEST_STACK_TIMEOUT", "180")))
    finally:
        running.stop()
