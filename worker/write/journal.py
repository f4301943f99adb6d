"""The journal of applied imports: what the contacts were before each, what each changed
(its summary, its changes listed), its rollback and its purge.

The writes (writes.py) keep, in the import's transaction, each contact an import updates as
it was just before (tables.journal), once. The contacts it creates are not written twice: they
are the account's contacts with an id above the highest before the import (`first_id`), up to
the highest at its end (`last_id`). At the import's end `conclude` sums up what changed and
records it (tables.journals), in the same transaction.

Per field, among the contacts the import updated: `changed` (another value), `added` (a value
where there was none) and `erased`; `unsubscribed` and `resubscribed` count subscriptions
that changed, a contact created unsubscribed included.
"""

import dataclasses
from collections.abc import Generator, Iterator
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, and_, delete, func, insert, literal, select, text, update

from ..contact import KEYS
from ..record import now
from .tables import contacts, imports, journal, journals

#: Before-images read at a time when changes are listed.
ROWS = 5000
#: Contacts a rollback leaves as they are, listed in its record (all are counted).
LEFT_LISTED = 1000


@dataclass(frozen=True)
class Change:
    """One field of one contact that an import changed (a line of the changes report)."""

    key: str  # the contact's match key value (or another key's, if it has none)
    change: str  # created, changed, added, erased, unsubscribed, resubscribed
    field: str
    before: Any
    after: Any

    def as_dict(self) -> dict[str, Any]:
        return {"key": self.key, "change": self.change, "field": self.field,
                "before": self.before, "after": self.after}


class JournalError(Exception):
    """An import that cannot be rolled back or listed; the message says why."""


class Applied:
    """The changes of an import, seen from its own transaction (before it commits)."""

    def __init__(self, connection: Connection, import_id: str, account: str, first_id: int,
                 last_id: int | None = None) -> None:
        self.connection, self.import_id, self.account = connection, import_id, account
        self.first_id = first_id
        if last_id is None:  # the import's end: the highest contact it created, if any
            last_id = connection.execute(
                select(func.coalesce(func.max(contacts.c.id), first_id))
                .where(contacts.c.account == account, contacts.c.id > first_id)).scalar_one()
        self.last_id = last_id

    def summary(self) -> dict[str, Any]:
        """What the import changed, per field (see the module's doc)."""
        return summarise(self.connection, self.import_id, self.account, self.first_id,
                         self.last_id)

    def changes(self, match_on: str = "email", field: str | None = None
                ) -> Generator[Change, None, None]:
        """The import's changes, contact by contact: each updated contact's changed fields
        (before, and after as the contact is now), then each created contact's fields."""
        return _changes(self, match_on, field)

    def record(self, summary: dict[str, Any], state: str) -> None:
        """Record the import's summary and its journal's `state` (the journal is dropped
        unless kept)."""
        record(self.connection, self.import_id, self.account, summary, state, self.first_id,
               self.last_id)


def record(connection: Connection, import_id: str, account: str, summary: dict[str, Any],
           state: str, first_id: int = 0, last_id: int = 0) -> None:
    """Record an import's change summary and its journal's `state`: kept, off, or for an
    import computed but not applied (previewed, held) its status; its journal is dropped
    unless kept."""
    values = {"account": account, "first_id": first_id, "last_id": last_id, "state": state,
              "finished_at": now(), "summary": summary}
    if connection.execute(update(journals).where(journals.c.id == import_id)
                          .values(values)).rowcount == 0:
        connection.execute(insert(journals).values(id=import_id, **values))
    if state != "kept":
        connection.execute(delete(journal).where(journal.c.import_id == import_id))


#: The summary of an import that changed nothing.
NOTHING: dict[str, Any] = {"created": 0, "updated": 0, "unsubscribed": 0, "resubscribed": 0,
                           "erased": 0, "absent": 0, "fields": {}}


