"""Prometheus metrics (finding I3): rate, errors and duration per RPC, plus pool and cache
gauges that services register. Exposed on the service's metrics port at /metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram, start_http_server

# Buckets from 0.5 ms: an empty call costs ~0.2 ms, and the SLAs live between 50 ms and 1 s.
_LATENCY_BUCKETS = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip

RPC_STARTED = Counter(
    "grpc_server_started_total", "RPCs started on the server.", ["grpc_service", "grpc_method"]
)
RPC_HANDLED = Counter(
    "grpc_server_handled_total",
    "RPCs completed on the server, by status code.",
    ["grpc_service", "grpc_method", "grpc_code"],
)
RPC_LATENCY = Histogram(
    "grpc_server_handling_seconds",
    "Time from the start of an RPC to its last response.",
    ["grpc_service", "grpc_method"],
    buckets=_LATENCY_BUCKETS,
)
STREAMS_OPEN = Gauge("grpc_server_streams_open", "Streaming RPCs open now.")
CACHE_REQUESTS = Counter(
    "cache_requests_total", "Cache look-ups by kind and outcome (hit, miss).", ["kind", "outcome"]
)
DB_POOL_CHECKED_OUT = Gauge("db_pool_checked_out", "Postgres connections in use.")
DB_POOL_SIZE = Gauge("db_pool_size", "Postgres connections open.")
OUTBOX_PUBLISHED = Counter("outbox_published_total", "Events the outbox relay published.")
OUTBOX_DEAD_LETTERED = Counter(
    "outbox_dead_lettered_total", "Events parked in the dead-letter table after repeated failures."
)
OUTBOX_PUBLISH_FAILURES = Counter(
    "outbox_publish_failures_total", "Failed publish attempts of outbox rows, by kind.", ["kind"]
)
DEPENDENCY_ERRORS = Counter(
    "dependency_errors_total",
    "Outages of a backing server that reached a caller, by dependency and status.",
    ["dependency", "grpc_code"],
)
CACHE_INVALIDATION_FAILURES = Counter(
    "cache_invalidation_failures_total",
    "Cache invalidations lost to a cache outage after a committed write (entries expire by TTL).",
    ["kind"],
)
DB_CONNECTION_HELD_TOO_LONG = Counter(
    "db_connection_held_too_long_total",
    "Postgres connections returned to the pool after being held longer than the warning bound.",
)
LOG_RECORDS_DROPPED = Counter(
    "log_records_dropped_total", "Log records dropped because the log queue was full."
)
OUTBOX_LAG = Histogram(
    "outbox_lag_seconds",
    "Time from an event's commit to its publication.",
    buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0),
)


def split_method(full: str) -> tuple[str, str]:
    """'/pkg.Svc/Method' -> ('pkg.Svc', 'Method')."""
    _, service, method = full.split("/", 2)
    return service, method


def serve_metrics(port: int, host: str = "127.0.0.1") -> None:
    if port:
        start_http_server(port, addr=host)


EVENT_APPLY_LAG = Histogram(
    "event_apply_lag_seconds",
    "Time from an event's creation (occur_time) to its effect committed in a read model.",
    ["consumer"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 30.0, 300.0),
)
EVENTS_APPLIED = Counter(
    "events_applied_total", "Events a read-model consumer applied.", ["consumer"]
)

# Issue 16 item 3: the back-ends' health as each process sees it. Labels are roles, commands,
# streams and durables: a handful each, never ids.
DB_POOL_CAPACITY = Gauge(
    "db_pool_capacity", "Postgres connections the pool may open (size + overflow)."
)
DB_POOL_WAITING = Gauge("db_pool_waiting", "Callers waiting for a Postgres connection now.")
DB_POOL_WAIT = Histogram(
    "db_pool_wait_seconds",
    "Time from asking the pool for a connection to holding one (BEGIN included for writes).",
    buckets=_LATENCY_BUCKETS,
)
VALKEY_COMMAND = Histogram(
    "valkey_command_seconds",
    "Valkey command round trips (pipelines excluded), by role (cache, state) and command.",
    ["role", "command"],
    buckets=_LATENCY_BUCKETS,
)
JETSTREAM_PENDING = Gauge(
    "jetstream_consumer_pending",
    "Messages of the stream not yet delivered to the durable consumer (its lag).",
    ["stream", "durable"],
)
JETSTREAM_ACK_PENDING = Gauge(
    "jetstream_consumer_ack_pending",
    "Messages delivered to the durable consumer and not yet acknowledged.",
    ["stream", "durable"],
)
JETSTREAM_REDELIVERED = Gauge(
    "jetstream_consumer_redelivered",
    "Messages the durable consumer has had delivered more than once and not yet acknowledged.",
    ["stream", "durable"],
)
OUTBOX_BACKLOG = Gauge("outbox_backlog", "Outbox rows not yet published (this service's table).")
OUTBOX_OLDEST_AGE = Gauge(
    "outbox_oldest_age_seconds", "Age of the oldest unpublished outbox row (0 when none)."
)
OUTBOX_DEAD_LETTERS = Gauge(
    "outbox_dead_letters", "Rows in this service's outbox dead-letter table."
)
