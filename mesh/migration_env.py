"""The body of every service's Alembic env.py: one schema per service, its version table in
that schema, a sync psycopg connection (migrations run once, before the services)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import MetaData, create_engine, text


def run_migrations(schema: str, metadata: MetaData) -> None:
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise SystemExit("alembic: sqlalchemy.url is not set (use python -m mesh.migrate)")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.configure(
            connection=conn,
            target_metadata=metadata,
            version_table_schema=schema,
            include_schemas=True,
            transaction_per_migration=False,
        )
        context.run_migrations()
    engine.dispose()
