"""Structured JSON logs written by a background thread (finding I2).

Handlers on the event loop only enqueue the record; a QueueListener thread formats and writes
it, so a slow stdout or disk never blocks a request. The queue is bounded: when it is full,
records are dropped and counted rather than stalling the loop.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import sys
import time
from typing import Any

from mesh import context, metrics, tracing

_RESERVED = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line with the service, instance and request id."""

    def __init__(self, service: str, instance: str) -> None:
        super().__init__()
        self._static = {"service": service, "instance": instance}

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **self._static,
        }
        for key, value in vars(record).items():
            if key not in _RESERVED and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str, separators=(",", ":"))


class _DroppingQueueHandler(logging.handlers.QueueHandler):
    """Never blocks: a full queue drops the record and counts it (log_records_dropped_total)."""

    def enqueue(self, record: logging.LogRecord) -> None:
        try:
            self.queue.put_nowait(record)
        except queue.Full:
            metrics.LOG_RECORDS_DROPPED.inc()

    def prepare(self, record: logging.LogRecord) -> logging.LogRecord:
        # The stock prepare() formats on the caller's thread; the whole point is to format on
        # the listener's, so only capture what the listener cannot see: the request id and
        # the current span's ids (a log line then links to its trace).
        rid = context.request_id.get()
        if rid and not hasattr(record, "request_id"):
            record.request_id = rid
        ids = tracing.log_ids()
        if ids is not None:
            record.trace_id, record.span_id = ids
        return record


def configure_logging(
    service: str, instance: str, level: str = "INFO"
) -> logging.handlers.QueueListener:
    """Route the root logger through a bounded queue; returns the listener to stop on exit."""
    records: queue.Queue[logging.LogRecord] = queue.Queue(maxsize=10_000)
    sink = logging.StreamHandler(sys.stdout)
    sink.setFormatter(JsonFormatter(service, instance))
    listener = logging.handlers.QueueListener(records, sink, respect_handler_level=False)
    root = logging.getLogger()
    root.handlers.clear()
    root.addHandler(_DroppingQueueHandler(records))
    root.setLevel(level.upper())
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    listener.start()
    return listener