def summarise(connection: Connection, import_id: str, account: str, first_id: int,
              last_id: int) -> dict[str, Any]:
    """What the import `import_id` changed, per field (see the module's doc)."""
    fields: dict[str, dict[str, int]] = {}

    def count(field: str, change: str, number: int | None) -> None:
        if number:
            fields.setdefault(field, {"changed": 0, "added": 0, "erased": 0})[change] += number

    parameters = {"id": import_id}
    each = _each(connection)
    sums = []
    for key in KEYS:
        sums += [f"sum(CASE WHEN j.{key} IS NULL AND c.{key} IS NOT NULL THEN 1 ELSE 0 END)",
                 f"sum(CASE WHEN j.{key} IS NOT NULL AND c.{key} IS NULL THEN 1 ELSE 0 END)",
                 f"sum(CASE WHEN j.{key} <> c.{key} THEN 1 ELSE 0 END)"]
    sums += ["sum(CASE WHEN c.unsubscribed AND NOT j.unsubscribed THEN 1 ELSE 0 END)",
             "sum(CASE WHEN j.unsubscribed AND NOT c.unsubscribed THEN 1 ELSE 0 END)",
             "count(c.id)", "sum(CASE WHEN c.id IS NULL THEN 1 ELSE 0 END)"]
    row = connection.execute(text(f"SELECT {', '.join(sums)} {_FROM} {_OF}"), parameters).one()
    for index, key in enumerate(KEYS):
        for change, number in zip(("added", "erased", "changed"), row[3 * index:3 * index + 3],
                                  strict=True):
            count(key, change, number)
    unsubscribed, resubscribed, updated, deleted = (number or 0 for number in row[-4:])
    # Each field that differs, once: those the contact had (b), then those it got (a). Read
    # once for both sums: per field, and (the row without a field) the contacts left with a
    # value erased.
    keys_erased = " OR ".join(f"(j.{key} IS NOT NULL AND c.{key} IS NULL)" for key in KEYS)
    erased_contacts = 0
    for field, added, erased, changed in connection.execute(text(
            f"WITH d AS MATERIALIZED (SELECT j.contact_id, x.key AS key, x.value AS b, "
            f"c.fields ->> x.key AS a "
            f"FROM journal j JOIN contacts c ON c.id = j.contact_id, {each}(j.fields) x "
            f"{_OF} AND x.value IS DISTINCT FROM c.fields ->> x.key "
            f"UNION ALL SELECT j.contact_id, y.key, NULL, y.value "
            f"FROM journal j JOIN contacts c ON c.id = j.contact_id, {each}(c.fields) y "
            f"{_OF} AND j.fields ->> y.key IS NULL) "
            "SELECT key, sum(CASE WHEN b IS NULL THEN 1 ELSE 0 END), "
            "sum(CASE WHEN a IS NULL THEN 1 ELSE 0 END), "
            "sum(CASE WHEN a IS NOT NULL AND b IS NOT NULL THEN 1 ELSE 0 END) "
            "FROM d GROUP BY key "
            "UNION ALL SELECT NULL, count(*), 0, 0 FROM (SELECT contact_id FROM d "
            "WHERE a IS NULL UNION SELECT j.contact_id FROM journal j "
            f"JOIN contacts c ON c.id = j.contact_id {_OF} AND ({keys_erased})) e"),
            parameters):
        if field is None:
            erased_contacts = added
            continue
        count(field, "added", added)
        count(field, "erased", erased)
        count(field, "changed", changed)
    created, created_unsubscribed = connection.execute(
        select(func.count(), func.coalesce(func.sum(
            contacts.c.unsubscribed.cast(contacts.c.id.type)), 0))
        .where(*_created(account, first_id, last_id))).one()
    # A contact the import unsubscribed for being absent from a mirror file is absent too.
    absent = connection.execute(
        select(func.count()).where(journal.c.import_id == import_id, journal.c.absent)
    ).scalar_one()
    return {"created": created, "updated": updated - (absent - deleted),
            "unsubscribed": unsubscribed + created_unsubscribed, "resubscribed": resubscribed,
            "erased": erased_contacts, "absent": absent, "fields": dict(sorted(fields.items()))}


#: The journal of an import (:id) joined to its contacts as they are now.
_FROM = "FROM journal j LEFT JOIN contacts c ON c.id = j.contact_id"
_OF = "WHERE j.import_id = :id"


def _each(connection: Connection) -> str:
    """The database's function listing a JSON object's keys and values (as text)."""
    return "jsonb_each_text" if connection.dialect.name == "postgresql" else "json_each"


