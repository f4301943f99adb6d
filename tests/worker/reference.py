"""The reference import: a file applied row by row, the plain way, in one transaction.

No chunks, no reading ahead, no bulk SQL: each row looks up the contacts that share one of
its keys, then inserts or updates one contact through SQLAlchemy. It is what the fast path
(`worker/read/`, `importer.apply`, `worker/write/`) must be equivalent to, and a test checks
that both leave identical contacts, counts and rejections on randomized files
(`tests/worker/write/test_fast_path.py`).
"""

from sqlalchemy import insert, or_, select, update

from schemas import template_with_defaults
from worker.contact import KEYS, Stored
from worker.read import csvfile
from worker.read.reader import planned
from worker.read.rows import contacts as row_contacts
from worker.record import Counts, now
from worker.write.changes import Changes
from worker.write.tables import contacts


def import_file(store, account, import_id, path, template, outcome):
    """Apply the file at `path` to `account`; return the counts of the rows created, updated,
    unchanged and skipped by their mode (`outcome` gets the rest)."""
    counts = Counts()
    template = template_with_defaults(template)
    fmt, match_on, mode = template["format"], template["match_on"], template["mode"]
    with (
        csvfile.reading(path, fmt["encoding"], fmt["delimiter"]) as (dialect, rows),
        store.transaction() as connection,
    ):
        plan = planned(template, dialect, rows)
        for contact in row_contacts(plan, rows, outcome) if plan else ():
            changes = Changes(_stored(connection, account, contact), match_on, mode)
            counted = changes.apply(contact, outcome)
            if counted:
                counts.add({counted: 1})
                _write(connection, account, import_id, changes)
    return {name: getattr(counts, name) for name in ("created", "updated", "unchanged", "skipped")}


def _stored(connection, account, contact):
    keys = [contacts.c[key] == contact.fields[key] for key in KEYS if contact.fields.get(key)]
    query = select(contacts).where(contacts.c.account == account, or_(*keys))
    return [
        Stored(row.id, {k: row._mapping[k] for k in KEYS if row._mapping[k] is not None},
               row.fields, row.unsubscribed)
        for row in connection.execute(query)
    ]


def _write(connection, account, import_id, changes):
    at = now()
    for key, ids in changes.released().items():
        connection.execute(update(contacts).where(contacts.c.id.in_(ids)).values({key: None}))
    for contact in changes.changed.values():
        connection.execute(update(contacts).where(contacts.c.id == contact.id).values(
            **_columns(contact), updated_at=at, import_id=import_id))
    for contact in changes.created.values():
        connection.execute(insert(contacts).values(
            account=account, **_columns(contact), created_at=at, updated_at=at,
            import_id=import_id))


def _columns(contact):
    # No fingerprint: what this path writes is never taken for what a row would write.
    return {**{key: contact.keys.get(key) for key in KEYS}, "fields": contact.fields,
            "unsubscribed": contact.unsubscribed, "fingerprint": None}
