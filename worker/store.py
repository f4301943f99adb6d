"""The contacts store: contacts and import records, on SQLite (default) or PostgreSQL.

SQLAlchemy Core only. An import's contact changes and its final record are written in one
transaction, so that a contacts base never holds half a file.
"""

import fcntl
import heapq
import tempfile
import threading
import zlib
from collections import defaultdict
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    delete,
    event,
    func,
    insert,
    inspect,
    make_url,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError, OperationalError

from . import bulk
from .changes import Batch
from .template import KEYS

FINAL = ("imported", "rejected", "failed")
COUNTS = ("rows", "created", "updated", "unchanged", "skipped", "rejected_rows")
#: How far a running import is; at its end, rows_done is its rows and the rest are cleared.
PROGRESS = ("rows_done", "rows_per_second", "seconds_left", "progress_at")
#: Rows read, checked, looked up and written together: a round trip per key and chunk. Each
#: chunk costs the database some fixed work (statements planned, staging tables emptied):
#: bigger chunks spread it over more rows; much bigger ones would push a first import's
#: peak memory past its target.
BATCH = 8000
#: Account locks of this process's threads on SQLite (fcntl locks cannot tell threads apart).
_thread_locks: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
#: The first key of our PostgreSQL advisory locks, so that they never meet another app's.
LOCK_CLASS = 0x64726F70  # "drop"

metadata = MetaData()
Document = JSON().with_variant(JSONB(), "postgresql")