def _created(account: str, first_id: int, last_id: int) -> tuple[Any, ...]:
    """The conditions of the contacts an import created (`conclude`)."""
    return (contacts.c.account == account, contacts.c.id > first_id, contacts.c.id <= last_id)


def kept(connection: Connection, import_id: str) -> Any:
    """The journals row of an applied import whose journal is kept; else JournalError."""
    record = connection.execute(select(imports.c.status).where(imports.c.id == import_id)).first()
    if record is None:
        raise JournalError(f"no import {import_id!r}")
    row = connection.execute(select(journals).where(journals.c.id == import_id)).first()
    if record.status == "rolled_back":
        raise JournalError(f"import {import_id} is already rolled back")
    if record.status != "imported" or row is None:
        raise JournalError(f"import {import_id} is {record.status}: it applied nothing")
    if row.state == "off":
        raise JournalError(f"import {import_id} kept no journal (DROPIMPORT_JOURNAL_DAYS=0)")
    if row.state == "purged":
        raise JournalError(f"the journal of import {import_id} was purged "
                           "(DROPIMPORT_JOURNAL_DAYS): it can no longer be undone or listed")
    return row


def contacts_of(connection: Connection, account: str) -> int:
    """How many contacts `account` has."""
    return connection.execute(select(func.count()).where(contacts.c.account == account)
                              ).scalar_one()


def listed(connection: Connection, import_id: str, match_on: str = "email",
           field: str | None = None) -> Iterator[Change]:
    """The changes of an applied import whose journal is kept; else JournalError."""
    row = kept(connection, import_id)
    return _changes(Applied(connection, import_id, row.account, row.first_id, row.last_id),
                    match_on, field)


def _changes(applied: Applied, match_on: str, field: str | None
             ) -> Generator[Change, None, None]:
    connection, import_id = applied.connection, applied.import_id
    before, after = journal.alias("j"), contacts.alias("c")
    query = (select(*(before.c[key] for key in KEYS), before.c.fields, before.c.unsubscribed,
                    *(after.c[key] for key in KEYS), after.c.fields, after.c.unsubscribed)
             .select_from(before.outerjoin(after, after.c.id == before.c.contact_id))
             .where(before.c.import_id == import_id).order_by(before.c.contact_id))
    width = len(KEYS) + 2
    with connection.execute(query.execution_options(yield_per=ROWS)) as rows:
        for values in rows:
            old = _contact(values[:width])
            if values[-1] is None:  # no contact now: deleted (absent from a mirror file)
                key = _key(old, match_on)
                for name, value in old.items():
                    if field is None or name == field:
                        yield Change(key, "deleted", name, value, None)
                continue
            new = _contact(values[width:])
            key = _key(new, match_on) or _key(old, match_on)
            for name in sorted(old.keys() | new.keys()):
                if field is not None and name != field:
                    continue
                was, now_ = old.get(name), new.get(name)
                if name == "unsubscribed":
                    if was != now_:
                        yield Change(key, "unsubscribed" if now_ else "resubscribed", name, was,
                                     now_)
                elif was is None and now_ is not None:
                    yield Change(key, "added", name, None, now_)
                elif was is not None and now_ is None:
                    yield Change(key, "erased", name, was, None)
                elif was != now_:
                    yield Change(key, "changed", name, was, now_)
    query = (select(*(contacts.c[key] for key in KEYS), contacts.c.fields,
                    contacts.c.unsubscribed)
             .where(*_created(applied.account, applied.first_id, applied.last_id))
             .order_by(contacts.c.id))
    with connection.execute(query.execution_options(yield_per=ROWS)) as rows:
        for values in rows:
            new = _contact(values)
            key = _key(new, match_on)
            for name, value in new.items():
                if field is None or name == field:
                    yield Change(key, "created", name, None, value)


def _contact(values: Any) -> dict[str, Any]:
    """A contact's keys, fields and subscription as one dict (its absent values left out)."""
    *keys, fields, unsubscribed = values
    return {**{key: value for key, value in zip(KEYS, keys, strict=True) if value is not None},
            **(fields or {}), "unsubscribed": bool(unsubscribed)}


def _key(contact: dict[str, Any], match_on: str) -> str:
    return str(next((contact[key] for key in (match_on, *KEYS) if key in contact), ""))


