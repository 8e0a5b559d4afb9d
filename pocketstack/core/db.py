"""Database engine, sessions and transactions for every service.

One engine per process. `Database.write()` opens a transaction that takes the
write lock up front on SQLite (BEGIN IMMEDIATE), so two writers never both
read and then fail to upgrade their lock; `Database.read()` is a plain
snapshot. PostgreSQL and MariaDB use their default isolation.
"""

from __future__ import annotations

import contextlib
import select
import threading
from collections.abc import Iterator
from typing import Any

from sqlalchemy import DateTime, Engine, create_engine, event
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.pool import ConnectionPoolEntry


class Base(DeclarativeBase):
    """Declarative base shared by all services' models (one metadata, one migration run)."""


# Microseconds matter (revocation compares issue times); MySQL/MariaDB drop them unless asked.
PreciseDateTime = DateTime().with_variant(mysql.DATETIME(fsp=6), "mysql", "mariadb")


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        # Let SQLAlchemy, not pysqlite, decide when transactions begin.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        # LIKE as PostgreSQL does it: `name__startswith` is case-sensitive, `__istartswith` not.
        cursor.execute("PRAGMA case_sensitive_like=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = conn.get_execution_options().get("sqlite_immediate", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def _socket_of(dbapi_connection: Any) -> Any:
    """The client socket of a psycopg or PyMySQL connection."""
    sock = getattr(dbapi_connection, "_sock", None)  # PyMySQL
    return sock if sock is not None else dbapi_connection  # psycopg has fileno()


def _drop_hung_up_connections(engine: Engine) -> None:
    """Hand out no pooled connection whose server went away (restart, idle timeout).

    An idle connection has nothing to read unless the server hung up (end of file, a
    termination notice), so a zero-timeout poll of its socket finds out locally; the usual
    pre-ping is a query, a round trip on every checkout, which cost a placement claim on
    PostgreSQL half its time. Raising DisconnectionError makes the pool open a fresh one.
    """

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        try:
            readable, _, _ = select.select([_socket_of(dbapi_connection)], [], [], 0)
        except (OSError, ValueError):
            readable = [True]
        if readable:
            raise DisconnectionError("the database server closed this connection")


_TRANSIENT_SQLSTATES = {"40001", "40P01"}  # serialization failure, deadlock (PostgreSQL)
_TRANSIENT_MYSQL_ERRORS = {1205, 1213}  # lock wait timeout, deadlock


def is_transient(exc: BaseException) -> bool:
    """True for failures the database asks the client to retry: deadlocks and
    serialization conflicts between concurrent transactions."""
    if not isinstance(exc, DBAPIError):
        return False
    original = exc.orig
    if getattr(original, "sqlstate", None) in _TRANSIENT_SQLSTATES:
        return True
    args: tuple[object, ...] = tuple(getattr(original, "args", ()))
    return bool(args) and args[0] in _TRANSIENT_MYSQL_ERRORS


class Database:
    """The engine plus read and write session factories."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        # Pooled connections for the requests that run at once: a connection past the pool
        # size is opened for one request and closed after it (on PostgreSQL, a new
        # server process each time).
        kwargs: dict[str, Any] = {"pool_size": 16, "max_overflow": 16}
        if self.is_sqlite:
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
        self.engine = create_engine(url, **kwargs)
        if self.is_sqlite:
            _configure_sqlite(self.engine)
        else:
            _drop_hung_up_connections(self.engine)
        writer = self.engine.execution_options(sqlite_immediate=True)
        self._writer_lock: contextlib.AbstractContextManager[object] = (
            threading.RLock() if self.is_sqlite else contextlib.nullcontext()
        )
        self._writer = writer
        self._single_statements = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(writer, expire_on_commit=False)

    @contextlib.contextmanager
    def read(self) -> Iterator[Session]:
        """A session for queries; rolled back at the end, it never writes."""
        with self._read() as session:
            yield session

    @contextlib.contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction committed when the block ends without an exception.

        On SQLite, writers of this process queue on a lock first: SQLite has one writer
        at a time anyway, and waiting on a lock is fair and prompt where SQLite's busy
        handler polls with growing sleeps (long tails under concurrent claims).
        """
        with self._writer_lock, self._write() as session, session.begin():
            yield session

    @contextlib.contextmanager
    def write_statements(self) -> Iterator[Connection]:
        """`write()` without an ORM session, for hot paths made only of table statements
        (a placement claim): the same lock and transaction, a fraction of the overhead."""
        with self._writer_lock, self._writer.begin() as conn:
            yield conn

    @contextlib.contextmanager
    def single_statements(self) -> Iterator[Connection]:
        """A connection on which every statement commits by itself: no BEGIN, no COMMIT,
        for a write made of one statement (a PostgreSQL placement claim), two round trips
        fewer. Not for SQLite, whose writers queue on the lock `write()` takes."""
        assert not self.is_sqlite
        with self._single_statements.connect() as conn:
            yield conn

    def scalar_outside_transaction(self, sql: str) -> Any:
        """One value from a single read on a raw pooled connection.

        The cheapest query there is, for checks that run on every request (a
        revision counter): no ORM, no session, no explicit BEGIN.
        """
        conn = self.engine.raw_connection()
        try:
            cursor = conn.cursor()
            cursor.execute(sql)
            row = cursor.fetchone()
            cursor.close()
            conn.rollback()
            return row[0] if row else None
        finally:
            conn.close()

    def dispose(self) -> None:
        self.engine.dispose()
