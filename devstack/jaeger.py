"""Jaeger v1.75.0 all-in-one (`make tools` builds it into .tools/bin/jaeger), the trace back-end
of a stack started with `--observe`.

The binary is Jaeger v2, an OpenTelemetry Collector distribution: it reads a collector config,
which we write with every listener on loopback and on the stack's own ports (its defaults are
the well-known ports on all interfaces). Traces live in memory, bounded by a trace count: a
dev stack's traces are for looking at now, not for keeping, and stopping the stack forgets
them along with the process.
"""

from __future__ import annotations

import json
from pathlib import Path

from devstack.ports import LOOPBACK, JaegerPorts
from devstack.processes import ManagedProcess, built_tool, http_ok

VERSION = "v1.75.0"
BINARY = Path(__file__).resolve().parent.parent / ".tools" / "bin" / "jaeger"
# Enough for minutes of a benchmark at the default sampling ratio; beyond, the oldest go.
MAX_TRACES = 50_000


def otlp_endpoint(ports: JaegerPorts) -> str:
    """What services and Envoy export to (OTLP over gRPC, no TLS on loopback)."""
    return f"http://{LOOPBACK}:{ports.otlp_grpc}"


def ui_url(ports: JaegerPorts) -> str:
    return f"http://{LOOPBACK}:{ports.query_http}"


def binary() -> Path:
    return built_tool(BINARY, f"Jaeger {VERSION}", "builds it with Go, a few minutes once")


def render_config(ports: JaegerPorts) -> str:
    """The collector config as JSON (a YAML subset, which the collector reads)."""
    config = {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch"],
                    "exporters": ["jaeger_storage_exporter"],
                }
            },
            # Jaeger's own metrics would take a fixed port (8888) on every stack; none needed.
            "telemetry": {"metrics": {"level": "none"}, "logs": {"level": "warn"}},
        },
        "extensions": {
            "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": MAX_TRACES}}}},
            "jaeger_query": {
                "storage": {"traces": "memstore"},
                "http": {"endpoint": f"{LOOPBACK}:{ports.query_http}"},
                "grpc": {"endpoint": f"{LOOPBACK}:{ports.query_grpc}"},
            },
            "healthcheckv2": {
                "use_v2": True,
                "http": {"endpoint": f"{LOOPBACK}:{ports.health}"},
            },
        },
        "receivers": {
            "otlp": {
                "protocols": {
                    "grpc": {"endpoint": f"{LOOPBACK}:{ports.otlp_grpc}"},
                    "http": {"endpoint": f"{LOOPBACK}:{ports.otlp_http}"},
                }
            }
        },
        "processors": {"batch": {}},
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
    }
    return json.dumps(config, indent=2) + "\n"


def server(*, config_path: Path, ports: JaegerPorts, log_path: Path) -> ManagedProcess:
    config_path.parent.mkdir(parents=True, exist_ok=True)
    config_path.write_text(render_config(ports))
    # SIGTERM: the collector shuts its receivers and exits.
    return ManagedProcess(
        name="jaeger",
        index=0,
        argv=[str(binary()), "--config", f"file:{config_path}"],
        log_path=log_path,
        grace=5.0,
    )


def is_ready(ports: JaegerPorts) -> bool:
    """The query API answers once storage and receivers are up (health alone says less)."""
    return http_ok(f"{ui_url(ports)}/api/services")
