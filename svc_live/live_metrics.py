"""svc_live's metrics (mesh.metrics style: few labels, all bounded)."""

from prometheus_client import Counter, Gauge

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