@dataclass
class Rollback:
    """What rolling an import back does: contacts deleted, restored, and left as they are."""

    deleted: int = 0
    restored: int = 0
    left: int = 0
    listed: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # first LEFT_LISTED

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def roll_back(connection: Connection, import_id: str, by: str, force: bool = False,
              dry_run: bool = False) -> Rollback:
    """Put every contact the import `import_id` touched back as it was, in the transaction of
    `connection` (the caller holds the account): delete those it created, restore the keys,
    fields and subscription of those it updated, insert again those it deleted.

    A contact changed by a later import since (its import_id is another's) is left as it is
    and listed, unless `force`; so is a contact whose old key value another contact holds now
    (it cannot get it back). Set-based: those changed since are told apart by a condition,
    not listed in the statements, however many they are.
    """
    row = kept(connection, import_id)
    account = row.account
    since = [] if force else [contacts.c.import_id == import_id]  # not changed since
    taken = _keys_taken(connection, import_id, row, force)
    spared = [contacts.c.id.not_in(taken)] if taken else []
    created = [*_created(account, row.first_id, row.last_id), *since, *spared]
    updated = [contacts.c.id == journal.c.contact_id, journal.c.import_id == import_id,
               *since, *spared]
    # Those it deleted (absent from a mirror file) are inserted again, as they were.
    gone = [journal.c.import_id == import_id,
            ~select(contacts.c.id).where(contacts.c.id == journal.c.contact_id).exists(),
            *([journal.c.contact_id.not_in(taken)] if taken else [])]
    outcome = Rollback(
        deleted=connection.execute(select(func.count()).where(*created)).scalar_one(),
        restored=connection.execute(select(func.count()).select_from(journal).where(*updated)
                                    ).scalar_one()
        + connection.execute(select(func.count()).select_from(journal).where(*gone)
                             ).scalar_one())
    listed = [] if force else _changed_since(connection, import_id, row)
    outcome.left = len(taken) + (0 if force else _count_changed_since(connection, import_id, row))
    listed += [(contact_id, why) for contact_id, why in taken.items()]
    shown = dict(sorted(listed)[:LEFT_LISTED])
    found = {contact_id: _contact(values) for contact_id, *values in connection.execute(
        select(contacts.c.id, *(contacts.c[key] for key in KEYS), contacts.c.fields,
               contacts.c.unsubscribed).where(contacts.c.id.in_(list(shown))))} if shown else {}
    outcome.listed = [{"contact": contact_id, "key": _key(found.get(contact_id, {}), "email"),
                       "why": why} for contact_id, why in shown.items()]
    if dry_run:
        return outcome
    connection.execute(delete(contacts).where(*created))
    # Keys first let go, then given back: two contacts the import swapped a value between
    # get theirs back whatever the order.
    connection.execute(update(contacts).where(*updated).values(**dict.fromkeys(KEYS)))
    connection.execute(
        update(contacts).where(*updated)
        .values(**{key: journal.c[key] for key in KEYS}, fields=journal.c.fields,
                unsubscribed=journal.c.unsubscribed, fingerprint=journal.c.fingerprint,
                updated_at=journal.c.updated_at, import_id=journal.c.last_import))
    columns = [*KEYS, "fields", "unsubscribed", "fingerprint", "created_at", "updated_at"]
    connection.execute(insert(contacts).from_select(
        ["id", "account", *columns, "import_id"],
        select(journal.c.contact_id, literal(account), *(journal.c[name] for name in columns),
               journal.c.last_import).where(*gone)))
    connection.execute(update(imports).where(imports.c.id == import_id)
                       .values(status="rolled_back"))
    connection.execute(update(journals).where(journals.c.id == import_id).values(
        state="rolled_back", rolled_back_at=now(), rolled_back_by=by,
        rollback=outcome.as_dict()))
    connection.execute(delete(journal).where(journal.c.import_id == import_id))
    return outcome


def _changed_since(connection: Connection, import_id: str, row: Any
                   ) -> list[tuple[int, str]]:
    """The first LEFT_LISTED contacts the import touched that a later import changed since,
    each with why it is left."""
    updated = connection.execute(
        select(contacts.c.id, contacts.c.import_id)
        .select_from(journal.join(contacts, contacts.c.id == journal.c.contact_id))
        .where(journal.c.import_id == import_id, contacts.c.import_id != import_id)
        .order_by(contacts.c.id).limit(LEFT_LISTED))
    created = connection.execute(
        select(contacts.c.id, contacts.c.import_id)
        .where(*_created(row.account, row.first_id, row.last_id),
               contacts.c.import_id != import_id)
        .order_by(contacts.c.id).limit(LEFT_LISTED))
    return ([(contact_id, f"changed by import {other} since") for contact_id, other in updated]
            + [(contact_id, f"created by this import, changed by import {other} since")
               for contact_id, other in created])


