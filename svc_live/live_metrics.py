"""svc_live's metrics (mesh.metrics style: few labels, all bounded)."""

from prometheus_client import Counter, Gauge, Histogram

STREAMS = Gauge("live_streams_active", "Live session streams open on this pod.")
SESSIONS = Gauge("live_sessions_local", "Sessions with participants on this pod.")
DELIVERIES = Counter("live_deliveries_total", "Session events queued to local streams.")
DROPPED = Counter("live_events_dropped_total", "Events dropped from slow streams' buffers.")
SLOW_CONSUMERS = Counter(
    "live_slow_consumer_disconnects_total", "Streams closed for staying too slow."
)
IDLE_CLOSED = Counter("live_idle_streams_closed_total", "Streams closed for lack of heartbeats.")
GAP_FILLS = Counter(
    "live_gap_fills_total", "Out-of-order arrivals filled from the history in Valkey."
)
REFUSED = Counter("live_refused_total", "Client events refused, by reason.", ["reason"])
STREAMS_LIMIT = Gauge("live_streams_limit", "Streams this pod accepts (max_streams_per_pod).")
DELIVERY = Histogram(
    "live_delivery_seconds",
    "Time from an event's sequencing (server_time) to its queueing on this pod's streams.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.03, 0.05, 0.1, 0.25, 0.5, 1.0),
)
WRITE_TURNS_BOUNDED = Gauge(
    "live_write_turns_bounded", "1 while this pod bounds its stream writes in flight (pressure)."
)
WRITES_STALLED = Counter(
    "live_writes_stalled_total", "Stream writes that outlasted write_stall_seconds (slow readers)."
)
