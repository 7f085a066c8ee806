"""`python -m mesh.migrate`: apply every service's Alembic migrations (in service order).

Each service owns one schema and keeps its history in `svc_<name>/migrations`; its version
table lives in that schema too, so services migrate independently. Run once before the
services start (the launcher does); replicas never migrate on their own.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from alembic import command
from alembic.config import Config

from mesh.platform import NAMES

ROOT = Path(__file__).resolve().parent.parent
SERVICES = NAMES


def alembic_config(name: str, database_url: str) -> Config | None:
    """Alembic's config for service `name`'s migrations, or None when it has none."""
    location = ROOT / f"svc_{name}" / "migrations"
    if not (location / "env.py").exists():
        return None
    config = Config()
    config.set_main_option("script_location", str(location))
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def migrate(database_url: str, services: tuple[str, ...] = SERVICES) -> list[str]:
    applied = []
    for name in services:
        config = alembic_config(name, database_url)
        if config is None:
            continue
        command.upgrade(config, "head")
        applied.append(name)
    return applied


def main() -> int:
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        print("mesh.migrate: DATABASE_URL is required", file=sys.stderr)
        return 2
    applied = migrate(url)
    print(f"migrated: {', '.join(applied) or 'nothing to migrate'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
