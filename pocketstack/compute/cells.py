"""Cells v2: the cell mappings of the API database and one Database per cell.

Every cell has its own database and schema history; cell0 holds the servers
that never scheduled. All-in-one puts cell databases beside the API database
(SQLite files in the state dir, or `<name>_<cell>` databases on the same
PostgreSQL/MariaDB server, created on first use); `pocketstack manage cell
create --db URL` can put a cell anywhere.
"""

from __future__ import annotations

import threading
import uuid as uuidlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import create_engine, delete, func, select, text, update
from sqlalchemy.engine import make_url

from pocketstack import config
from pocketstack.compute import models
from pocketstack.core import db as db_mod
from pocketstack.core import errors, migrate
from pocketstack.core.runtime import Runtime

CELL0_UUID = "00000000-0000-0000-0000-000000000000"
CELL0_NAME = "cell0"
DEFAULT_CELL_NAME = "cell1"
MIGRATIONS = Path(__file__).parent / "cell_migrations"
_STATE_KEY = "compute.cells"


@dataclass(frozen=True, slots=True)
class Cell:
    uuid: str
    name: str
    database_url: str  # empty: the default place beside the API database (default_url)
    disabled: bool

    @property
    def is_cell0(self) -> bool:
        return self.uuid == CELL0_UUID


@dataclass(slots=True)
class _Open:
    """This process's engines, one per cell, opened on first use."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    databases: dict[str, db_mod.Database] = field(default_factory=dict)


def now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def default_url(settings: config.Settings, cell_name: str) -> str:
    """Where all-in-one keeps a cell's database: beside the API database."""
    url = settings.database_url
    if url.startswith("sqlite"):
        return f"sqlite:///{settings.state_dir / f'compute_{cell_name}.db'}"
    parsed = make_url(url)
    return parsed.set(database=f"{parsed.database}_{cell_name}").render_as_string(
        hide_password=False
    )


def _create_database_if_missing(url: str) -> None:
    """PostgreSQL and MariaDB need the database itself to exist; SQLite makes its file."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return
    name = parsed.database
    if parsed.get_backend_name() == "postgresql":
        server = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
        exists_sql = text("SELECT 1 FROM pg_database WHERE datname = :name")
        create_sql = f'CREATE DATABASE "{name}"'
    else:
        server = create_engine(parsed.set(database=""), isolation_level="AUTOCOMMIT")
        exists_sql = text("SELECT 1 FROM information_schema.schemata WHERE schema_name = :name")
        create_sql = f"CREATE DATABASE `{name}`"
    try:
        with server.connect() as conn:
            if conn.execute(exists_sql, {"name": name}).first() is None:
                conn.exec_driver_sql(create_sql)
    finally:
        server.dispose()


def database(runtime: Runtime, cell: Cell) -> db_mod.Database:
    """The cell's database, opened once per process."""
    opened: _Open = runtime.state.setdefault(_STATE_KEY, _Open())
    found = opened.databases.get(cell.uuid)
    if found is not None:
        return found
    with opened.lock:
        if cell.uuid not in opened.databases:
            opened.databases[cell.uuid] = db_mod.Database(url_of(runtime.settings, cell))
        return opened.databases[cell.uuid]


def database_of(runtime: Runtime, cell_uuid: str) -> db_mod.Database:
    """The database of the cell with this uuid; once open, found without reading the
    mappings (where a cell's database is never changes)."""
    opened: _Open = runtime.state.setdefault(_STATE_KEY, _Open())
    found = opened.databases.get(cell_uuid)
    return found if found is not None else database(runtime, get_cell(runtime, cell_uuid))


def dispose(runtime: Runtime) -> None:
    """Close this process's cell engines (the API database's is the runtime's own)."""
    opened: _Open | None = runtime.state.get(_STATE_KEY)
    if opened is not None:
        with opened.lock:
            for database_ in opened.databases.values():
                database_.dispose()
            opened.databases.clear()


def url_of(settings: config.Settings, cell: Cell) -> str:
    """Where the cell's database is; a default one follows the state dir if it moves."""
    return cell.database_url or default_url(settings, cell.name)


def _view(row: models.CellMapping) -> Cell:
    return Cell(row.uuid, row.name, row.database_url, row.disabled)


def list_cells(runtime: Runtime) -> list[Cell]:
    """Every cell, cell0 first, then by name."""
    with runtime.db.read() as session:
        rows = session.scalars(select(models.CellMapping)).all()
    return sorted((_view(r) for r in rows), key=lambda c: (not c.is_cell0, c.name))


def get_cell(runtime: Runtime, name_or_uuid: str) -> Cell:
    for cell in list_cells(runtime):
        if name_or_uuid in (cell.name, cell.uuid):
            return cell
    raise errors.NotFound(f"Cell {name_or_uuid} could not be found.")


def create_cell(runtime: Runtime, name: str, database_url: str | None = None) -> Cell:
    """Map a new cell and bring its database's schema up to date."""
    url = database_url or ""
    with runtime.db.write() as session:
        if session.scalar(select(models.CellMapping).where(models.CellMapping.name == name)):
            raise errors.Conflict(f"A cell named {name} already exists.")
        cell_uuid = CELL0_UUID if name == CELL0_NAME else str(uuidlib.uuid4())
        session.add(
            models.CellMapping(
                uuid=cell_uuid, name=name, database_url=url, disabled=False, created_at=now()
            )
        )
    cell = Cell(cell_uuid, name, url, False)
    upgrade_schema(runtime, cell)
    return cell


def upgrade_schema(runtime: Runtime, cell: Cell) -> None:
    _create_database_if_missing(url_of(runtime.settings, cell))
    migrate.upgrade(database(runtime, cell), [MIGRATIONS])


def set_disabled(runtime: Runtime, name_or_uuid: str, disabled: bool) -> Cell:
    cell = get_cell(runtime, name_or_uuid)
    if cell.is_cell0:
        raise errors.Invalid("cell0 holds servers that never scheduled; it cannot be disabled.")
    with runtime.db.write() as session:
        session.execute(
            update(models.CellMapping)
            .where(models.CellMapping.uuid == cell.uuid)
            .values(disabled=disabled)
        )
    return Cell(cell.uuid, cell.name, cell.database_url, disabled)


def delete_cell(runtime: Runtime, name_or_uuid: str) -> None:
    """Unmap an empty cell; one that still has hosts or servers stays."""
    cell = get_cell(runtime, name_or_uuid)
    if cell.is_cell0:
        raise errors.Invalid("cell0 cannot be deleted.")
    with runtime.db.write() as session:
        hosts = session.scalar(
            select(func.count()).where(models.HostMapping.cell_uuid == cell.uuid)
        )
        servers = session.scalar(
            select(func.count()).where(models.InstanceMapping.cell_uuid == cell.uuid)
        )
        if hosts or servers:
            raise errors.Conflict(
                f"Cell {cell.name} still has {hosts} hosts and {servers} servers mapped; "
                "delete the servers and remove the hosts first."
            )
        session.execute(delete(models.CellMapping).where(models.CellMapping.uuid == cell.uuid))


def prepare(runtime: Runtime) -> None:
    """cell0 and a first cell exist, and every cell's schema is current."""
    existing = {cell.name for cell in list_cells(runtime)}
    for name in (CELL0_NAME, DEFAULT_CELL_NAME):
        if name not in existing:
            create_cell(runtime, name)
    for cell in list_cells(runtime):
        upgrade_schema(runtime, cell)
