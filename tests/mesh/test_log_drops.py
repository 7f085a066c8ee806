"""A full log queue drops records and counts them in a Prometheus counter (issue 10, item 17)."""

from __future__ import annotations

import logging
import queue

from prometheus_client import REGISTRY

from mesh.logs import _DroppingQueueHandler


def test_dropped_log_records_feed_the_metric() -> None:
    before = REGISTRY.get_sample_value("log_records_dropped_total") or 0.0
    records: queue.Queue[logging.LogRecord] = queue.Queue(maxsize=1)
    handler = _DroppingQueueHandler(records)
    logger = logging.getLogger("tests.mesh.log_drops")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        for n in range(4):
            logger.warning("record %d", n)
    finally:
        logger.removeHandler(handler)
    assert records.qsize() == 1
    assert REGISTRY.get_sample_value("log_records_dropped_total") == before + 3
