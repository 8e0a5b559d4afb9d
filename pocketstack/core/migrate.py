"""Alembic migrations: one history per service, applied together at `up`.

Each service keeps its revisions in its own `migrations/` folder with a
branch label, so a service's schema lives beside its models and all heads
are upgraded in one run. Alembic itself is imported only when the database
is behind: the common restart reads two small things (the revision ids in
the migration files, the `alembic_version` rows) and goes on, which keeps
`up` fast.
"""

from __future__ import annotations

import ast
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import inspect, text

from pocketstack.core import db as db_mod

_SCRIPT_LOCATION = str(Path(__file__).parent / "migrations")


def _config(database: db_mod.Database, version_dirs: Sequence[Path]) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", _SCRIPT_LOCATION)
    cfg.set_main_option("version_locations", " ".join(str(d) for d in version_dirs))
    cfg.set_main_option("path_separator", "space")
    cfg.attributes["engine"] = database.engine
    return cfg


def _assigned(module: ast.Module, name: str) -> Any:
    for node in module.body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == name for t in node.targets
        ):
            return ast.literal_eval(node.value)
    return None


def code_heads(version_dirs: Sequence[Path]) -> set[str]:
    """Revisions no other revision builds on, read from the files without importing them."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for directory in version_dirs:
        for path in directory.glob("*.py"):
            module = ast.parse(path.read_text())
            revision = _assigned(module, "revision")
            if revision is None:
                continue
            revisions.add(revision)
            down = _assigned(module, "down_revision")
            parents.update([down] if isinstance(down, str) else list(down or ()))
    return revisions - parents


def database_heads(database: db_mod.Database) -> set[str]:
    with database.engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return set()
        return {row[0] for row in conn.execute(text("SELECT version_num FROM alembic_version"))}


def pending(database: db_mod.Database, version_dirs: Sequence[Path]) -> bool:
    """True when the database is behind the code."""
    return database_heads(database) != code_heads(version_dirs)


def upgrade(database: db_mod.Database, version_dirs: Sequence[Path]) -> bool:
    """Bring the schema to the newest revision of every service; True if anything ran."""
    if not pending(database, version_dirs):
        return False
    from alembic import command

    command.upgrade(_config(database, version_dirs), "heads")
    return True
