from mesh.migration_env import run_migrations
from svc_live.models import SCHEMA, metadata

run_migrations(SCHEMA, metadata)
