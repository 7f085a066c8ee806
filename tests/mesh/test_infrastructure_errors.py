"""Outages of Postgres, Valkey and NATS map to retryable statuses, never INTERNAL (issue 10,
item 8). Pure mapping; tests/mesh/test_outages.py drives the same path with real servers."""

from __future__ import annotations

import grpc
import nats.errors
import psycopg
import pytest
import redis.exceptions
import sqlalchemy.exc
from prometheus_client import REGISTRY

from mesh.errors import infrastructure_error

UNAVAILABLE = grpc.StatusCode.UNAVAILABLE


def wrapped(orig: Exception) -> sqlalchemy.exc.DBAPIError:
    """How SQLAlchemy hands a driver error to the caller."""
    return sqlalchemy.exc.DBAPIError.instance("SELECT 1", {}, orig, psycopg.Error)


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (psycopg.OperationalError("server closed the connection"), UNAVAILABLE),
        (psycopg.InterfaceError("the connection is closed"), UNAVAILABLE),
        (wrapped(psycopg.OperationalError("connection refused")), UNAVAILABLE),
        (psycopg.errors.QueryCanceled("canceling statement"), grpc.StatusCode.DEADLINE_EXCEEDED),
        (wrapped(psycopg.errors.QueryCanceled("timeout")), grpc.StatusCode.DEADLINE_EXCEEDED),
        (sqlalchemy.exc.TimeoutError("QueuePool limit reached"), UNAVAILABLE),
        (redis.exceptions.ConnectionError("Connection refused"), UNAVAILABLE),
        (redis.exceptions.TimeoutError("Timeout reading"), UNAVAILABLE),
        (redis.exceptions.BusyLoadingError("LOADING"), UNAVAILABLE),
        (redis.exceptions.OutOfMemoryError("OOM command not allowed"), UNAVAILABLE),
        (redis.exceptions.ResponseError("OOM command not allowed when used memory"), UNAVAILABLE),
        (nats.errors.TimeoutError(), UNAVAILABLE),
        (nats.errors.NoRespondersError(), UNAVAILABLE),
        (nats.errors.ConnectionClosedError(), UNAVAILABLE),
    ],
)
def test_outage_maps_to_a_retryable_status(exc: Exception, code: grpc.StatusCode) -> None:
    mapped = infrastructure_error(exc)
    assert mapped is not None
    assert mapped.code is code
    assert "SELECT" not in mapped.message, "the status says what failed, not the statement"


def test_an_error_caused_by_an_outage_maps_too() -> None:
    try:
        try:
            raise redis.exceptions.ConnectionError("refused")
        except redis.exceptions.ConnectionError as inner:
            raise RuntimeError("throttle check failed") from inner
    except RuntimeError as outer:
        mapped = infrastructure_error(outer)
    assert mapped is not None and mapped.code is UNAVAILABLE


@pytest.mark.parametrize(
    "exc",
    [
        ValueError("a bug"),
        KeyError("x"),
        wrapped(psycopg.errors.UniqueViolation("duplicate key")),
        redis.exceptions.ResponseError("WRONGTYPE Operation against a key"),
    ],
)
def test_bugs_are_not_disguised_as_outages(exc: Exception) -> None:
    assert infrastructure_error(exc) is None


def test_mapped_outages_are_counted_per_dependency() -> None:
    labels = {"dependency": "valkey", "grpc_code": "UNAVAILABLE"}
    before = REGISTRY.get_sample_value("dependency_errors_total", labels) or 0.0
    infrastructure_error(redis.exceptions.ConnectionError("refused"))
    assert REGISTRY.get_sample_value("dependency_errors_total", labels) == before + 1
