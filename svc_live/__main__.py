"""svc_live: live sessions (`python -m svc_live`)."""

import os

# Before grpc loads. grpc 1.85 hands every stream write from the loop's thread to its
# event-engine thread and back; a live pod makes ~10,000 writes a second, and on a busy box
# those handoffs become context switches (half a pod's CPU was in the kernel). Without the
# event-engine endpoints the loop's thread writes itself. Measured (A/B, same stack, Go
# receivers): one replica at 2,000 streams p95 48 ms at 34 µs per delivery against 172 ms at
# 48 µs; two replicas at 1,000, 58-63 ms at 57 µs against 78-86 ms at 71 µs; one replica at
# 1,000, 42-45 ms at 40-43 µs against 36-44 ms at 46-52 µs. Unary services gain nothing from
# it (progress through Envoy, same CPU per call), so only this one sets it. An operator's
# GRPC_EXPERIMENTS wins.
os.environ.setdefault(
    "GRPC_EXPERIMENTS",
    "-event_engine_listener,-event_engine_for_all_other_endpoints,"
    "-event_engine_client,-event_engine_callback_cq",
)

import uvloop

from svc_live.server import serve

if __name__ == "__main__":
    uvloop.run(serve())
