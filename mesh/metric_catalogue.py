"""The platform's metric families, listed once (issue 16 items 3 and 6): each with the processes
that export it and the dashboard panel that shows it. deploy/grafana/elearn.json is generated
from this list (`python -m mesh.dashboard`), and tests check that it names every family the
code registers, that every panel queries a family listed here, and that a running stack
exports them.

A family is named as it is scraped: counters with `_total`, histograms by their base name.
"""

from __future__ import annotations

from dataclasses import dataclass

ALL = "*"  # every process started through mesh.server (services and workers)


@dataclass(frozen=True)
class Metric:
    name: str
    kind: str  # counter, gauge, histogram
    row: str  # dashboard row
    title: str
    query: str  # PromQL of its panel
    unit: str  # Grafana unit id
    jobs: tuple[str, ...] = (ALL,)  # Prometheus jobs (process names) that export it


def _p95(name: str, by: str = "job") -> str:
    return f"histogram_quantile(0.95, sum by (le, {by}) (rate({name}_bucket[1m])))"


CATALOGUE: tuple[Metric, ...] = (
    # --- RPCs (RED) ----------------------------------------------------------------------------
    Metric("grpc_server_started_total", "counter", "RPCs", "RPC rate by method",
           "sum by (job, grpc_method) (rate(grpc_server_started_total[1m]))", "reqps"),
    Metric("grpc_server_handled_total", "counter", "RPCs", "Errors by code",
           'sum by (job, grpc_code) (rate(grpc_server_handled_total{grpc_code!="OK"}[1m]))',
           "reqps"),
    Metric("grpc_server_handling_seconds", "histogram", "RPCs", "p95 latency by method",
           _p95("grpc_server_handling_seconds", "job, grpc_method"), "s"),
    Metric("grpc_server_streams_open", "gauge", "RPCs", "Streams open",
           "sum by (job) (grpc_server_streams_open)", "short"),
    Metric("dependency_errors_total", "counter", "RPCs", "Outages reaching callers",
           "sum by (job, dependency) (rate(dependency_errors_total[1m]))", "reqps"),
    Metric("log_records_dropped_total", "counter", "RPCs", "Log records dropped",
           "sum by (job) (rate(log_records_dropped_total[5m]))", "short"),
    # --- Postgres ------------------------------------------------------------------------------
    Metric("db_pool_checked_out", "gauge", "Postgres", "Pool in use / capacity",
           "max by (job) (db_pool_checked_out / db_pool_capacity)", "percentunit"),
    Metric("db_pool_capacity", "gauge", "Postgres", "Pool capacity",
           "max by (job) (db_pool_capacity)", "short"),
    Metric("db_pool_size", "gauge", "Postgres", "Connections open",
           "sum by (job) (db_pool_size)", "short"),
    Metric("db_pool_waiting", "gauge", "Postgres", "Callers waiting for a connection",
           "sum by (job) (db_pool_waiting)", "short"),
    Metric("db_pool_wait_seconds", "histogram", "Postgres", "p95 pool wait",
           _p95("db_pool_wait_seconds"), "s"),
    Metric("db_connection_held_too_long_total", "counter", "Postgres", "Connections held too long",
           "sum by (job) (rate(db_connection_held_too_long_total[5m]))", "short"),
    # --- Valkey and cache ----------------------------------------------------------------------
    Metric("valkey_command_seconds", "histogram", "Valkey", "p95 command latency by role",
           _p95("valkey_command_seconds", "role"), "s"),
    Metric("cache_requests_total", "counter", "Valkey", "Cache hit ratio by kind",
           'sum by (kind) (rate(cache_requests_total{outcome="hit"}[5m]))'
           " / sum by (kind) (rate(cache_requests_total[5m]))", "percentunit"),
    Metric("cache_invalidation_failures_total", "counter", "Valkey", "Lost invalidations",
           "sum by (kind) (rate(cache_invalidation_failures_total[5m]))", "short"),
    # --- Events --------------------------------------------------------------------------------
    Metric("outbox_published_total", "counter", "Events", "Events published",
           "sum by (job) (rate(outbox_published_total[1m]))", "ops"),
    Metric("outbox_publish_failures_total", "counter", "Events", "Publish failures",
           "sum by (job, kind) (rate(outbox_publish_failures_total[5m]))", "ops"),
    Metric("outbox_lag_seconds", "histogram", "Events", "p95 commit-to-publish",
           _p95("outbox_lag_seconds"), "s"),
    Metric("outbox_backlog", "gauge", "Events", "Outbox backlog",
           "max by (job) (outbox_backlog)", "short"),
    Metric("outbox_oldest_age_seconds", "gauge", "Events", "Oldest unpublished event",
           "max by (job) (outbox_oldest_age_seconds)", "s"),
    Metric("outbox_dead_letters", "gauge", "Events", "Dead letters",
           "max by (job) (outbox_dead_letters)", "short"),
    Metric("outbox_dead_lettered_total", "counter", "Events", "Events dead-lettered",
           "sum by (job) (increase(outbox_dead_lettered_total[1h]))", "short"),
    Metric("jetstream_consumer_pending", "gauge", "Events", "Consumer lag (queue depth)",
           "max by (durable) (jetstream_consumer_pending)", "short"),
    Metric("jetstream_consumer_ack_pending", "gauge", "Events", "Unacked deliveries",
           "max by (durable) (jetstream_consumer_ack_pending)", "short"),
    Metric("jetstream_consumer_redelivered", "gauge", "Events", "Redelivered",
           "max by (durable) (jetstream_consumer_redelivered)", "short"),
    Metric("event_apply_lag_seconds", "histogram", "Events", "p95 event-to-read-model",
           _p95("event_apply_lag_seconds", "consumer"), "s", ("analytics",)),
    Metric("events_applied_total", "counter", "Events", "Events applied",
           "sum by (consumer) (rate(events_applied_total[1m]))", "ops", ("analytics",)),
    # --- Progress ------------------------------------------------------------------------------
    Metric("progress_dirty_samples", "gauge", "Progress", "Samples waiting for a flush",
           "max(progress_dirty_samples)", "short", ("course",)),
    Metric("progress_flush_sample_age_seconds", "histogram", "Progress", "p95 flush lag",
           _p95("progress_flush_sample_age_seconds"), "s", ("course",)),
    Metric("progress_flush_batch_size", "histogram", "Progress", "Mean batch size",
           "sum(rate(progress_flush_batch_size_sum[1m]))"
           " / sum(rate(progress_flush_batch_size_count[1m]))", "short", ("course",)),
    Metric("progress_flush_batch_seconds", "histogram", "Progress", "p95 batch write",
           _p95("progress_flush_batch_seconds"), "s", ("course",)),
    Metric("progress_flushed_samples_total", "counter", "Progress", "Samples flushed",
           "sum(rate(progress_flushed_samples_total[1m]))", "ops", ("course",)),
    # --- Live ----------------------------------------------------------------------------------
    Metric("live_streams_active", "gauge", "Live", "Streams per pod / limit",
           "max by (replica) (live_streams_active / live_streams_limit)", "percentunit", ("live",)),
    Metric("live_streams_limit", "gauge", "Live", "Stream limit per pod",
           "max(live_streams_limit)", "short", ("live",)),
    Metric("live_sessions_local", "gauge", "Live", "Sessions per pod",
           "max by (replica) (live_sessions_local)", "short", ("live",)),
    Metric("live_delivery_seconds", "histogram", "Live", "p95 delivery",
           _p95("live_delivery_seconds"), "s", ("live",)),
    Metric("live_deliveries_total", "counter", "Live", "Deliveries",
           "sum(rate(live_deliveries_total[1m]))", "ops", ("live",)),
    Metric("live_events_dropped_total", "counter", "Live", "Dropped events",
           "sum(rate(live_events_dropped_total[5m]))", "ops", ("live",)),
    Metric("live_slow_consumer_disconnects_total", "counter", "Live", "Slow-consumer disconnects",
           "sum(rate(live_slow_consumer_disconnects_total[5m]))", "ops", ("live",)),
    Metric("live_idle_streams_closed_total", "counter", "Live", "Idle streams closed",
           "sum(rate(live_idle_streams_closed_total[5m]))", "ops", ("live",)),
    Metric("live_gap_fills_total", "counter", "Live", "Gap fills",
           "sum(rate(live_gap_fills_total[5m]))", "ops", ("live",)),
    Metric("live_refused_total", "counter", "Live", "Refused client events",
           "sum by (reason) (rate(live_refused_total[5m]))", "ops", ("live",)),
    Metric("live_write_turns_bounded", "gauge", "Live", "Pods writing in turns (pressure)",
           "sum(live_write_turns_bounded)", "short", ("live",)),
    Metric("live_writes_stalled_total", "counter", "Live", "Stalled stream writes",
           "sum(rate(live_writes_stalled_total[5m]))", "ops", ("live",)),
    # --- Edge (Envoy's own stats, not registered by our code) ------------------------------------
    Metric("envoy_http_downstream_rq_xx", "counter", "Edge", "Edge responses by class",
           "sum by (envoy_response_code_class) (rate(envoy_http_downstream_rq_xx[1m]))", "reqps",
           ("envoy",)),
)  # fmt: skip

BY_NAME = {m.name: m for m in CATALOGUE}
