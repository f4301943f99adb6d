"""The contacts store: contacts and import records, on SQLite (default) or PostgreSQL.

SQLAlchemy Core only. An import's contact changes and its final record are written in one
transaction, so that a contacts base never holds half a file.
"""

from contextlib import contextmanager
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    make_url,
    select,
    update,
)
from sqlalchemy.dialects.postgresql import JSONB

FINAL = ("imported", "rejected", "failed")
COUNTS = ("rows", "created", "updated", "unchanged", "rejected_rows")
BATCH = 1000

metadata = MetaData()
Document = JSON().with_variant(JSONB(), "postgresql")

contacts = Table(
    "contacts",
    metadata,
    Column("account", String(63), primary_key=True),
    Column("email", String(320), primary_key=True),
    Column("fields", Document, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("import_id", String(40), nullable=False),  # the last import that changed it
)

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
    Column("size", Integer),
    Column("sha256", String(64)),
    Column("rejections", Document),
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


def public(row):
    """An import record as users see it (CLI, reports): JSON-ready."""
    record = dict(row)
    for key in ("received_at", "started_at", "finished_at"):
        value = _utc(record.get(key))
        record[key] = value.isoformat(timespec="milliseconds") if value else None
    record["rejections"] = record.get("rejections") or []
    return record


class Store:
    def __init__(self, url):
        url = make_url(engine_url(url))
        if url.get_backend_name() == "sqlite":
            if url.database:
                Path(url.database).parent.mkdir(parents=True, exist_ok=True)
            self.engine = create_engine(url, connect_args={"timeout": 60})
            event.listen(self.engine, "connect", _sqlite_connect)
            event.listen(self.engine, "begin", _sqlite_begin)
        else:
            self.engine = create_engine(url, pool_pre_ping=True)
        metadata.create_all(self.engine)

    def close(self):
        self.engine.dispose()

    @contextmanager
    def transaction(self):
        """A write transaction: it commits as a whole or not at all."""
        with (
            self.engine.connect() as connection,
            connection.execution_options(writes=True).begin(),
        ):
            yield connection

    def lock_account(self, connection, account):
        """Hold the account until `connection`'s transaction ends: its imports never overlap.

        PostgreSQL: a transaction-level advisory lock, across every worker process and host.
        SQLite: a write transaction already holds the whole database.
        """
        if connection.dialect.name == "postgresql":
            connection.execute(select(func.pg_advisory_xact_lock(func.hashtext(account))))

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
            }
            if row is None:
                connection.execute(insert(imports).values(id=event["import_id"], **values))
            else:
                connection.execute(
                    update(imports).where(imports.c.id == event["import_id"]).values(**values)
                )
        return self.get_import(event["import_id"])

    def finish_import(self, connection, import_id, status, counts=None, reason=None,
                      rejections=()):
        connection.execute(
            update(imports)
            .where(imports.c.id == import_id)
            .values(
                status=status,
                finished_at=now(),
                reason=reason,
                rejections=[r.as_dict() for r in rejections],
                **(counts or {}),
            )
        )

    def get_import(self, import_id):
        with self.engine.connect() as connection:
            row = connection.execute(select(imports).where(imports.c.id == import_id)).first()
        return public(row._mapping) if row else None

    def list_imports(self, account=None, limit=None):
        query = select(imports).order_by(imports.c.received_at.desc(), imports.c.id.desc())
        if account:
            query = query.where(imports.c.account == account)
        if limit:
            query = query.limit(limit)
        with self.engine.connect() as connection:
            return [public(row._mapping) for row in connection.execute(query)]

    # --- contacts

    def upsert(self, connection, account, import_id, incoming):
        """Create or update the contacts `incoming` yields as (email, fields); return counts.

        A row whose values are already stored is not written. Rows of the same e-mail later in
        the file see the earlier ones, so the last one wins.
        """
        counts = dict.fromkeys(("created", "updated", "unchanged"), 0)
        incoming = iter(incoming)
        while batch := list(islice(incoming, BATCH)):
            keys = {email for email, _ in batch}
            stored = dict(connection.execute(
                select(contacts.c.email, contacts.c.fields).where(
                    contacts.c.account == account, contacts.c.email.in_(keys)
                )
            ).all())
            created, changed = {}, {}
            for email, fields in batch:
                before = stored.get(email)
                after = {**(before or {}), **fields}
                if before is None:
                    counts["created"] += 1
                    created[email] = after
                elif after == before:
                    counts["unchanged"] += 1
                    continue
                else:
                    counts["updated"] += 1
                    if email not in created:
                        changed[email] = after
                    else:
                        created[email] = after
                stored[email] = after
            at = now()
            if created:
                connection.execute(insert(contacts), [
                    {"account": account, "email": email, "fields": fields,
                     "created_at": at, "updated_at": at, "import_id": import_id}
                    for email, fields in created.items()
                ])
            if changed:
                connection.execute(
                    update(contacts)
                    .where(contacts.c.account == account, contacts.c.email == bindparam("key"))
                    .values(fields=bindparam("new_fields"), updated_at=at, import_id=import_id),
                    [{"key": email, "new_fields": fields} for email, fields in changed.items()],
                )
        return counts

    def export(self, account):
        """Yield (email, fields) of every contact of `account`, by e-mail."""
        query = (
            select(contacts.c.email, contacts.c.fields)
            .where(contacts.c.account == account)
            .order_by(contacts.c.email)
        )
        with self.engine.connect() as connection:
            yield from connection.execution_options(yield_per=BATCH).execute(query)


def _sqlite_connect(dbapi_connection, record):
    # WAL lets the CLI read while a worker writes. The driver's own transaction handling is
    # turned off so that _sqlite_begin decides how each transaction starts.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _sqlite_begin(connection):
    # A write transaction takes the write lock at once (waiting up to the busy timeout), so
    # that two writers queue up instead of one failing when it upgrades a read lock.
    writes = connection.get_execution_options().get("writes")
    connection.exec_driver_sql("BEGIN IMMEDIATE" if writes else "BEGIN")
