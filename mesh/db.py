"""The Postgres pool (finding S2): SQLAlchemy 2 async Core over psycopg 3.

Sized from config and warmed at start-up; a caller that cannot get a connection within the pool
timeout gets UNAVAILABLE in bounded time instead of hanging. Connections are recycled after a
maximum lifetime, a connection held too long is logged and counted when it comes back, and
start-up refuses to run when the replicas' pools together would exceed the server's
`max_connections`. After a server restart the first statement on a dead connection fails
(UNAVAILABLE) and SQLAlchemy invalidates the whole pool, so the next calls reconnect without a
service restart; a pre-ping on every checkout would cost a round trip per call to save one.
Reads run on autocommit connections: SQLAlchemy's autobegin would otherwise turn one SELECT
into three round trips (BEGIN, SELECT, ROLLBACK). Writes run in one transaction committed at
the RPC boundary. A hot read whose rows go straight into a response may take the same pooled
connection as psycopg's own (`read_driver`): SQLAlchemy's execution added about a third to the
client CPU of the analytics dashboard's statement.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import psycopg
from sqlalchemy import event
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry

from mesh import metrics, tracing
from mesh.config import MeshSettings
from mesh.errors import Unavailable

log = logging.getLogger("mesh.db")


def libpq_url(database_url: str) -> str:
    """The services' SQLAlchemy URL (`postgresql+psycopg://…`) as libpq takes it: for
    psycopg.connect, psql and pg_dump in tools and tests."""
    return database_url.replace("postgresql+psycopg://", "postgresql://", 1)


class Database:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._reader = engine.execution_options(isolation_level="AUTOCOMMIT")

    @classmethod
    @asynccontextmanager
    async def open(cls, settings: MeshSettings, schema: str) -> AsyncIterator[Database]:
        settings.require("database_url")
        engine = create_async_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout_seconds,
            pool_recycle=settings.db_pool_recycle_seconds,
            pool_pre_ping=False,
            # Bound values (e-mails, password hashes) never reach an error message or a log.
            hide_parameters=True,
            connect_args={
                "application_name": settings.instance_name,
                "connect_timeout": 5,
                "options": f"-c statement_timeout={settings.db_statement_timeout_ms}"
                f" -c search_path={schema},public",
            },
        )
        _track_pool(engine, settings.db_hold_warning_seconds)
        metrics.DB_POOL_CAPACITY.set(settings.db_pool_size + settings.db_max_overflow)
        tracing.instrument_engine(engine)
        db = cls(engine)
        try:
            await db.check_connection_budget(settings)
            await db.warm(min(settings.db_pool_size, 4))
            yield db
        finally:
            await engine.dispose()

    async def check_connection_budget(self, settings: MeshSettings) -> None:
        """Exit with a clear message when every replica's full pool would not fit in the
        connections the server lets ordinary roles open: past that, connects fail under load
        instead of waiting for a free pooled connection."""
        async with self._reader.connect() as conn:
            row = (
                await conn.exec_driver_sql(
                    "SELECT current_setting('max_connections')::int,"
                    " current_setting('superuser_reserved_connections')::int,"
                    " coalesce(current_setting('reserved_connections', true), '0')::int"
                )
            ).one()
        max_connections, superuser_reserved, reserved = (int(v) for v in row)
        budget = max_connections - superuser_reserved - reserved
        per_replica = settings.db_pool_size + settings.db_max_overflow
        need = settings.db_expected_replicas * per_replica
        numbers = (
            f"{settings.db_expected_replicas} replica(s) x (pool {settings.db_pool_size} + "
            f"overflow {settings.db_max_overflow}) = {need} connections; the server allows "
            f"{budget} ({max_connections} max_connections - {superuser_reserved + reserved} "
            "reserved)"
        )
        if need > budget:
            size, overflow, replicas = (
                settings.env_name(f)
                for f in ("db_pool_size", "db_max_overflow", "db_expected_replicas")
            )
            raise SystemExit(
                f"{settings.service}: the Postgres pool does not fit: {numbers}. Lower "
                f"{size} or {overflow}, run fewer replicas ({replicas}), or raise the "
                "server's max_connections."
            )
        log.info("postgres pool fits: %s", numbers)

    async def warm(self, connections: int) -> None:
        """Open connections now so the first requests do not pay the connect cost."""

        async def touch() -> None:
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")

        await asyncio.gather(*(touch() for _ in range(connections)))

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """An autocommit connection for reads that need no transaction."""
        waiting = _Waiting()
        try:
            async with self._reader.connect() as conn:
                waiting.done()
                yield conn
        except PoolTimeout:
            raise Unavailable("database busy: no connection free; retry shortly") from None
        finally:
            waiting.done()

    @asynccontextmanager
    async def read_driver(self, span: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """`read`'s autocommit connection as psycopg's own: statements use %(name)s
        placeholders and return plain tuples. `span` names the trace span (the SQLAlchemy
        hooks do not see these statements)."""
        async with self.read() as conn, _driver(conn, span) as driver:
            yield driver

    def write_driver(self, span: str) -> AbstractAsyncContextManager[psycopg.AsyncConnection[Any]]:
        """`read_driver`'s connection for a write that is one statement: in autocommit mode
        the statement is its own transaction (atomic, committed before it returns), so a
        hot batch write costs one round trip instead of three (BEGIN, statement, COMMIT)."""
        return self.read_driver(span)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; committed when the block ends, rolled back on an exception."""
        waiting = _Waiting()
        try:
            async with self.engine.begin() as conn:
                waiting.done()
                yield conn
        except PoolTimeout:
            raise Unavailable("database busy: no connection free; retry shortly") from None
        finally:
            waiting.done()

    @asynccontextmanager
    async def transaction_driver(self, span: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
        """`transaction`'s connection as psycopg's own, for a hot write path: statements use
        %(name)s placeholders and may be pipelined (`conn.pipeline()`), so a batch of them
        costs one round trip instead of one each, and no SQLAlchemy execution per statement.
        Committed when the block ends, rolled back on an exception, as `transaction`."""
        async with self.transaction() as conn, _driver(conn, span) as driver:
            yield driver


@asynccontextmanager
async def _driver(conn: AsyncConnection, span: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    """A pooled connection's psycopg connection, under a statement span of its own."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    assert isinstance(driver, psycopg.AsyncConnection)
    try:
        with tracing.statement_span(span):
            yield driver
    except psycopg.OperationalError as exc:
        # SQLAlchemy did not see the failure: a connection that may be broken is dropped,
        # not pooled (a cancelled statement leaves it usable).
        if not isinstance(exc, psycopg.errors.QueryCanceled):
            await conn.invalidate()
        raise


class _Waiting:
    """A caller between asking the pool and holding a connection: the waiting gauge counts it,
    and the wait is observed once, whether it ends with a connection or an error."""

    __slots__ = ("_started",)

    def __init__(self) -> None:
        self._started: float | None = time.perf_counter()
        metrics.DB_POOL_WAITING.inc()

    def done(self) -> None:
        if self._started is not None:
            metrics.DB_POOL_WAITING.dec()
            metrics.DB_POOL_WAIT.observe(time.perf_counter() - self._started)
            self._started = None


def _track_pool(engine: AsyncEngine, hold_warning_seconds: float) -> None:
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkout")
    def _out(_dbapi: object, record: ConnectionPoolEntry, _proxy: object) -> None:
        record.info["checked_out_at"] = time.monotonic()
        metrics.DB_POOL_CHECKED_OUT.inc()

    @event.listens_for(pool, "checkin")
    def _in(_dbapi: object, record: ConnectionPoolEntry) -> None:
        metrics.DB_POOL_CHECKED_OUT.dec()
        since = record.info.pop("checked_out_at", None)
        if since is None:
            return
        held = time.monotonic() - since
        if held > hold_warning_seconds:
            metrics.DB_CONNECTION_HELD_TOO_LONG.inc()
            log.warning(
                "a Postgres connection was held %.2f s (warning bound %.2f s): a long "
                "transaction holds its locks and starves the pool",
                held,
                hold_warning_seconds,
                extra={"held_seconds": round(held, 3)},
            )

    @event.listens_for(pool, "connect")
    def _open(*_: object) -> None:
        metrics.DB_POOL_SIZE.inc()

    @event.listens_for(pool, "close")
    def _close(*_: object) -> None:
        metrics.DB_POOL_SIZE.dec()