def _count_changed_since(connection: Connection, import_id: str, row: Any) -> int:
    """How many contacts the import touched a later import changed since."""
    return connection.execute(
        select(func.count()).select_from(journal.join(contacts,
                                                      contacts.c.id == journal.c.contact_id))
        .where(journal.c.import_id == import_id, contacts.c.import_id != import_id)
    ).scalar_one() + connection.execute(
        select(func.count()).where(*_created(row.account, row.first_id, row.last_id),
                                   contacts.c.import_id != import_id)).scalar_one()


def _keys_taken(connection: Connection, import_id: str, row: Any, force: bool
                ) -> dict[int, str]:
    """The contacts the rollback would restore whose old key value another contact holds
    now that the rollback neither restores nor deletes: they cannot get it back, and are left
    (leaving one may keep another from getting its value back: to a fixed point). Most
    rollbacks find none."""
    own, holders = contacts.alias("o"), contacts.alias("h")
    theirs = journal.alias("t")  # the holder's own before-image, if the import updated it
    taken: list[Any] = []
    for key in KEYS:
        taken += connection.execute(
            select(journal.c.contact_id, own.c.import_id, journal.c[key], holders.c.id,
                   holders.c.import_id, theirs.c.contact_id.is_not(None))
            .select_from(journal.outerjoin(own, own.c.id == journal.c.contact_id)
                         .join(holders, and_(holders.c.account == row.account,
                                             holders.c[key] == journal.c[key]))
                         .outerjoin(theirs, and_(theirs.c.import_id == import_id,
                                                 theirs.c.contact_id == holders.c.id)))
            .where(journal.c.import_id == import_id, journal.c[key].is_not(None),
                   holders.c.id != journal.c.contact_id)).all()

    def restored(import_of: str | None) -> bool:  # not changed since (or forced)
        return force or import_of in (None, import_id)

    left: dict[int, str] = {}
    while True:
        more = {}
        for contact_id, own_import, value, holder, holder_import, updated in taken:
            if contact_id in left or not restored(own_import):
                continue  # left already, or as changed since
            created = row.first_id < holder <= row.last_id
            if (updated or created) and restored(holder_import) and holder not in left:
                continue  # the holder is restored or deleted: it lets the value go
            more[contact_id] = f"its old value {value!r} belongs to another contact now"
        if not more:
            return left
        left.update(more)


def purge(connection: Connection, before: datetime) -> int:
    """Drop the journals of the imports applied before `before`; return how many."""
    ids = select(journals.c.id).where(journals.c.state == "kept",
                                      journals.c.finished_at < before)
    connection.execute(delete(journal).where(journal.c.import_id.in_(ids)))
    return connection.execute(update(journals).where(journals.c.id.in_(ids))
                              .values(state="purged")).rowcount


def summaries(connection: Connection, import_ids: list[str]) -> dict[str, Any]:
    """import id -> its journals row (summary, state, rollback), for the records shown."""
    found: dict[str, Any] = {}
    for at in range(0, len(import_ids), 500):  # within any database's parameter limit
        found.update((row.id, row) for row in connection.execute(
            select(journals).where(journals.c.id.in_(import_ids[at:at + 500]))))
    return found


def as_record(row: Any) -> dict[str, Any]:
    """The columns an import record gets of its journals row (None: not applied)."""
    if row is None:
        return {**dict.fromkeys(RECORDED), "absent": 0}
    return {"absent": row.summary["absent"], "changes": row.summary, "journal": row.state,
            "rolled_back_at": row.rolled_back_at, "rolled_back_by": row.rolled_back_by,
            "rollback": row.rollback}


#: What an import record shows of its journal (and `absent`, the contacts absent from a
#: mirror file).
RECORDED = ("changes", "journal", "rolled_back_at", "rolled_back_by", "rollback")
