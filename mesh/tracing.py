"""Distributed tracing (finding I3): OpenTelemetry, set up once per process from settings.

With OTEL_EXPORTER_OTLP_ENDPOINT unset nothing is installed: the API's default tracer hands
out non-recording spans, `enabled()` is False and every hook below returns at once, so a
process without a collector pays a branch per call. With it set, spans go to the collector
over OTLP/gRPC in batches from a background thread.

Sampling is parent-based: a call that arrives with a W3C `traceparent` (from the edge or a
peer) follows its caller's decision, so a trace is whole or absent; a trace this process
starts (a background job, a direct call without a parent) is kept with TRACE_SAMPLE_RATIO.

What produces spans: the server side of every RPC is opened by `mesh.interceptor` (one
wrapper per call, see `server_span`); outgoing calls get the official grpc.aio client
interceptors (`client_interceptors`); SQL statements the official SQLAlchemy engine hooks
(`instrument_engine`), or `statement_span` for the few run on the driver's connection; Valkey
commands the official redis instrumentation. Events carry the context of the transaction that
wrote them: the outbox row stores its `traceparent` (`current_traceparent`), the relay publishes
it under a PRODUCER span whose context goes in the NATS headers (`publish_span`), and consumers
continue it (`consumer_span`, `batch_spans`).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import _SUPPRESS_INSTRUMENTATION_KEY as _SUPPRESS
from opentelemetry.propagate import extract, inject
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import (
    NonRecordingSpan,
    Span,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    Tracer,
)

from mesh.config import MeshSettings

log = logging.getLogger("mesh.tracing")

TRACEPARENT = "traceparent"
_TRACER_NAME = "mesh"

_tracer: Tracer | None = None


def enabled() -> bool:
    return _tracer is not None


def configure_tracing(service: str, settings: MeshSettings) -> None:
    """Install the SDK for this process (named `service`) when an OTLP endpoint is set."""
    global _tracer
    endpoint = settings.otlp_endpoint
    if not endpoint or _tracer is not None:
        return
    # Imported here: a process without a collector never loads the SDK or the exporter.
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    resource = Resource.create(
        {"service.name": service, "service.instance.id": settings.instance_name}
    )
    provider = TracerProvider(
        resource=resource, sampler=ParentBased(TraceIdRatioBased(settings.trace_sample_ratio))
    )
    exporter = OTLPSpanExporter(endpoint=endpoint, insecure=endpoint.startswith("http://"))
    # The queue bounds memory when the collector is away: spans beyond it are dropped, never
    # waited for.
    provider.add_span_processor(BatchSpanProcessor(exporter, max_queue_size=8192))
    trace.set_tracer_provider(provider)
    # Patches the client classes themselves, so pools opened before or after are covered.
    RedisInstrumentor().instrument(tracer_provider=provider)
    atexit.register(provider.shutdown)
    _tracer = provider.get_tracer(_TRACER_NAME)
    log.info(
        "tracing to %s",
        endpoint,
        extra={"sample_ratio": settings.trace_sample_ratio, "trace_service": service},
    )


def client_interceptors() -> list[Any]:
    """The official grpc.aio client interceptors, one class per call shape (see
    mesh.channels for why one object cannot serve all four); none when tracing is off."""
    if _tracer is None:
        return []
    from opentelemetry.instrumentation.grpc import aio_client_interceptors

    return list(aio_client_interceptors())


def instrument_engine(engine: Any) -> None:
    """Spans for every statement of this engine (an AsyncEngine or a sync Engine)."""
    if _tracer is None:
        return
    from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer

    # SQLAlchemyInstrumentor().instrument(engine=...) does the same but only once per process
    # (its instrumentor is a singleton); the engine hooks themselves can be added per engine.
    from opentelemetry.instrumentation.sqlalchemy.version import __version__
    from opentelemetry.metrics import get_meter

    tracer = trace.get_tracer(SQLAlchemyInstrumentor.__module__, __version__)
    usage = get_meter(SQLAlchemyInstrumentor.__module__).create_up_down_counter(
        "db.client.connections.usage"
    )
    EngineTracer(tracer, getattr(engine, "sync_engine", engine), usage)


# -- the server side of RPCs (called by mesh.interceptor) ---------------------------------


class _MetadataGetter(Getter[Sequence[tuple[str, Any]]]):
    """Reads W3C headers from gRPC invocation metadata (a sequence of key/value pairs)."""

    def get(self, carrier: Sequence[tuple[str, Any]], key: str) -> list[str] | None:
        values = [v.decode() if isinstance(v, bytes) else v for k, v in carrier if k == key]
        return values or None

    def keys(self, carrier: Sequence[tuple[str, Any]]) -> list[str]:
        return [k for k, _ in carrier]


_METADATA = _MetadataGetter()


def server_span(
    method: str, metadata: Sequence[tuple[str, Any]] | None
) -> tuple[Span | None, object]:
    """Start the span of an incoming call as the child of the caller's context and make it
    current; `end_server_span` closes it. Only called when `enabled()`.

    A call outside any sampled trace (most of them, by design) records nothing, so the
    instrumentations are told to skip their work for it (OpenTelemetry's suppression flag):
    without that, every SQL statement and Valkey command of an unsampled call still built a
    non-recording span, which cost who-am-I a quarter of its CPU. The unsampled context is
    still passed on to peers (`unsampled_traceparent`), so they follow the same decision."""
    assert _tracer is not None
    unsampled = _unsampled_parent(metadata)
    if unsampled is not None:
        return None, otel_context.attach(unsampled)
    parent = extract(metadata or (), getter=_METADATA)
    service, _, name = method.lstrip("/").partition("/")
    span = _tracer.start_span(
        method,
        context=parent,
        kind=SpanKind.SERVER,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
    )
    current = trace.set_span_in_context(span, parent)
    if not span.is_recording():
        current = otel_context.set_value(_SUPPRESS, True, current)
    return span, otel_context.attach(current)


def _unsampled_parent(metadata: Sequence[tuple[str, Any]] | None) -> otel_context.Context | None:
    """The suppressed context of a call whose caller chose not to sample it, parsed by hand:
    the propagator's regular expression was a third of the cost of an unsampled call's span."""
    for key, value in metadata or ():
        if key != TRACEPARENT:
            continue
        text = value.decode() if isinstance(value, bytes) else value
        parts = text.split("-")
        if len(parts) != 4 or len(parts[1]) != 32 or len(parts[2]) != 16 or parts[3] != "00":
            return None
        try:
            remote = SpanContext(int(parts[1], 16), int(parts[2], 16), is_remote=True)
        except ValueError:
            return None
        if not remote.is_valid:
            return None
        current = trace.set_span_in_context(NonRecordingSpan(remote))
        return otel_context.set_value(_SUPPRESS, True, current)
    return None


def end_server_span(opened: tuple[Span | None, object], code: Any) -> None:
    span, token = opened
    if span is None:
        otel_context.detach(token)  # type: ignore[arg-type]
        return
    if span.is_recording():
        span.set_attribute("rpc.grpc.status_code", int(code.value[0]))
        if code.name != "OK":
            span.set_status(Status(StatusCode.ERROR, code.name))
    span.end()
    # A stream's clean-up may run in another context than its start; the span is ended either
    # way, and a failed detach is only logged by the API.
    otel_context.detach(token)  # type: ignore[arg-type]


def unsampled_traceparent() -> str | None:
    """For an outgoing call made while instrumentation is suppressed (an unsampled call): the
    current context with its "not sampled" flag, so the peer skips its spans too instead of
    sampling a fragment of the request as a trace of its own. None otherwise."""
    if _tracer is None or not otel_context.get_value(_SUPPRESS):
        return None
    current = trace.get_current_span().get_span_context()
    if not current.is_valid:
        return None
    return f"00-{current.trace_id:032x}-{current.span_id:016x}-00"


# -- events: outbox rows and NATS headers -------------------------------------------------


def current_traceparent() -> str | None:
    """The W3C traceparent of the current span when it is sampled, for an outbox row; None
    otherwise (an unsampled trace has nothing to continue)."""
    if _tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid or not context.trace_flags.sampled:
        return None
    carrier: dict[str, str] = {}
    inject(carrier)
    return carrier.get(TRACEPARENT)


@contextlib.contextmanager
def publish_span(subject: str, traceparent: str | None, headers: dict[str, str]) -> Iterator[None]:
    """Publishing an event: a PRODUCER span, the child of the stored `traceparent` (the
    writing transaction's) or else of the current span, whose context goes into `headers`
    so consumers become its children. Without a sampled trace nothing is added."""
    if _tracer is None:
        yield
        return
    parent = _parent_of({TRACEPARENT: traceparent} if traceparent else None)
    if parent is None and not trace.get_current_span().get_span_context().trace_flags.sampled:
        yield
        return
    with _tracer.start_as_current_span(
        f"{subject} publish",
        context=parent,
        kind=SpanKind.PRODUCER,
        attributes={"messaging.system": "nats", "messaging.destination.name": subject},
    ):
        inject(headers)
        yield


def _parent_of(headers: Mapping[str, str] | None) -> otel_context.Context | None:
    if not headers or TRACEPARENT not in headers:
        return None
    return extract({TRACEPARENT: headers[TRACEPARENT]})


@contextlib.contextmanager
def consumer_span(
    name: str, subject: str, headers: Mapping[str, str] | None
) -> Iterator[Span | None]:
    """A CONSUMER span for handling one message, the child of the context in its headers,
    current while the block runs. A message without a trace gets none: starting a trace per
    untraced message would fill the back-end with fragments of nobody's request."""
    parent = _parent_of(headers) if _tracer is not None else None
    if _tracer is None or parent is None:
        yield None
        return
    with _tracer.start_as_current_span(
        name,
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={"messaging.system": "nats", "messaging.destination.name": subject},
    ) as span:
        yield span


@contextlib.contextmanager
def statement_span(name: str) -> Iterator[None]:
    """A CLIENT span for SQL run on psycopg's own connection (`Database.read_driver`), which
    the SQLAlchemy engine hooks do not see."""
    if _tracer is None:
        yield
        return
    with _tracer.start_as_current_span(
        name, kind=SpanKind.CLIENT, attributes={"db.system": "postgresql"}
    ):
        yield


@contextlib.contextmanager
def batch_spans(name: str, messages: Sequence[Any]) -> Iterator[None]:
    """Handling a batch of messages: one CONSUMER span per message that carries a sampled
    trace, each the child of its message's context and spanning the batch's handling, so every
    traced event's trace shows its consumer. The first of them is current while the block
    runs, so the batch's own statements land in a trace too. Messages without a trace get no
    span: a batch of 500 untraced events costs a header lookup each."""
    if _tracer is None:
        yield
        return
    spans: list[Span] = []
    for msg in messages:
        headers = msg.headers
        parent = _parent_of(headers)
        if parent is None:
            continue
        span = _tracer.start_span(
            name,
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "nats",
                "messaging.destination.name": msg.subject,
                "messaging.batch.message_count": len(messages),
            },
        )
        if span.is_recording():
            spans.append(span)
        else:
            span.end()
    if not spans:
        yield
        return
    try:
        with trace.use_span(spans[0], end_on_exit=False, record_exception=True):
            yield
    except BaseException as exc:
        for span in spans:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        for span in spans:
            span.end()


@contextlib.contextmanager
def continued(name: str, traceparents: Sequence[str]) -> Iterator[None]:
    """Run a block as the continuation of earlier requests: a span parented to the first
    context and linked to the others, current while the block runs; nothing without any."""
    if _tracer is None or not traceparents:
        yield
        return
    contexts = [trace.get_current_span(extract({TRACEPARENT: tp})) for tp in traceparents]
    links = [trace.Link(span.get_span_context()) for span in contexts[1:]]
    parent = trace.set_span_in_context(contexts[0])
    with _tracer.start_as_current_span(name, context=parent, links=links):
        yield


def log_ids() -> tuple[str, str] | None:
    """(trace_id, span_id) of the current span in hex, for log lines; None when there is none."""
    if _tracer is None:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return format(context.trace_id, "032x"), format(context.span_id, "016x")
