"""Opening the store's databases: the URL, and SQLite's pragmas and transactions."""

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import URL, Connection, Engine, MetaData, create_engine, event, inspect
from sqlalchemy.exc import OperationalError
from sqlalchemy.pool import ConnectionPoolEntry


def engine_url(url: str) -> str:
    """SQLAlchemy's URL for a DROPIMPORT_DATABASE_URL (postgresql:// means psycopg 3)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


#: What PostgreSQL answers when it is there but cannot serve yet: worth waiting for.
_NOT_YET = ("the database system is starting up", "the database system is shutting down",
            "too many clients")


def store_problem(error: Exception) -> tuple[str, bool]:
    """`error`, raised opening a store, told in one line, and whether it is worth waiting
    for: a server not there (yet), unlike a missing database, a refused login or a malformed
    URL, which no wait mends."""
    orig = getattr(error, "orig", None) or error
    text = next(iter(str(orig).strip().splitlines()), type(error).__name__)
    # The server answered: a missing database, an unknown role, a wrong password...
    answered, _, said = text.partition("FATAL:")
    if not isinstance(error, OperationalError):
        return f"{type(error).__name__}: {text}", False
    return (said.strip() if said else answered.strip(),
            not said or any(reason in said for reason in _NOT_YET))


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    with engine.connect() as connection, connection.execution_options(writes=True).begin():
        yield connection


def create_missing(engine: Engine, tables: MetaData) -> None:
    """SQLite: create the tables of the MetaData `tables` that the database lacks.

    The check only reads; a missing table is created in a write transaction taken at once
    (waiting for another writer): a deferred one that read, then wrote, failed at once with
    "database is locked" when another process (a worker starting) wrote in between.
    """
    with engine.connect() as connection:
        held = set(inspect(connection).get_table_names())
    if not held >= set(tables.tables):
        with transaction(engine) as connection:
            tables.create_all(connection)


def sqlite_engine(url: str | URL) -> Engine:
    engine = create_engine(url, connect_args={"timeout": 60}, hide_parameters=True)
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection: sqlite3.Connection, record: ConnectionPoolEntry) -> None:
    # WAL lets the CLI read while a worker writes. The driver's own transaction handling is
    # turned off so that _sqlite_begin decides how each transaction starts.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA cache_size=-32768")  # 32 MiB: the key indexes of a big import
    cursor.close()


def _sqlite_begin(connection: Connection) -> None:
    # A write transaction takes the write lock at once (waiting up to the busy timeout), so
    # that two writers queue up instead of one failing when it upgrades a read lock.
    writes = connection.get_execution_options().get("writes")
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")
