"""The store's tables: contacts, import records (and SQLite's progress), notices raised once."""

from typing import Any

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
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

from ..contact import KEYS
from ..record import COUNTS

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


def _progress_columns() -> tuple[Column[Any], ...]:
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


#: What each contact an import updated was before it (worker/write/journal.py): its keys,
#: fields, subscription and the import that had changed it last. Contacts it created are not
#: listed: they are the account's contacts of `journals.first_id` < id <= `last_id`.
journal = Table(
    "journal",
    metadata,
    Column("import_id", String(40), primary_key=True),
    Column("contact_id", Integer, primary_key=True),
    *(Column(key, contacts.c[key].type) for key in KEYS),
    Column("fields", Document, nullable=False),
    Column("unsubscribed", Boolean, nullable=False),
    Column("fingerprint", BigInteger),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("last_import", String(40), nullable=False),
    # Unsubscribed or deleted for being absent from a mirror file (deleted: no contact now).
    Column("absent", Boolean, nullable=False, server_default=false()),
)


#: Each applied import's change summary and journal state, beside its record (a table of its
#: own: stores made before it keep their import records as they are).
journals = Table(
    "journals",
    metadata,
    Column("id", String(40), primary_key=True),  # the import's
    Column("account", String(63), nullable=False),
    Column("first_id", Integer, nullable=False),  # the highest contact id before the import
    Column("last_id", Integer, nullable=False),  # the highest of the contacts it created
    Column("state", String(16), nullable=False),  # kept, off, purged, rolled_back
    Column("finished_at", DateTime(timezone=True), nullable=False, index=True),
    Column("summary", Document, nullable=False),
    Column("rolled_back_at", DateTime(timezone=True)),
    Column("rolled_back_by", String(200)),
    Column("rollback", Document),  # what the rollback did and the contacts it left
)


#: Each run of an account's export (worker/exporter.py): when it was planned, how it went, and
#: the time of the snapshot it read, where the next run of a `changed` export starts.
export_runs = Table(
    "export_runs",
    metadata,
    Column("id", String(200), primary_key=True),  # the export event's run_id
    Column("account", String(63), nullable=False),
    Column("export", String(63), nullable=False),
    Column("trigger", String(16), nullable=False),  # schedule or manual
    Column("planned_for", DateTime(timezone=True), nullable=False),
    # running; queued: waiting for an import of its account; retrying: for its next attempt
    # after a failed one; done; failed.
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True)),
    Column("rows", Integer),
    Column("bytes", BigInteger),
    Column("file", Text),
    Column("destination", Text),
    Column("error", Text),
    Column("since", DateTime(timezone=True)),  # changed: the snapshot it started from
    Column("snapshot", DateTime(timezone=True)),
    Index("export_runs_account_export", "account", "export", "started_at"),
)
