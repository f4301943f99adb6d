"""The benchmark's own PostgreSQL database: created fresh, put in a known state, dropped."""

from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql
from psycopg.rows import namedtuple_row

from worker.contact import KEYS
from worker.write.store import Store
from worker.write.tables import contacts

from .baseline import CREATE_LEAN, LEAN_TABLE

#: The tables a measurement changes: the worker's, and the lean baseline's.
TABLES = ("contacts", "imports", "journal", "journals", "export_runs", LEAN_TABLE)
#: Where a prepared state is kept while a measurement changes the live tables.
SNAPSHOT = {table: f"bench_snapshot_{table}" for table in TABLES}


def database_url(admin_url, name):
    """The URL of database `name` on the server of `admin_url`."""
    return urlunsplit(urlsplit(admin_url)._replace(path=f"/{name}"))


class Database:
    """A database of the benchmark's own on the server of `admin_url`, with the worker's tables
    and the lean baseline's."""

    def __init__(self, admin_url, name):
        self.admin_url = admin_url
        self.name = name
        self.url = database_url(admin_url, name)

    def _admin(self, statement):
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(statement)

    def create(self):
        """Create the database afresh (dropping any left by an earlier run) and its tables."""
        self.drop()
        self._admin(f'CREATE DATABASE "{self.name}"')
        Store(self.url).close()
        self.execute(CREATE_LEAN)

    def drop(self):
        self._admin(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')

    def execute(self, *statements):
        """Run `statements` outside any transaction (VACUUM and CHECKPOINT need that)."""
        with psycopg.connect(self.url, autocommit=True) as connection:
            for statement in statements:
                connection.execute(statement)

    def version(self):
        with psycopg.connect(self.url) as connection:
            return connection.execute("SHOW server_version").fetchone()[0]

    def empty(self):
        """No contact and no import record, as on the first day."""
        self.execute(f"TRUNCATE {', '.join(TABLES)}")
        self.settle()

    def finished_imports(self):
        """The import records that reached their final status: account, status, rows, sha256
        and finished_at (the commit, UTC)."""
        with psycopg.connect(self.url, row_factory=namedtuple_row) as connection:
            return connection.execute(
                "SELECT account, status, rows, sha256, finished_at FROM imports"
                " WHERE finished_at IS NOT NULL"
            ).fetchall()

    def journal_mb(self):
        """The journal's size on disk (table, indexes and TOAST), in MB."""
        with psycopg.connect(self.url) as connection:
            return connection.execute(
                "SELECT pg_total_relation_size('journal')").fetchone()[0] / 1e6

    def copy_contacts(self, source, target, copies):
        """Give account `target` `copies` copies of the contacts of account `source`, each
        copy's keys made unique by its number (`.1`, `.2`...): a big account made in SQL,
        in a fraction of the time the worker would take to import it."""
        kept = [column.name for column in contacts.columns
                if column.name not in ("id", "account", *KEYS)]
        for copy in range(1, copies + 1):
            self.execute(sql.SQL(
                "INSERT INTO contacts (account, {keys}, {kept})"
                " SELECT {target}, {numbered}, {kept} FROM contacts WHERE account = {source}"
            ).format(
                keys=sql.SQL(", ").join(map(sql.Identifier, KEYS)),
                kept=sql.SQL(", ").join(map(sql.Identifier, kept)),
                numbered=sql.SQL(", ").join(sql.SQL("{} || {}").format(
                    sql.Identifier(key), sql.Literal(f".{copy}")) for key in KEYS),
                target=sql.Literal(target), source=sql.Literal(source)))

    def snapshot(self):
        """Keep the contacts (both tables) and import records as they are, for `restore`."""
        for table, copy in SNAPSHOT.items():
            self.execute(f"DROP TABLE IF EXISTS {copy}", f"CREATE TABLE {copy} AS TABLE {table}")

    def restore(self):
        """Put back the state kept by `snapshot`."""
        self.execute(
            f"TRUNCATE {', '.join(TABLES)}",
            *(f"INSERT INTO {table} SELECT * FROM {copy}" for table, copy in SNAPSHOT.items()),
        )
        self.settle()

    def settle(self):
        """Leave no work behind for the next measurement: fresh statistics, no dirty pages."""
        self.execute(f"VACUUM ANALYZE {', '.join(TABLES)}", "CHECKPOINT")
