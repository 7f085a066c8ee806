"""Trace context through events (mesh.tracing): what the outbox row stores, what the relay puts
in the NATS headers, and how consumers continue it. The first tests are pure logic; the last
goes through real Postgres and JetStream (the session stack)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON, Sampler
from opentelemetry.trace import SpanKind

from devstack.stack import Endpoints
from mesh import tracing
from mesh.bus import consume_batches
from tests.mesh.test_outbox_failures import Rig, add, received, relaying, rig  # noqa: F401


@dataclass
class Recorder:
    exporter: InMemorySpanExporter

    def spans(self, name: str | None = None) -> list[ReadableSpan]:
        done = self.exporter.get_finished_spans()
        return [s for s in done if name is None or s.name == name]


def _install(monkeypatch: pytest.MonkeyPatch, sampler: Sampler) -> Recorder:
    """A tracer of the test's own, in place of the one configure_tracing would install; the
    process-wide provider stays untouched, so other tests see tracing off."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider(sampler=sampler)
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(tracing, "_tracer", provider.get_tracer("test"))
    return Recorder(exporter)


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Recorder]:
    yield _install(monkeypatch, ALWAYS_ON)


def sampled_parent(trace_id: str, span_id: str) -> str:
    """The traceparent naming a span, up to its flags (the SDK may add W3C's "random" bit)."""
    return f"00-{trace_id}-{span_id}-"


def is_sampled_parent(value: str | None, trace_id: str, span_id: str) -> bool:
    return (
        value is not None
        and value.startswith(sampled_parent(trace_id, span_id))
        and bool(int(value[-2:], 16) & 1)
    )


def _hex(span: ReadableSpan) -> tuple[str, str]:
    ctx = span.get_span_context()
    assert ctx is not None
    return format(ctx.trace_id, "032x"), format(ctx.span_id, "016x")


@dataclass
class Message:
    """What batch_spans reads of a NATS message."""

    subject: str
    headers: dict[str, str] | None = field(default=None)


def test_tracing_off_stores_and_sends_nothing() -> None:
    assert not tracing.enabled()
    assert tracing.current_traceparent() is None
    headers: dict[str, str] = {}
    with tracing.publish_span("elearn.x", None, headers):
        pass
    assert headers == {}


def test_a_row_written_in_a_sampled_span_keeps_its_traceparent(recorder: Recorder) -> None:
    assert tracing._tracer is not None
    with tracing._tracer.start_as_current_span("rpc"):
        value = tracing.current_traceparent()
    (rpc,) = recorder.spans("rpc")
    trace_id, span_id = _hex(rpc)
    assert is_sampled_parent(value, trace_id, span_id)


def test_an_unsampled_trace_stores_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    _install(monkeypatch, ALWAYS_OFF)
    assert tracing._tracer is not None
    with tracing._tracer.start_as_current_span("rpc"):
        assert tracing.current_traceparent() is None


def test_the_relay_publishes_under_a_child_of_the_stored_context(recorder: Recorder) -> None:
    stored = f"00-{'ab' * 16}-{'cd' * 8}-01"
    headers = {"Nats-Msg-Id": "e1"}
    with tracing.publish_span("elearn.course.enrolled", stored, headers):
        pass
    (publish,) = recorder.spans("elearn.course.enrolled publish")
    assert publish.kind is SpanKind.PRODUCER
    assert publish.parent is not None and format(publish.parent.span_id, "016x") == "cd" * 8
    trace_id, span_id = _hex(publish)
    assert trace_id == "ab" * 16
    # Consumers become children of the publish span, not of the writer's.
    assert is_sampled_parent(headers["traceparent"], trace_id, span_id)
    assert headers["Nats-Msg-Id"] == "e1"


def test_a_consumer_continues_the_trace_in_the_headers(recorder: Recorder) -> None:
    sent = f"00-{'12' * 16}-{'34' * 8}-01"
    with tracing.consumer_span("grade", "quizgrade.jobs", {"traceparent": sent}) as span:
        assert span is not None
        assert trace.get_current_span() is span
    (grade,) = recorder.spans("grade")
    assert grade.kind is SpanKind.CONSUMER
    assert _hex(grade)[0] == "12" * 16
    assert grade.parent is not None and format(grade.parent.span_id, "016x") == "34" * 8
    assert grade.attributes is not None
    assert grade.attributes["messaging.destination.name"] == "quizgrade.jobs"


def test_a_message_without_a_trace_starts_none(recorder: Recorder) -> None:
    with tracing.consumer_span("grade", "quizgrade.jobs", None) as span:
        assert span is None
    with tracing.consumer_span("grade", "quizgrade.jobs", {"Nats-Msg-Id": "x"}) as span:
        assert span is None
    assert recorder.spans() == []


def test_a_batch_gets_one_consumer_span_per_traced_message(recorder: Recorder) -> None:
    first = f"00-{'01' * 16}-{'02' * 8}-01"
    second = f"00-{'03' * 16}-{'04' * 8}-01"
    batch = [
        Message("elearn.a", {"traceparent": first}),
        Message("elearn.b"),
        Message("elearn.c", {"traceparent": second}),
    ]
    with tracing.batch_spans("analytics process", batch):
        # The batch's own work lands in the first traced message's trace.
        current = trace.get_current_span().get_span_context()
    spans = recorder.spans("analytics process")
    assert sorted(_hex(s)[0] for s in spans) == ["01" * 16, "03" * 16]
    assert format(current.trace_id, "032x") == "01" * 16
    assert all(s.kind is SpanKind.CONSUMER for s in spans)


