"""The Postgres pool (finding S2): SQLAlchemy 2 async Core over psycopg 3.

Sized from config and warmed at start-up; a caller that cannot get a connection within the pool
timeout gets UNAVAILABLE in bounded time instead of hanging. Reads run on autocommit
connections: SQLAlchemy's autobegin would otherwise turn one SELECT into three round trips
(BEGIN, SELECT, ROLLBACK). Writes run in one transaction committed at the RPC boundary.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy import event
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from mesh import metrics
from mesh.config import MeshSettings
from mesh.errors import Unavailable


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
            pool_recycle=1800,
            pool_pre_ping=False,
            connect_args={
                "application_name": settings.instance_name,
                "connect_timeout": 5,
                "options": f"-c statement_timeout={settings.db_statement_timeout_ms}"
                f" -c search_path={schema},public",
            },
        )
        _track_pool(engine)
        db = cls(engine)
        try:
            await db.warm(min(settings.db_pool_size, 4))
            yield db
        finally:
            await engine.dispose()

    async def warm(self, connections: int) -> None:
        """Open connections now so the first requests do not pay the connect cost."""

        async def touch() -> None:
            async with self.engine.connect() as conn:
                await conn.exec_driver_sql("SELECT 1")

        await asyncio.gather(*(touch() for _ in range(connections)))

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """An autocommit connection for reads that need no transaction."""
        try:
            async with self._reader.connect() as conn:
                yield conn
        except PoolTimeout:
            raise Unavailable("database busy: no connection free; retry shortly") from None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction; committed when the block ends, rolled back on an exception."""
        try:
            async with self.engine.begin() as conn:
                yield conn
        except PoolTimeout:
            raise Unavailable("database busy: no connection free; retry shortly") from None


def _track_pool(engine: AsyncEngine) -> None:
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "checkout")
    def _out(*_: object) -> None:
        metrics.DB_POOL_CHECKED_OUT.inc()

    @event.listens_for(pool, "checkin")
    def _in(*_: object) -> None:
        metrics.DB_POOL_CHECKED_OUT.dec()

    @event.listens_for(pool, "connect")
    def _open(*_: object) -> None:
        metrics.DB_POOL_SIZE.inc()

    @event.listens_for(pool, "close")
    def _close(*_: object) -> None:
        metrics.DB_POOL_SIZE.dec()
