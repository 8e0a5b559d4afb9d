"""Alembic migrations: one history per service, applied together at `up`.

Each service keeps its revisions in its own `migrations/` folder with a
branch label, so a service's schema lives beside its models and all heads
are upgraded in one run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from pocketstack.core import db as db_mod

_SCRIPT_LOCATION = str(Path(__file__).parent / "migrations")


def _config(database: db_mod.Database, version_dirs: Sequence[Path]) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", _SCRIPT_LOCATION)
    cfg.set_main_option("version_locations", " ".join(str(d) for d in version_dirs))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["engine"] = database.engine
    return cfg


def pending(database: db_mod.Database, version_dirs: Sequence[Path]) -> bool:
    """True when the database is behind the code (cheap: no migration module runs)."""
    script = ScriptDirectory.from_config(_config(database, version_dirs))
    with database.engine.connect() as conn:
        current = set(MigrationContext.configure(conn).get_current_heads())
    return current != set(script.get_heads())


def upgrade(database: db_mod.Database, version_dirs: Sequence[Path]) -> bool:
    """Bring the schema to the newest revision of every service; True if anything ran."""
    if not pending(database, version_dirs):
        return False
    command.upgrade(_config(database, version_dirs), "heads")
    return True
