"""The contacts store: contacts and import records, on SQLite (default) or PostgreSQL.

SQLAlchemy Core only. An import's contact changes and its final record are written in one
transaction, so that a contacts base never holds half a file.
"""

import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, delete, func, insert, make_url, select
from sqlalchemy.exc import IntegrityError

from ..contact import KEYS
from ..record import now
from . import journal
from .engines import create_missing, engine_url, sqlite_engine, transaction
from .exports import ExportRuns
from .locks import LOCK_CLASS
from .postgres import PostgresWrites
from .records import ImportRecords
from .sqlite import SQLiteWrites
from .tables import alerts, contacts, metadata, progress
from .writes import Writes

#: Contacts read from the database at a time by `export`.
EXPORT_ROWS = 8000


class Store(ImportRecords, ExportRuns):
    """The contacts store at a DROPIMPORT_DATABASE_URL: its contacts, import records, account
    locks and notices."""

    def __init__(self, url: str) -> None:
        #: The URL another process can read this store at; None for an in-memory database.
        self.shared_url: str | None = url
        address = make_url(engine_url(url))
        #: Where the progress of running imports is written: None for the import records.
        self._progress_db = None
        if address.get_backend_name() == "sqlite":
            # One descriptor for the store's life: closing any descriptor of a file drops
            # every lock the process holds on it.
            if address.database:
                lock_path = Path(address.database).with_suffix(".locks")
                lock_path.parent.mkdir(parents=True, exist_ok=True)
                self._lock_file = open(lock_path, "a+b")  # noqa: SIM115
                progress_url = address.set(
                    database=str(Path(address.database).with_suffix(".progress")))
            else:  # an in-memory database lives in one process: so can its locks
                self.shared_url = None
                self._lock_file = tempfile.TemporaryFile()  # noqa: SIM115
                progress_url = address
            self.engine = sqlite_engine(address)
            self._progress_db = sqlite_engine(progress_url)
            create_missing(self._progress_db, progress.metadata)
        else:
            # No server-side prepared statements: a plan cached while the contacts table was
            # small would go on scanning it whole as an import fills it.
            self.engine = create_engine(
                address, pool_pre_ping=True, connect_args={"prepare_threshold": None},
                hide_parameters=True,  # a row's values (contact data) never reach a log line
            )
        if self.engine.dialect.name == "sqlite":
            create_missing(self.engine, metadata)
            return
        with self.engine.begin() as connection:
            # Two processes creating the tables at once would collide in the catalogue.
            connection.execute(select(func.pg_advisory_xact_lock(LOCK_CLASS)))
            metadata.create_all(connection)

    def close(self) -> None:
        self.engine.dispose()
        if self._progress_db is not None:
            self._progress_db.dispose()
            self._lock_file.close()

    def transaction(self) -> AbstractContextManager[Connection]:
        """A write transaction: it commits as a whole or not at all."""
        return transaction(self.engine)

    def writes(self, connection: Connection, account: str, import_id: str, match_on: str,
               mode: str) -> Writes:
        """The reads and writes of one import, in the transaction of `connection`. A mirror
        import's rows are upserted; its absent contacts are then Writes.absent's."""
        at = now()
        mirror = mode == "mirror"
        if mirror:
            mode = "upsert"
        if connection.dialect.name != "sqlite":
            return PostgresWrites(connection, account, import_id, at, match_on, mode, mirror)
        # Stored as SQLAlchemy stores times there.
        stored_as = contacts.c.updated_at.type.dialect_impl(connection.dialect).bind_processor(
            connection.dialect)
        assert stored_as is not None  # SQLite stores a time as text
        at = stored_as(at)
        return SQLiteWrites(connection, account, import_id, at, match_on, mode, mirror)

    def export(self, account: str) -> Iterator[dict[str, Any]]:
        """Yield each contact of `account` as one dict: keys, fields, unsubscribed."""
        query = (
            select(contacts)
            .where(contacts.c.account == account)
            .order_by(contacts.c.email, contacts.c.external_id, contacts.c.phone)
        )
        with self.engine.connect() as connection:
            for row in connection.execution_options(yield_per=EXPORT_ROWS).execute(query):
                keys = {key: row._mapping[key] for key in KEYS if row._mapping[key] is not None}
                yield {**keys, **row.fields, "unsubscribed": row.unsubscribed}

    def changes(self, import_id: str, match_on: str = "email", field: str | None = None
                ) -> Iterator[journal.Change]:
        """The changes of an applied import (journal.changes); JournalError if none kept."""
        with self.engine.connect() as connection:
            yield from journal.listed(connection, import_id, match_on, field)

    def roll_back(self, import_id: str, by: str, force: bool = False, dry_run: bool = False
                  ) -> journal.Rollback:
        """Undo an applied import in one transaction (journal.roll_back); the caller holds
        its account."""
        with self.transaction() as connection:
            return journal.roll_back(connection, import_id, by, force, dry_run)

    def purge_journal(self, before: datetime) -> int:
        """Drop the journals of the imports applied before `before`; return how many."""
        with self.transaction() as connection:
            return journal.purge(connection, before)

    def raise_once(self, key: str, account: str) -> bool:
        """Record the notice `key`; False when it was already raised (here or elsewhere)."""
        try:
            with self.transaction() as connection:
                connection.execute(insert(alerts).values(key=key, account=account,
                                                         raised_at=now()))
        except IntegrityError:
            return False
        return True

    def forget(self, key: str) -> None:
        """Forget the notice `key`, so that it can be raised again."""
        with self.transaction() as connection:
            connection.execute(delete(alerts).where(alerts.c.key == key))

