"""One worker process: an asyncio loop (uvloop) running C callers over K long-lived channels.

The parent starts P of these with the `spawn` method (the parent has already used gRPC for
setup, and a forked gRPC runtime is unsafe), waits for all of them to connect at a barrier so
the windows line up, and collects one `WorkerResult` dict from each over a queue.
"""

from __future__ import annotations

import asyncio
import random
import time
import traceback
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import asdict, dataclass, field
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from typing import Any

import grpc

from bench import histogram, series
from bench.scenarios import SCENARIOS, Scenario
from bench.schedule import Budget, Window, arrivals

CHANNEL_OPTIONS = (
    # Channels with equal arguments otherwise share one subchannel (one TCP connection) from
    # gRPC's global pool, and --channels would spread nothing.
    ("grpc.use_local_subchannel_pool", 1),
    ("grpc.enable_retries", 0),
    ("grpc.enable_channelz", 0),
)
READY_TIMEOUT_S = 15.0
BARRIER_TIMEOUT_S = 60.0
# An open-loop call that starts this much after its planned time was late: every caller was busy.
LATE_NS = 2_000_000
# An open-loop call due within this starts at once: event-loop timers fire on a 1 ms grid
# (uvloop), so a shorter sleep buys no precision and costs a timer and a wake-up per call.
EARLY_NS = 1_000_000
# A closed-loop caller told to slow down (load shedding) or finding no server pauses about this
# long, untimed, before its next call, as a well-behaved client would; retrying at once would
# turn shedding into a storm of instant rejections. Open-loop arrivals never wait: they model
# independent users.
BACK_OFF_ON = frozenset({grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE})
BACK_OFF_S = 0.05


@dataclass(frozen=True)
class WorkerPlan:
    scenario: str
    index: int
    addresses: tuple[str, ...]
    channels: int
    concurrency: int
    warmup_s: float
    duration_s: float
    count: int | None
    rate: float | None
    poisson: bool
    timeout_s: float
    seed: int
    data: Any
    uvloop: bool = True
    phase: float = 0.0
    ready_timeout_s: float = READY_TIMEOUT_S


@dataclass
class WorkerResult:
    index: int
    histogram: str = ""
    ok: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    warmup_calls: int = 0
    warmup_errors: int = 0
    prepare_errors: int = 0
    elapsed_s: float = 0.0
    cpu_s: float = 0.0
    late_starts: int = 0
    max_lag_us: int = 0
    counters: dict[str, int] = field(default_factory=dict)
    series: dict[str, Any] = field(default_factory=dict)
    # Start of the measured window on the box's monotonic clock (perf_counter_ns), so the parent
    # can line the stack's CPU samples up with it (bench.stack_cpu).
    window_start_ns: int = 0


