"""The reference import: a file applied row by row, the plain way, in one transaction.

No chunks, no reading ahead, no bulk SQL: each row looks up the contacts that share one of
its keys, then inserts or updates one contact through SQLAlchemy. It is what the fast path
(`reader`, `Store.apply`, `bulk`) must be equivalent to, and a test checks that both leave
identical contacts, counts and rejections on randomized files (`test_fast_path.py`).
"""

from sqlalchemy import insert, or_, select, update

from worker import csvfile
from worker import template as engine
from worker.changes import Batch, Stored
from worker.reader import planned
from worker.store import contacts, now
from worker.template import KEYS


def import_file(store, account, import_id, path, template, outcome):
    """Apply the file at `path` to `account`; return the counts (`outcome` gets the rest)."""
    counts = dict.fromkeys(("created", "updated", "unchanged", "skipped"), 0)
    fmt = template.get("format", {})
    match_on, mode = template.get("match_on", "email"), template.get("mode", "upsert")
    with (
        csvfile.reading(path, fmt.get("encoding", "auto"),
                        fmt.get("delimiter", "auto")) as (dialect, rows),
        store.transaction() as connection,
    ):
        plan = planned(template, dialect, rows)
        if plan is None:
            return counts
        for contact in engine.contacts(plan, rows, outcome):
            batch = Batch(_stored(connection, account, contact), match_on, mode)
            counted = batch.apply(contact, outcome)
            if counted:
                counts[counted] += 1
                _write(connection, account, import_id, batch)
    return counts


def _stored(connection, account, contact):
    keys = [contacts.c[key] == contact.fields[key] for key in KEYS if contact.fields.get(key)]
    query = select(contacts).where(contacts.c.account == account, or_(*keys))
    return [
        Stored(row.id, {k: row._mapping[k] for k in KEYS if row._mapping[k] is not None},
               row.fields, row.unsubscribed)
        for row in connection.execute(query)
    ]


def _write(connection, account, import_id, batch):
    at = now()
    for key, ids in batch.released().items():
        connection.execute(update(contacts).where(contacts.c.id.in_(ids)).values({key: None}))
    for contact in batch.changed.values():
        connection.execute(update(contacts).where(contacts.c.id == contact.id).values(
            **_columns(contact), updated_at=at, import_id=import_id))
    for contact in batch.created.values():
        connection.execute(insert(contacts).values(
            account=account, **_columns(contact), created_at=at, updated_at=at,
            import_id=import_id))


def _columns(contact):
    # No fingerprint: what this path writes is never taken for what a row would write.
    return {**{key: contact.keys.get(key) for key in KEYS}, "fields": contact.fields,
            "unsubscribed": contact.unsubscribed, "fingerprint": None}