def test_a_failed_batch_marks_its_spans(recorder: Recorder) -> None:
    batch = [Message("elearn.a", {"traceparent": f"00-{'05' * 16}-{'06' * 8}-01"})]
    with pytest.raises(RuntimeError), tracing.batch_spans("analytics process", batch):
        raise RuntimeError("apply failed")
    (span,) = recorder.spans("analytics process")
    assert not span.status.is_ok


def test_write_behind_continues_the_request_trace(recorder: Recorder) -> None:
    assert tracing._tracer is not None
    with tracing._tracer.start_as_current_span("update"):
        kept = tracing.current_traceparent()  # what the update leaves in Valkey
    assert tracing.current_traceparent() is None  # outside any span: nothing to continue
    assert kept is not None
    with tracing.continued("progress flush", [kept]):
        pass
    (update,) = recorder.spans("update")
    (flush,) = recorder.spans("progress flush")
    assert _hex(flush)[0] == _hex(update)[0]
    assert flush.parent is not None and format(flush.parent.span_id, "016x") == _hex(update)[1]


async def test_an_event_carries_its_writer_trace_through_the_outbox_and_nats(
    rig: Rig,  # noqa: F811
    stack: Endpoints,
    recorder: Recorder,
) -> None:
    assert tracing._tracer is not None
    subject = f"{rig.topic}.traced"
    with tracing._tracer.start_as_current_span("rpc"):
        event_id = await add(rig, subject, "payload")
    (rpc,) = recorder.spans("rpc")
    trace_id, rpc_span = _hex(rpc)
    row = rig.sql.execute(
        f'SELECT traceparent FROM "{rig.schema}".outbox WHERE event_id = %s', (event_id,)
    ).fetchone()
    assert row is not None and is_sampled_parent(row[0], trace_id, rpc_span)

    async with relaying(rig):
        (msg,) = await received(stack.nats_url, subject, 1)
    (publish,) = recorder.spans(f"{subject} publish")
    assert msg.headers is not None
    assert is_sampled_parent(msg.headers["traceparent"], trace_id, _hex(publish)[1])

    seen: list[str] = []
    stop = asyncio.Event()

    async def handle(msgs: object) -> None:
        seen.append(format(trace.get_current_span().get_span_context().trace_id, "032x"))
        stop.set()

    durable = f"traced_{uuid.uuid4().hex[:8]}"
    consumer = asyncio.create_task(
        consume_batches(rig.bus, durable, handle, filter_subject=subject, stop=stop)
    )
    try:
        await asyncio.wait_for(stop.wait(), 15)
    finally:
        consumer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await consumer
        with contextlib.suppress(Exception):
            await rig.bus.js.delete_consumer("ELEARN", durable)
    assert seen == [trace_id]
    (process,) = recorder.spans(f"{durable} process")
    assert process.parent is not None and process.parent.span_id == int(_hex(publish)[1], 16)


class _Ok:
    name = "OK"
    value = (0, "ok")


def test_an_unsampled_call_suppresses_spans_and_passes_its_decision_on(
    recorder: Recorder,
) -> None:
    from opentelemetry.instrumentation.utils import is_instrumentation_enabled

    incoming = f"00-{'0a' * 16}-{'0b' * 8}-00"
    opened = tracing.server_span("/elearn.user.v1.UserService/GetMe", [("traceparent", incoming)])
    try:
        assert opened[0] is None
        assert not is_instrumentation_enabled()
        # A peer called from here gets the same trace, still unsampled.
        assert tracing.unsampled_traceparent() == incoming
    finally:
        tracing.end_server_span(opened, _Ok)
    assert is_instrumentation_enabled()
    assert tracing.unsampled_traceparent() is None
    assert recorder.spans() == []


def test_a_sampled_call_gets_a_server_span_under_its_caller(recorder: Recorder) -> None:
    from opentelemetry.instrumentation.utils import is_instrumentation_enabled

    incoming = f"00-{'0c' * 16}-{'0d' * 8}-01"
    opened = tracing.server_span("/elearn.user.v1.UserService/GetMe", [("traceparent", incoming)])
    try:
        assert is_instrumentation_enabled()
        assert tracing.unsampled_traceparent() is None
    finally:
        tracing.end_server_span(opened, _Ok)
    (span,) = recorder.spans("/elearn.user.v1.UserService/GetMe")
    assert span.kind is SpanKind.SERVER
    assert _hex(span)[0] == "0c" * 16
    assert span.parent is not None and format(span.parent.span_id, "016x") == "0d" * 8
    assert span.attributes is not None and span.attributes["rpc.method"] == "GetMe"


def test_log_lines_carry_the_current_trace_and_span_ids(recorder: Recorder) -> None:
    import logging
    import queue

    from mesh.logs import JsonFormatter, _DroppingQueueHandler

    handler = _DroppingQueueHandler(queue.Queue())
    assert tracing._tracer is not None
    with tracing._tracer.start_as_current_span("rpc"):
        inside = handler.prepare(logging.LogRecord("t", logging.INFO, "", 0, "hello", (), None))
    outside = handler.prepare(logging.LogRecord("t", logging.INFO, "", 0, "bye", (), None))
    (rpc,) = recorder.spans("rpc")
    line = JsonFormatter("svc", "svc-0").format(inside)
    trace_id, span_id = _hex(rpc)
    assert f'"trace_id":"{trace_id}"' in line and f'"span_id":"{span_id}"' in line
    assert "trace_id" not in JsonFormatter("svc", "svc-0").format(outside)
