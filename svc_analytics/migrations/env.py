from mesh.migration_env import run_migrations
from svc_analytics.models import SCHEMA, metadata

run_migrations(SCHEMA, metadata)