contacts = Table(
    "contacts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("account", String(63), nullable=False),
    # The standard keys, each unique within an account when present.
    Column("email", String(320)),
    Column("external_id", String(255)),
    Column("phone", String(32)),
    Column("fields", Document, nullable=False),  # every other field, by its template name
    Column("unsubscribed", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("import_id", String(40), nullable=False),  # the last import that changed it
    # The fingerprint of the row that last wrote it or found it unchanged (template.Plan):
    # that row again changes nothing, and is not even converted.
    Column("fingerprint", BigInteger),
    # Account first: an import's probes and new entries stay within its account's part of
    # each index, a few pages that stay in memory, however many contacts the other accounts
    # have (at key first, each probe of a big import would read a page of its own in an
    # index of millions of contacts). Every lookup names both columns, so no plan reads an
    # account whole.
    # Partial: a key a template leaves empty (often external_id, or phone) costs no index entry.
    *(Index(f"contacts_account_{key}_key", "account", key, unique=True,
            postgresql_where=text(f"{key} IS NOT NULL"), sqlite_where=text(f"{key} IS NOT NULL"))
      for key in KEYS),
)


def _progress_columns():
    return (Column("rows_done", Integer, nullable=False, default=0),
            Column("rows_per_second", Integer), Column("seconds_left", Integer),
            Column("progress_at", DateTime(timezone=True)))


imports = Table(
    "imports",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("account", String(63), nullable=False, index=True),
    Column("file", Text, nullable=False),
    Column("status", String(16), nullable=False, index=True),
    Column("received_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True)),
    Column("finished_at", DateTime(timezone=True)),
    *(Column(name, Integer, nullable=False, default=0) for name in COUNTS),
    Column("reason", Text),
    Column("note", Text),
    Column("encoding", String(32)),
    Column("delimiter", String(4)),
    Column("size", Integer),
    Column("sha256", String(64)),
    Column("rejections", Document),
    *_progress_columns(),
)

#: The progress of running imports on SQLite, in a database file of its own beside the
#: contacts': an import holds the contacts database's only write lock until it commits, and
#: would hold this file's too if it were attached to its connection (BEGIN IMMEDIATE locks
#: every attached database). Read back with the import records.
progress = Table(
    "progress", MetaData(), Column("id", String(40), primary_key=True), *_progress_columns())

#: Each notice raised once, whatever the number of workers: the first to insert its key wins
#: (an import's conclusion, a late file's due time).
alerts = Table(
    "alerts",
    metadata,
    Column("key", String(400), primary_key=True),
    Column("account", String(63), nullable=False),
    Column("raised_at", DateTime(timezone=True), nullable=False),
)


def engine_url(url):
    """SQLAlchemy's URL for a DROPIMPORT_DATABASE_URL (postgresql:// means psycopg 3)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def now():
    return datetime.now(UTC)


def _utc(value):
    # SQLite hands datetimes back naive; every time stored here is UTC.
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def no_progress(rows_done):
    """The progress columns of an import not running: its rows done, nothing else."""
    return {**dict.fromkeys(PROGRESS), "rows_done": rows_done}


def public(row):
    """An import record as users see it (CLI, reports): JSON-ready."""
    record = dict(row)
    for key in ("received_at", "started_at", "finished_at", "progress_at"):
        value = _utc(record.get(key))
        record[key] = value.isoformat(timespec="milliseconds") if value else None
    record["rejections"] = record.get("rejections") or []
    return record


class AccountBusy(Exception):
    """Another import holds the account (`Store.account_lock` without waiting)."""


#: What PostgreSQL answers when it is there but cannot serve yet: worth waiting for.
_NOT_YET = ("the database system is starting up", "the database system is shutting down",
            "too many clients")


def store_problem(error):
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


class Store:
    def __init__(self, url):
        #: The URL another process can read this store at; None for an in-memory database.
        self.shared_url = url
        url = make_url(engine_url(url))
        #: Where the progress of running imports is written: None for the import records.
        self._progress_db = None
        if url.get_backend_name() == "sqlite":
            # One descriptor for the store's life: closing any descriptor of a file drops
            # every lock the process holds on it.
            if url.database:
                lock_path = Path(url.database).with_suffix(".locks")
                lock_path.parent.mkdir(parents=True, exist_ok=True)
                self._lock_file = open(lock_path, "a+b")  # noqa: SIM115
                progress_url = url.set(database=str(Path(url.database).with_suffix(".progress")))
            else:  # an in-memory database lives in one process: so can its locks
                self.shared_url = None
                self._lock_file = tempfile.TemporaryFile()  # noqa: SIM115
                progress_url = url
            self.engine = _sqlite_engine(url)
            self._progress_db = _sqlite_engine(progress_url)
            _create_missing(self._progress_db, progress.metadata)
        else:
            # No server-side prepared statements: a plan cached while the contacts table was
            # small would go on scanning it whole as an import fills it.
            self.engine = create_engine(
                url, pool_pre_ping=True, connect_args={"prepare_threshold": None},
                hide_parameters=True,  # a row's values (contact data) never reach a log line
            )
        if self.engine.dialect.name == "sqlite":
            _create_missing(self.engine, metadata)
            return
        with self.engine.begin() as connection:
            # Two processes creating the tables at once would collide in the catalogue.
            connection.execute(select(func.pg_advisory_xact_lock(LOCK_CLASS)))
            metadata.create_all(connection)

    def close(self):
        self.engine.dispose()
        if self._progress_db is not None:
            self._progress_db.dispose()
            self._lock_file.close()

    def transaction(self):
        """A write transaction: it commits as a whole or not at all."""
        return _transaction(self.engine)

    @contextmanager
    def account_lock(self, account, wait=True):
        """Hold `account` across transactions: its imports run one at a time, everywhere.

        With `wait` false, raise AccountBusy at once if another thread or process holds it.

        PostgreSQL: a session advisory lock, across every worker process and host, released
        by the server if the worker dies. SQLite (one host): a lock on one byte of a file
        beside the database, released by the kernel if the process dies, and a thread lock,
        since such locks belong to a process, not to a thread.
        """
        if self.engine.dialect.name == "postgresql":
            key = (LOCK_CLASS, func.hashtext(account))
            with self.engine.connect() as connection:
                if wait:
                    connection.execute(select(func.pg_advisory_lock(*key)))
                elif not connection.execute(select(func.pg_try_advisory_lock(*key))).scalar():
                    raise AccountBusy(account)
                connection.commit()
                try:
                    yield
                finally:
                    connection.execute(select(func.pg_advisory_unlock(*key)))
                    connection.commit()
            return
        offset = zlib.crc32(account.encode())
        if not _thread_locks[account].acquire(blocking=wait):
            raise AccountBusy(account)
        try:
            try:
                fcntl.lockf(self._lock_file, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB),
                            1, offset)
            except (BlockingIOError, PermissionError):  # EAGAIN or EACCES: held elsewhere
                raise AccountBusy(account) from None
            try:
                yield
            finally:
                fcntl.lockf(self._lock_file, fcntl.LOCK_UN, 1, offset)
        finally:
            _thread_locks[account].release()

    # --- import records

    def start_import(self, event):
        """Mark the import of `event` running; None when it already reached a final status."""
        with self.transaction() as connection:
            row = connection.execute(
                select(imports.c.status).where(imports.c.id == event["import_id"])
            ).first()
            if row is not None and row.status in FINAL:
                return None
            values = {
                "account": event["account"],
                "file": event["file"],
                "status": "running",
                "received_at": datetime.fromisoformat(event["received_at"]),
                "started_at": now(),
                "size": event["size"],
                "sha256": event["sha256"],
                **dict.fromkeys(COUNTS, 0),
                **no_progress(0),
            }
            if row is None:
                connection.execute(insert(imports).values(id=event["import_id"], **values))
            else:
                connection.execute(
                    update(imports).where(imports.c.id == event["import_id"]).values(**values)
                )
        if self._progress_db is not None:
            # A retried import starts from naught. A running import rewrites its row every
            # interval: one untouched for a day is an ended import's.
            with _transaction(self._progress_db) as connection:
                connection.execute(delete(progress).where(
                    (progress.c.id == event["import_id"])
                    | (progress.c.progress_at < now() - timedelta(days=1))))
        return self.get_import(event["import_id"])

    def record_progress(self, import_id, rows_done, rows_per_second, seconds_left):
        """Note how far the running import `import_id` is, for every reader to see at once.

        In a short transaction of its own, never the import's, which commits only at its end:
        on PostgreSQL in the import record, on SQLite in the progress database.
        """
        values = {"rows_done": rows_done, "rows_per_second": rows_per_second,
                  "seconds_left": seconds_left, "progress_at": now()}
        if self._progress_db is None:
            statement = (update(imports).values(values)
                         .where(imports.c.id == import_id, imports.c.status == "running"))
        else:
            statement = insert(progress).prefix_with("OR REPLACE").values(id=import_id, **values)
        with _transaction(self._progress_db or self.engine) as connection:
            connection.execute(statement)

    def finish_import(self, connection, import_id, status, rejections=(), **values):
        """Record the final status; `values` are further columns (counts, reason...)."""
        connection.execute(
            update(imports)
            .where(imports.c.id == import_id)
            .values(status=status, finished_at=now(),
                    rejections=[r.as_dict() for r in rejections],
                    **no_progress(values.get("rows", imports.c.rows)), **values)
        )

    def requeue_import(self, import_id, stopped=False):
        """Make an import runnable again (`dropimport imports retry`); `stopped`: a running
        import stopped before its end, its transaction rolled back (if still running)."""
        statement = update(imports).where(imports.c.id == import_id)
        if stopped:  # not an end it reached meanwhile
            statement = statement.where(imports.c.status == "running")
        with self.transaction() as connection:
            connection.execute(statement.values(status="queued", started_at=None,
                                                finished_at=None, reason=None,
                                                **no_progress(0)))

    def last_imported(self, account, file):
        """The newest import of `file` of `account` that ended `imported`, or None."""
        query = (
            select(imports)
            .where(imports.c.account == account, imports.c.file == file,
                   imports.c.status == "imported")
            .order_by(imports.c.id.desc())
            .limit(1)
        )
        return next(iter(self._records(query)), None)

    def get_import(self, import_id):
        return next(iter(self._records(select(imports).where(imports.c.id == import_id))), None)

    def list_imports(self, account=None, limit=None):
        query = select(imports).order_by(imports.c.received_at.desc(), imports.c.id.desc())
        if account:
            query = query.where(imports.c.account == account)
        if limit:
            query = query.limit(limit)
        return self._records(query)

    def _records(self, query):
        """The import records `query` selects, the running ones with their progress."""
        with self.engine.connect() as connection:
            records = [dict(row._mapping) for row in connection.execute(query)]
        running = {record["id"]: record for record in records if record["status"] == "running"}
        if self._progress_db is not None and running:
            with self._progress_db.connect() as connection:
                for row in connection.execute(
                        select(progress).where(progress.c.id.in_(running))):
                    running[row.id].update(row._mapping)
        return [public(record) for record in records]

    # --- contacts

    def apply(self, connection, account, import_id, chunks, outcome, match_on="email",
              mode="upsert"):
        """Apply the Chunks of a file's rows, in file order; return the counts.

        A row identical to what is stored is not written. Later rows see earlier ones, so
        for one contact the last row of the file wins. `outcome` receives every rejected
        row, in line order, and the skipped ones.
        """
        counts = dict.fromkeys(("created", "updated", "unchanged", "skipped"), 0)
        at = now()
        if connection.dialect.name == "sqlite":  # stored as SQLAlchemy stores times there
            at = contacts.c.updated_at.type.dialect_impl(connection.dialect).bind_processor(
                connection.dialect)(at)
        writes = bulk.writes(connection, account, import_id, at, match_on, mode)
        chunks = iter(chunks)
        chunk = next(chunks, None)
        try:
            while chunk is not None:
                coming = next(chunks, None)
                found, applied = writes.stored(chunk.contacts, coming and coming.contacts)
                batch = Batch(found, match_on, mode)
                conflicts = Conflicts()
                for contact in applied:
                    counted = batch.quick(contact) or batch.apply(contact, conflicts)
                    if counted:
                        counts[counted] += 1
                for rejection in heapq.merge(chunk.rejections, conflicts, key=bulk.LINE):
                    outcome.reject(rejection)
                for _ in range(chunk.skipped):
                    outcome.skip()
                counts["unchanged"] += chunk.same
                writes.write(batch)
                chunk = coming
            writes.finish()
        finally:
            writes.close()
        for name, upserted in writes.upserted.items():
            counts[name] += upserted
        counts["created"] += writes.inserted
        return counts

    def export(self, account):
        """Yield each contact of `account` as one dict: keys, fields, unsubscribed."""
        query = (
            select(contacts)
            .where(contacts.c.account == account)
            .order_by(contacts.c.email, contacts.c.external_id, contacts.c.phone)
        )
        with self.engine.connect() as connection:
            for row in connection.execution_options(yield_per=BATCH).execute(query):
                keys = {key: row._mapping[key] for key in KEYS if row._mapping[key] is not None}
                yield {**keys, **row.fields, "unsubscribed": row.unsubscribed}

    # --- notices raised once

    def received(self, account):
        """When each file of `account` was last received: {file: datetime}."""
        query = (
            select(imports.c.file, func.max(imports.c.received_at))
            .where(imports.c.account == account)
            .group_by(imports.c.file)
        )
        with self.engine.connect() as connection:
            return {file: _utc(at) for file, at in connection.execute(query)}

    def raise_once(self, key, account):
        """Record the notice `key`; False when it was already raised (here or elsewhere)."""
        try:
            with self.transaction() as connection:
                connection.execute(insert(alerts).values(key=key, account=account,
                                                         raised_at=now()))
        except IntegrityError:
            return False
        return True

    def forget(self, key):
        """Forget the notice `key`, so that it can be raised again."""
        with self.transaction() as connection:
            connection.execute(delete(alerts).where(alerts.c.key == key))

    # --- read-only queries of `dropimport status`

    def imports_in(self, status, finished_since=None):
        """The imports in `status` (finished since `finished_since`, if given), newest first."""
        query = (select(imports).where(imports.c.status == status)
                 .order_by(imports.c.received_at.desc(), imports.c.id.desc()))
        if finished_since is not None:
            query = query.where(imports.c.finished_at >= finished_since)
        return self._records(query)


class Conflicts(list):
    """The rows of a chunk rejected because a key belongs to another contact."""

    reject = list.append


@contextmanager
def _transaction(engine):
    with engine.connect() as connection, connection.execution_options(writes=True).begin():
        yield connection


def _create_missing(engine, tables):
    """SQLite: create the tables of the MetaData `tables` that the database lacks.

    The check only reads; a missing table is created in a write transaction taken at once
    (waiting for another writer): a deferred one that read, then wrote, failed at once with
    "database is locked" when another process (a worker starting) wrote in between.
    """
    with engine.connect() as connection:
        held = set(inspect(connection).get_table_names())
    if not held >= set(tables.tables):
        with _transaction(engine) as connection:
            tables.create_all(connection)


def _sqlite_engine(url):
    engine = create_engine(url, connect_args={"timeout": 60}, hide_parameters=True)
    event.listen(engine, "connect", _sqlite_connect)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_connect(dbapi_connection, record):
    # WAL lets the CLI read while a worker writes. The driver's own transaction handling is
    # turned off so that _sqlite_begin decides how each transaction starts.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA cache_size=-32768")  # 32 MiB: the key indexes of a big import
    cursor.close()


def _sqlite_begin(connection):
    # A write transaction takes the write lock at once (waiting up to the busy timeout), so
    # that two writers queue up instead of one failing when it upgrades a read lock.
    writes = connection.get_execution_options().get("writes")
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")
