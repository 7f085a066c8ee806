"""The edge's limits and timeouts, each with the reason for its value (summed up in
envoy/README.md)."""

from __future__ import annotations

# --- Timeouts -------------------------------------------------------------------------------
# A unary call that has not answered in 15 s is stuck (argon2 login ~30-100 ms, dashboards are
# one indexed query); a client's grpc-timeout may shorten it, never lengthen it.
UNARY_TIMEOUT = "15s"
# Live clients heartbeat every 30 s; 600 s of silence on a stream means the peer is gone, and
# anything shorter than a few heartbeats would cut quiet-but-healthy sessions.
STREAM_IDLE_TIMEOUT = "600s"
# Idle timeout of unary streams (HCM default; streaming routes override it per route).
DEFAULT_STREAM_IDLE_TIMEOUT = "60s"
# Slowloris guard: the whole request header block must arrive within 10 s of connecting.
REQUEST_HEADERS_TIMEOUT = "10s"
# A downstream or upstream connection with no stream for 5 min is closed.
CONNECTION_IDLE_TIMEOUT = "300s"
UPSTREAM_CONNECT_TIMEOUT = "1s"

# --- Sizes ----------------------------------------------------------------------------------
# Bearer JWTs are < 1 KiB; 32 KiB of headers is generous and half Envoy's 60 KiB default.
MAX_REQUEST_HEADERS_KB = 32
MAX_HEADERS_COUNT = 100
# JSON request bodies: forms and profile edits are small (video bytes never pass the edge); 1 MiB
# stops abuse long before memory matters. A JSON response (a catalog page, a dashboard) may be
# buffered up to 4 MiB, the services' gRPC message cap.
MAX_JSON_REQUEST_BYTES = 1 << 20
MAX_JSON_RESPONSE_BYTES = 4 << 20
# HTTP/2: a browser or a load driver multiplexes many live streams on one connection (a session
# holds up to 1,000 participants); flow-control windows bound the memory each may pin.
DOWNSTREAM_MAX_CONCURRENT_STREAMS = 2048
DOWNSTREAM_STREAM_WINDOW = 256 << 10
DOWNSTREAM_CONNECTION_WINDOW = 1 << 20
UPSTREAM_MAX_CONCURRENT_STREAMS = 1024
UPSTREAM_STREAM_WINDOW = 1 << 20
UPSTREAM_CONNECTION_WINDOW = 4 << 20
MAX_DOWNSTREAM_CONNECTIONS = 8192

# --- Upstream health ------------------------------------------------------------------------
# gRPC health every second (also when idle: a replica started after Envoy is used within ~1 s);
# three misses eject a replica, one pass brings it back. 2 s timeout so a busy event loop under
# a benchmark is not mistaken for a dead one.
HEALTH_INTERVAL = "1s"
HEALTH_TIMEOUT = "2s"
HEALTH_UNHEALTHY_THRESHOLD = 3
HEALTH_HEALTHY_THRESHOLD = 1
# HTTP/2 PING every 30 s (mesh servers allow one per 10 s) finds a half-open connection to a
# vanished pod in at most 40 s even when no call is in flight.
KEEPALIVE_INTERVAL = "30s"
KEEPALIVE_TIMEOUT = "10s"
# Circuit breakers for a 2-core box: far above what it can serve, low enough that a runaway
# client gets fast 503s instead of unbounded queues. max_requests counts open streams too.
MAX_UPSTREAM_CONNECTIONS = 1024
MAX_PENDING_REQUESTS = 1024
MAX_REQUESTS = 8192
MAX_RETRIES = 3

BODY_LIMIT = "envoy.filters.http.body_size_limit"
UPSTREAM_HTTP = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

# --- CORS -----------------------------------------------------------------------------------
LOCAL_ORIGIN_REGEX = r"^https?://(localhost|127\.0\.0\.1|\[::1\])(:[0-9]{1,5})?$"
CORS_ALLOW_METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
CORS_ALLOW_HEADERS = (
    "authorization, content-type, x-grpc-web, x-user-agent, grpc-timeout, x-request-id, "
    "x-accept-content-transfer-encoding, x-accept-response-streaming"
)
CORS_EXPOSE_HEADERS = "grpc-status, grpc-message, grpc-status-details-bin, x-request-id"
# Browsers cache a preflight this long (Chrome caps at 2 h); 10 min keeps config edits visible.
CORS_MAX_AGE = "600"


# --- Retries --------------------------------------------------------------------------------
# Only failures where the request provably never reached a service are retried, so a retry is
# safe for every method, idempotent or not ("reset" or "unavailable" could replay a Register or
# a Login whose first attempt already ran). A retry goes to another replica: previous_hosts
# rejects a host already tried, but re-draws only host_selection_retry_max_attempts times before
# taking what it drew, and least request over equal replicas draws a dead one as often as a live
# one. With 3 re-draws and 2 retries a call now and then still ended on the stopped replica
# before outlier detection ejected it (the ejection test in tests/edge failed once in three
# full runs); with 5 re-draws and 3 retries it passed 50 runs out of 50.
RETRY_ON = "connect-failure,refused-stream,reset-before-request"
NUM_RETRIES = 3
HOST_SELECTION_RETRY_MAX_ATTEMPTS = 5

# --- Sign-in rate limit ---------------------------------------------------------------------
# A token bucket per edge for each of Login, Register and Refresh (JSON, gRPC-Web and native
# gRPC all meet on the gRPC path). It caps what one edge forwards to argon2 hashing; per-account
# and per-address throttling is svc_user's job. Refresh costs no hash (one short transaction,
# ~4 ms of CPU, benchmarked at 300-570/s), so the bucket sits above what two cores can serve of
# any of the three: 1,000/s with a burst of 1,000 refuses only a flood.
AUTH_RATE_PER_SECOND = 1000
AUTH_RATE_BURST = 1000