class Recorder:
    """Counts and times calls by their start: only calls starting inside the window count."""

    def __init__(self, window: Window, index: int) -> None:
        self.window = window
        self.hist = histogram.new_histogram()
        self.result = WorkerResult(index)
        self.last_end_ns = window.measure_ns
        self.seconds = series.SecondBuckets(window.measure_ns)

    def ok(self, t0_ns: int, t1_ns: int, planned_ns: int | None = None) -> None:
        """A call timed from t0; an open-loop call belongs to the phase of its planned start."""
        t_ref = t0_ns if planned_ns is None else planned_ns
        if t_ref < self.window.measure_ns:
            self.result.warmup_calls += 1
            return
        latency_us = histogram.clamp_us((t1_ns - t0_ns) // 1000)
        self.hist.record_value(latency_us)
        self.seconds.record(t_ref, latency_us)
        self.result.ok += 1
        if t1_ns > self.last_end_ns:
            self.last_end_ns = t1_ns

    def error(
        self, t0_ns: int, t1_ns: int, exc: BaseException, planned_ns: int | None = None
    ) -> None:
        t_ref = t0_ns if planned_ns is None else planned_ns
        if t_ref < self.window.measure_ns:
            self.result.warmup_calls += 1
            self.result.warmup_errors += 1
            return
        self.seconds.error(t_ref)
        code = exc.code().name if isinstance(exc, grpc.aio.AioRpcError) else type(exc).__name__
        self.result.errors[code] = self.result.errors.get(code, 0) + 1
        if t1_ns > self.last_end_ns:
            self.last_end_ns = t1_ns

    def late(self, lag_ns: int) -> None:
        self.result.late_starts += 1
        self.result.max_lag_us = max(self.result.max_lag_us, lag_ns // 1000)


def worker_main(plan: WorkerPlan, barrier: Barrier, results: Queue[Any]) -> None:
    """Process entry point: puts ("ok", index, result dict) or ("error", index, traceback)."""
    try:
        loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None
        if plan.uvloop:
            import uvloop

            loop_factory = uvloop.new_event_loop
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            result = runner.run(_run(plan, barrier))
        results.put(("ok", plan.index, asdict(result)))
    except BaseException:
        barrier.abort()
        results.put(("error", plan.index, traceback.format_exc()))


async def _run(plan: WorkerPlan, barrier: Barrier) -> WorkerResult:
    scenario = SCENARIOS[plan.scenario](timeout_s=plan.timeout_s)
    channels = [
        grpc.aio.insecure_channel(
            plan.addresses[(plan.index * plan.channels + j) % len(plan.addresses)],
            options=CHANNEL_OPTIONS,
        )
        for j in range(plan.channels)
    ]
    try:
        await _connect(channels, plan.ready_timeout_s)
        stubs = [scenario.make_stub(ch) for ch in channels]
        first = plan.index * plan.concurrency
        states = [scenario.make_state(plan.data, first + i) for i in range(plan.concurrency)]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, barrier.wait, BARRIER_TIMEOUT_S)
        window = Window.after(time.perf_counter_ns(), plan.warmup_s, plan.duration_s)
        recorder = Recorder(window, plan.index)
        budget = Budget(window, plan.count)
        cpu_at_measure: list[float] = []
        loop.call_later(plan.warmup_s, lambda: cpu_at_measure.append(time.process_time()))
        if plan.rate:
            rng = random.Random(plan.seed)
            plan_iter = arrivals(plan.rate, window, poisson=plan.poisson, rng=rng, phase=plan.phase)
            make = _open_caller(scenario, recorder, budget, plan_iter)
        else:
            make = _closed_caller(scenario, recorder, budget)
        await asyncio.gather(
            *(make(stubs[i % len(stubs)], state) for i, state in enumerate(states))
        )
        finished_ns = time.perf_counter_ns()
        result = recorder.result
        result.window_start_ns = window.measure_ns
        result.cpu_s = time.process_time() - (cpu_at_measure or [time.process_time()])[0]
        result.elapsed_s = (
            max(recorder.last_end_ns, _end_ns(window, budget, finished_ns)) - window.measure_ns
        ) / 1e9
        result.histogram = histogram.encode(recorder.hist)
        result.series = recorder.seconds.encode()
        result.counters = scenario.counters(states)
        return result
    finally:
        await asyncio.gather(*(ch.close() for ch in channels), return_exceptions=True)


def _end_ns(window: Window, budget: Budget, finished_ns: int) -> int:
    # A count-bounded run ends when its last call does; a timed one at the window's end.
    return min(finished_ns, window.end_ns) if budget.remaining is not None else window.end_ns


async def _connect(channels: list[grpc.aio.Channel], timeout_s: float) -> None:
    try:
        await asyncio.wait_for(asyncio.gather(*(ch.channel_ready() for ch in channels)), timeout_s)
    except TimeoutError:
        raise ConnectionError(f"no connection within {timeout_s:g} s") from None


Caller = Callable[[Any, Any], Coroutine[Any, Any, None]]


def _closed_caller(scenario: Scenario, recorder: Recorder, budget: Budget) -> Caller:
    call, clock, claim = scenario.call, time.perf_counter_ns, budget.claim
    end_ns = budget.window.end_ns
    prepare = scenario.prepare if scenario.needs_prepare else None

    async def caller(stub: Any, state: Any) -> None:
        while clock() < end_ns:
            if prepare is not None and not await _prepared(prepare, stub, state, recorder):
                await asyncio.sleep(BACK_OFF_S)
                continue
            t0 = clock()
            if not claim(t0):
                return
            try:
                await call(stub, state)
            except Exception as exc:
                recorder.error(t0, clock(), exc)
                if isinstance(exc, grpc.aio.AioRpcError) and exc.code() in BACK_OFF_ON:
                    await asyncio.sleep(BACK_OFF_S * (0.5 + random.random()))
            else:
                recorder.ok(t0, clock())

    return caller


def _open_caller(
    scenario: Scenario, recorder: Recorder, budget: Budget, planned: Iterator[int]
) -> Caller:
    call, clock, claim = scenario.call, time.perf_counter_ns, budget.claim
    end_ns = budget.window.end_ns
    prepare = scenario.prepare if scenario.needs_prepare else None

    async def caller(stub: Any, state: Any) -> None:
        while True:
            # Repair first, while holding no planned start, so repairs never count as latency.
            if prepare is not None and not await _prepared(prepare, stub, state, recorder):
                if clock() >= end_ns:
                    return
                await asyncio.sleep(BACK_OFF_S)
                continue
            # Callers take planned starts in order from one shared iterator, so the earliest
            # pending start always belongs to a free caller.
            t_plan = next(planned, None)
            if t_plan is None or not claim(t_plan):
                return
            now = clock()
            if t_plan - now > EARLY_NS:
                await asyncio.sleep((t_plan - now) / 1e9)
                # On time, up to timer granularity: time the call from its actual start.
                t0 = clock()
            elif t_plan >= now:
                t0 = now
            else:
                # Every caller was busy: the wait is the server's doing and counts as latency.
                t0 = t_plan
                if now - t_plan > LATE_NS:
                    recorder.late(now - t_plan)
            try:
                await call(stub, state)
            except Exception as exc:
                recorder.error(t0, clock(), exc, t_plan)
            else:
                recorder.ok(t0, clock(), t_plan)

    return caller


async def _prepared(
    prepare: Callable[[Any, Any], Coroutine[Any, Any, None]],
    stub: Any,
    state: Any,
    recorder: Recorder,
) -> bool:
    try:
        await prepare(stub, state)
    except Exception:
        recorder.result.prepare_errors += 1
        return False
    return True
