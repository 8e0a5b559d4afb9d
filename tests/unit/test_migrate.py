"""The fast up-to-date check agrees with Alembic's own view of the migration files."""

from pathlib import Path

from alembic.script import ScriptDirectory

from pocketstack import config, services
from pocketstack.core import db, migrate


def test_code_heads_match_alembic(tmp_path: Path) -> None:
    dirs = services.migration_dirs(services.enabled(config.Settings(state_dir=tmp_path)))
    database = db.Database(f"sqlite:///{tmp_path / 'x.db'}")
    script = ScriptDirectory.from_config(migrate._config(database, dirs))
    assert migrate.code_heads(dirs) == set(script.get_heads())


def test_upgrade_runs_once_then_reports_nothing_to_do(tmp_path: Path) -> None:
    dirs = services.migration_dirs(services.enabled(config.Settings(state_dir=tmp_path)))
    database = db.Database(f"sqlite:///{tmp_path / 'x.db'}")
    assert migrate.pending(database, dirs)
    assert migrate.upgrade(database, dirs)
    assert not migrate.pending(database, dirs)
    assert not migrate.upgrade(database, dirs)
    assert migrate.database_heads(database) == migrate.code_heads(dirs)


def test_migrations_build_exactly_the_tables_the_models_declare(tmp_path: Path) -> None:
    """A model changed without a migration (or the reverse) shows up here, not in a user's
    database on the next upgrade."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    settings = config.Settings(state_dir=tmp_path, services=config.KNOWN_SERVICES)
    dirs = services.migration_dirs(services.enabled(settings))
    database = db.Database(f"sqlite:///{tmp_path / 'x.db'}")
    migrate.upgrade(database, dirs)
    with database.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), db.Base.metadata)
    assert differences == []


def test_cell_migrations_build_exactly_the_cell_tables(tmp_path: Path) -> None:
    """Cell databases have their own schema history; it must match the cell models too."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from pocketstack.compute import cell_models, cells

    database = db.Database(f"sqlite:///{tmp_path / 'cell.db'}")
    assert migrate.upgrade(database, [cells.MIGRATIONS])
    with database.engine.connect() as conn:
        differences = compare_metadata(
            MigrationContext.configure(conn), cell_models.CellBase.metadata
        )
    assert differences == []
