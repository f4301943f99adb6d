"""The hot path of an import: the stored contacts a chunk of rows can touch, and its writes.

One round trip loads the contacts of a chunk (one array parameter per key, not a parameter per
value), one COPY (PostgreSQL) or one executemany (SQLite) inserts its new contacts, and one
UPDATE ... FROM a staging table (PostgreSQL) or one executemany (SQLite) updates the changed
ones. Both run on the driver's own connection inside the import's transaction; SQLAlchemy
compiles nothing per row. `tests/worker/reference.py` does the same row by row, the plain way:
a test checks that both leave identical contacts.

On PostgreSQL, the rows that can only find their contact by their match key value (no other
of their key values can be held: `Writes._plain`) are not looked up at all: COPY stages them
and one INSERT ... ON CONFLICT DO UPDATE merges them, as the database would load a file by
itself: Python's share of the work shrinks, most on a big file of changed contacts.

While a chunk is applied, a thread of its own writes the chunk before it, then looks up the
chunk after it (the drivers wait for the database without holding the GIL): the database
works while Python does. A chunk's writes are thus pending until the next chunk is looked up,
which sees the database without them: when they touch one of its values or contacts, they
are written first and the chunk looked up again.
"""

import heapq
import sqlite3
from collections import Counter, deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, final

import psycopg
from sqlalchemy import Connection

from ..contact import KEYS, Contact, KeyFilter, Stored
from ..record import Counts
from .changes import Changes

COLUMNS = ", ".join(KEYS)


LINE = attrgetter("line")  # what rows and rejections are ordered by: their line


def loaded(rows: Iterable[Sequence[Any]]) -> list[Stored]:
    """The Stored contacts of `rows`, each once (one contact may match twice), a row at a
    time: the driver's rows are not all made first."""
    loaded: dict[int, Stored] = {}
    for id_, *keys, text, unsubscribed, fingerprint in rows:
        if id_ not in loaded:
            loaded[id_] = Stored(id_, {k: v for k, v in zip(KEYS, keys, strict=True)
                                       if v is not None},
                                 None, bool(unsubscribed), text, fingerprint)
    return list(loaded.values())


def wanted(chunk: Iterable[Contact]) -> dict[str, set[Any]]:
    """The values of each key that the contacts of `chunk` carry."""
    values: dict[str, set[Any]] = {key: set() for key in KEYS}
    for contact in chunk:
        for key, value in contact.keys.items():
            values[key].add(value)
    return {key: found for key, found in values.items() if found}


@dataclass(slots=True)
class Sorted:
    """A chunk's Contacts sorted for their lookup (`Writes._sort`)."""

    lookups: dict[str, set]  # key -> the values of the rows in `rest` the account may hold
    plain: list[Contact]  # upserted by the database itself (`Writes._plain`)
    new: list[Contact]  # new contacts, inserted as they are
    carried: dict[str, set]  # key -> the values that plain and new rows carry
    rest: list[Contact]  # applied to their stored contacts by Changes
    found: list[Stored] | None = None  # the stored contacts of `lookups`, once looked up


@final  # no subclass can make it falsy: `prepared and ...` is None or `...` (Writes._send)
@dataclass(slots=True)
class Prepared:
    """A chunk's writes, made ready to send (`Writes._prepare`): in the driver's form."""

    released: dict[str, list[int]]  # key -> the contacts that let go of their value first
    changed: Any  # the stored contacts to update
    created: Any  # the contacts to insert
    fingerprinted: Any  # the unchanged contacts' new fingerprints
    plain: Any = None  # the rows the database upserts (PostgreSQL)
    seen: list[Any] | None = None  # the match key values the file holds (mirror: `saw`)


@final  # likewise: `self.pending and self.pending.prepared` is None or a Prepared
@dataclass(slots=True)
class Pending:
    """A chunk's writes, held until the next chunk is looked up (`Writes.write`)."""

    changes: Changes
    carried: dict[str, set]  # Sorted.carried: the values its plain and new rows carry
    prepared: Prepared


class Writes:
    """The reads and writes of one import; a subclass speaks its database's SQL."""

    PARAMETER = "?"  # the driver's placeholder
    #: Whether the database upserts the rows it can match by itself (`_plain`).
    UPSERTS = False
    #: A chunk's lookups of a key that find none of this many of their values start the
    #: reading of the account's values of that key (`_learn`) ...
    MISSES = 1000
    #: ... of this many values per value not found, at each chunk.
    READS_PER_MISS = 8

    def __init__(self, connection: Connection, account: str, import_id: str, at: Any,
                 match_on: str, mode: str, mirror: bool = False) -> None:
        driver = connection.connection.driver_connection
        assert driver is not None  # a connection in use holds its driver's
        #: The driver's own connection: psycopg's or sqlite3's (each subclass says which).
        self.driver: psycopg.Connection[Any] | sqlite3.Connection = driver
        self.account, self.import_id, self.at = account, import_id, at
        self.match_on = match_on
        # Whether a row none of whose key values can be held creates a contact (`_plain`).
        self.creates = mode in ("upsert", "create_only")
        # The match key values met so far, when the database upserts plain rows: a row whose
        # value an earlier one had is not plain.
        self.met = KeyFilter() if self.UPSERTS and mode == "upsert" else None
        #: The chunk being applied, sorted: its plain and new rows are written with it.
        self.applying: Sorted | None = None
        #: What the database's upserts came to.
        self.upserted = Counts()
        self.created = self.upserted_rows = 0  # of those created and upserted, what `_learn` saw
        self.rows = 0  # the Contacts of the chunks sorted so far (`_sort`)
        self.inserted = 0  # the new rows inserted as they are, without Changes
        # The key values the account may hold, as far as the keys of `complete` go: the
        # others of these keys are not looked up. Into an account holding none (a first
        # import), every key starts complete. The values each chunk looks up enter the filter
        # (a superset of what the import writes), so that it stays exact about what can be
        # found.
        self.known = KeyFilter()
        self.complete = set() if holds_keys(self.driver, account, self.PARAMETER) else set(KEYS)
        self.read_to: dict[str, Any] = {}  # key -> the last of its values read, while reading
        self.recent: deque = deque(maxlen=2)  # the values of each key of the last two chunks
        self.pending: Pending | None = None  # sent once the next chunk is looked up
        #: The writes and lookup under way (a Future of the next chunk's Sorted), its chunk.
        self.sending: tuple[Future, list[Contact]] | None = None
        # An in-memory SQLite database belongs to the thread that opened it.
        shared = connection.dialect.name == "postgresql" or connection.engine.url.database not in (
            None, "", ":memory:")
        self.sender = ThreadPoolExecutor(1, "import-writes") if shared else None
        # The contacts the import creates are those of the account above it (ids only grow,
        # and the import holds the account): the journal keeps only the updated ones'.
        self.first_id = highest_id(self.driver)
        #: mirror: the match key values of the file since the last chunk written (`saw`).
        self.seen: list[Any] | None = None
        if mirror:
            self.seen = []
            self._seen_table()

    def stored(self, chunk: list[Contact], coming: list[Contact] | None = None
               ) -> tuple[list[Stored], list[Contact]]:
        """The stored contacts that hold a key value of the Contacts of `chunk`, and those
        Contacts to apply to them, in file order: the others, plain and new, are written
        with the chunk's writes (`_plain`).

        Then the pending writes are sent, followed by the lookup of `coming` (the next chunk,
        if any), to run while `chunk` is applied.
        """
        applying = self._settle(chunk)
        assert applying is not None
        found = applying.found
        if found is None:
            found = self._stored(applying.lookups)
        if self.pending is not None and self._touches(applying.lookups, found):
            self._write(self.pending.prepared)
            self.pending = None
            found = self._stored(applying.lookups)
        self._send(coming)
        applying.plain, applying.rest = _moved(applying.plain, applying.rest, found,
                                               self.match_on)
        if not (applying.plain or applying.new):
            applying.carried = {}
        self.applying = applying
        return found, applying.rest

    def write(self, changes: Changes) -> None:
        """Write `changes`, upsert the chunk's plain rows and insert its new ones: once the
        next chunk is looked up, or by `finish`.

        Its statements are made here: the thread that sends them then only waits on the
        database, and keeps it busy (it shares one interpreter lock with the applying).
        """
        applying, self.applying = self.applying, None
        assert applying is not None
        prepared = self._prepare(changes, applying.plain, applying.new)
        if self.seen:
            prepared.seen, self.seen = self.seen, []
        self.pending = Pending(changes, applying.carried, prepared)
        self.inserted += len(applying.new)

    def saw(self, keys: Iterable[Any]) -> None:
        """mirror: note match key values the file holds (written with the chunk's writes)."""
        assert self.seen is not None  # a mirror import's
        self.seen.extend(key for key in keys if key is not None)

    def absent(self, delete: bool) -> None:
        """mirror, once every write is done: the account's contacts the file does not hold
        by their match key value are absent: journaled (absent), then deleted or, if still
        subscribed, unsubscribed. Those the import created or updated are in the file."""
        p, match_on = self.PARAMETER, self.match_on
        self._see(self.seen or [])
        self._before_absent()
        self.driver.execute(
            f"INSERT INTO journal ({JOURNALED}, absent) SELECT {p}, {BEFORE}, TRUE "
            f"FROM contacts c WHERE c.account = {p} AND c.id <= {p}"
            + ("" if delete else " AND NOT c.unsubscribed")
            + f" AND NOT EXISTS (SELECT 1 FROM mirror_seen s WHERE s.value = c.{match_on}) "
            "ON CONFLICT (import_id, contact_id) DO UPDATE SET absent = TRUE",
            [self.import_id, self.account, self.first_id])
        absent = f"SELECT contact_id FROM journal WHERE import_id = {p} AND absent"
        if delete:
            self.driver.execute(f"DELETE FROM contacts WHERE id IN ({absent})", [self.import_id])
        else:
            self.driver.execute(
                f"UPDATE contacts SET unsubscribed = TRUE, updated_at = {p}, import_id = {p} "
                f"WHERE id IN ({absent})", [self.at, self.import_id, self.import_id])

    def _seen_table(self) -> None:
        """mirror: make the temporary table of the file's match key values, empty."""
        raise NotImplementedError

    def _see(self, keys: list[Any]) -> None:
        """mirror: add `keys` to the table of the file's match key values."""
        raise NotImplementedError

    def _before_absent(self) -> None:
        """What the database needs before the file's values are compared with the account's."""

    def finish(self, counts: Counts) -> None:
        """Write what is pending and wait for every write; raise what failed. Then add to
        `counts` what the database's upserts came to and the new rows inserted as they are."""
        self._settle(None)
        if self.pending is not None:
            self._write(self.pending.prepared)
            self.pending = None
        counts += self.upserted
        counts.created += self.inserted

    def close(self) -> None:
        """Wait for the work under way, if any (the import failed: its errors are moot)."""
        if self.sending is not None:
            self.sending[0].exception()
        if self.sender is not None:
            self.sender.shutdown()

    def _lookup(self, keys: dict[str, set]) -> list[Stored]:
        """The stored contacts of the account holding a value of `keys` (key -> values)."""
        raise NotImplementedError

    def _prepare(self, changes: Changes, plain: list[Contact], new: list[Contact]
                 ) -> Prepared:
        raise NotImplementedError

    def _write(self, prepared: Prepared) -> None:
        raise NotImplementedError

    def _send(self, coming: list[Contact] | None) -> None:
        prepared = self.pending and self.pending.prepared
        self.pending = None
        if self.sender is None or coming is None:
            if prepared is not None:
                self._write(prepared)
            return
        # The writes start at once; what to look up is found meanwhile, here: the thread
        # that sends keeps the database busy.
        writing = prepared and self.sender.submit(self._write, prepared)
        sorted_ = self._sort(coming)
        self.sending = self.sender.submit(self._looked_up, writing, sorted_), coming

    def _looked_up(self, writing: Future[None] | None, sorted_: Sorted) -> Sorted:
        if writing is not None:
            writing.result()  # done (one thread sends): raise what failed
        sorted_.found = self._stored(sorted_.lookups)
        return sorted_

    def _settle(self, chunk: list[Contact] | None) -> Sorted | None:
        """Wait for the work sent; return `chunk` Sorted, with the contacts found of its
        lookups if the work sent looked it up."""
        if self.sending is not None:
            (sending, coming), self.sending = self.sending, None
            looked_up = sending.result()
            if coming is chunk:
                return looked_up
        if chunk is None:
            return None
        return self._sort(chunk)

    def _sort(self, chunk: list[Contact]) -> Sorted:
        """`chunk` Sorted: the values of each key to look up, its plain and its new Contacts,
        the values of each key they carry, and the others: once per chunk in file order.

        Of each key, the values of the Contacts not plain; of a complete key, only those that
        `known` may hold (it takes them all).
        """
        keys = wanted(chunk)
        self.rows += len(chunk)
        self.recent.append(keys)
        maybe: dict[str, set[Any]] = {}  # key -> the values of `keys` the account may hold
        for key, values in keys.items():
            if key in self.complete:
                values = self.known.met(values)
            elif key in self.read_to:
                self.known.update(values)
            maybe[key] = values
        # No row is plain but where the database upserts, none new till the match key is read.
        sorts = self.creates and (self.met is not None or self.match_on in self.complete)
        plain, new, rest = self._plain(chunk, keys, maybe) if sorts else ([], [], chunk)
        carried: dict[str, set[Any]] = {}
        if plain or new:  # the values of the others; plain and new rows share none with them
            others = wanted(rest)
            carried = {key: values - others.get(key, set()) for key, values in keys.items()}
            maybe = {key: values & maybe[key] for key, values in others.items()}
        return Sorted({key: values for key, values in maybe.items() if values}, plain, new,
                      carried, rest)

    def _plain(self, chunk: list[Contact], keys: dict[str, set[Any]],
               maybe_held: dict[str, set[Any]]
               ) -> tuple[list[Contact], list[Contact], list[Contact]]:
        """The Contacts of `chunk` the database can upsert by itself, those that are new
        contacts, and the others.

        Plain (when the database upserts): its match key value may be held, but by a
        contact no earlier row of the import met; none of its other key values can be held
        (every value of those keys is `known`) or is another row's of the chunk; it erases
        no field. Its contact, if any, is then updated by its row alone, and only another
        row holding a value it lets go can tell: `_moved` takes it back.

        New: none of its key values can be held (its keys are complete), even its match
        key's, or is another row's of the chunk: its contact is its row, inserted as it is
        without Changes to keep (less of the importing process's CPU on a file of new
        contacts).
        """
        match_on = self.match_on
        upserts = self.met is not None
        # `upserts`: `self.met` is not None.
        met = self.met.met({contact.key for contact in chunk  # type: ignore[union-attr]
                            if contact.key is not None}) if upserts else ()
        # Of the match key's values, those that may be held; when its values are not all
        # `known`, any.
        maybe = maybe_held.get(match_on, ()) if match_on in self.complete else None
        names = self.complete | {match_on}  # the keys a plain or new row may carry
        # The values no plain or new row may carry: another key's value that may be held (of any
        # key: stricter), or a value carried twice (whichever keys carry it).
        barred = set().union(*(maybe_held[name] for name in keys if name != match_on))
        if sum(len(values) for values in keys.values()) != sum(len(c.keys) for c in chunk):
            barred.update(value for value, count in
                          Counter(v for c in chunk for v in c.keys.values()).items() if count > 1)
        plain, new, rest = [], [], []
        for contact in chunk:  # set operations: no Python step per key
            key = contact.key
            if contact.keys.keys() <= names and barred.isdisjoint(contact.keys.values()):
                if maybe is not None and key not in maybe:
                    new.append(contact)
                    continue
                if upserts and key not in met and not contact.cleared:
                    plain.append(contact)
                    continue
            rest.append(contact)
        return plain, new, rest

    def _touches(self, keys: dict[str, set[Any]], found: list[Stored]) -> bool:
        """Whether the pending writes change what a lookup of `keys` found (`found`)."""
        assert self.pending is not None  # asked only of pending writes (`stored`)
        upserted = self.pending.carried
        if self.pending.changes.touches(keys, found):
            return True
        if not upserted:
            return False
        if any(values & upserted.get(key, set()) for key, values in keys.items()):
            return True  # who holds a value
        matched = upserted[self.match_on]  # the contacts upserted
        return any(contact.keys.get(self.match_on) in matched for contact in found)

    def _stored(self, keys: dict[str, set[Any]]) -> list[Stored]:
        # The match key first: the other values its contacts hold need no lookup, since no
        # other contact can hold them (most rows of a nightly file).
        match = keys.get(self.match_on)
        found = self._lookup({self.match_on: match}) if match else []
        asked = {key: values if key == self.match_on else
                 values - {contact.keys.get(key) for contact in found}
                 for key, values in keys.items()}
        others = {key: values for key, values in asked.items() if key != self.match_on and values}
        if others:
            ids = {contact.id for contact in found}
            found = found + [c for c in self._lookup(others) if c.id not in ids]
        self._learn(asked, found)
        return found

    def _learn(self, asked: dict[str, set[Any]], found: list[Stored]) -> None:
        """Read on the values the account holds of each key whose lookups missed `MISSES` of
        the values `asked` or more, `READS_PER_MISS` a miss.

        A lookup that finds nothing still probes the key's index (a key the account never
        filled, or a big file of new contacts, misses at every row). Once a key's values are
        all read, only those `known` may hold are looked up, and a row none of whose values
        can be held is inserted as it is (`_plain`). Read on the import's connection, a
        page at a time in the key's order (PostgreSQL: all at once, `PostgresWrites._read`):
        reading a value costs about an eighth of a probe, so the reading costs about what
        the probes missed so far did, and nothing when lookups find what they look for (a
        nightly re-upload). The contacts the database's upserts created count as misses of
        the match key: their values were not found, without a lookup (once the account's
        values are read, a file's new contacts are inserted as they are, sparing the
        database the upserts' work). The values looked up
        while a key is read enter `known` too: those of the two chunks before the reading
        started, whose writes may come after the page that would have held them, and then
        every chunk's.
        """
        tried = {key: len(values) for key, values in asked.items()
                 if values and key not in self.complete}
        missed = {key: len(asked[key] - {contact.keys.get(key) for contact in found})
                  for key in tried}
        created, upserted = self.upserted.created, self.upserted.rows
        if created > self.created and self.match_on not in self.complete:
            match_on = self.match_on
            missed[match_on] = missed.get(match_on, 0) + created - self.created
            tried[match_on] = tried.get(match_on, 0) + upserted - self.upserted_rows
        self.created, self.upserted_rows = created, upserted
        for key, misses in missed.items():
            if key not in self.read_to:
                if misses < self.MISSES:
                    continue
                self.read_to[key] = None
                for keys in self.recent:
                    self.known.update(keys.get(key, ()))
            if misses:
                self._read(key, misses * self.READS_PER_MISS, misses / tried[key])

    def _read(self, key: str, limit: int, rate: float) -> None:
        """Read on `limit` values of `key` the account holds, into `known`, in the order of
        the key's index (account, key). (`rate`: the share of the values looked for that the
        last chunk missed; PostgreSQL's reading weighs it.)"""
        after, parameters = self.read_to[key], [self.account]
        page = values_sql(key, self.PARAMETER)
        if after is not None:
            page += f" AND {key} > {self.PARAMETER}"
            parameters.append(after)
        rows = self.driver.execute(f"{page} ORDER BY {key} LIMIT {limit:d}", parameters).fetchall()
        self.known.update(value for value, in rows)
        if len(rows) < limit:
            self.complete.add(key)
            del self.read_to[key]
        else:
            self.read_to[key] = rows[-1][0]


def _moved(plain: list[Contact], rest: list[Contact], found: list[Stored], match_on: str
           ) -> tuple[list[Contact], list[Contact]]:
    """`plain` and `rest` once the plain rows whose contact was `found` join the rest.

    Found, the contact holds a value another row of the chunk looks up (its own value, or
    one the plain row lets go): its row is applied with the others, in file order. The
    contact is loaded, and the row's other values need no lookup (none can be held).
    """
    if not plain or not found:
        return plain, rest
    matched = {contact.keys.get(match_on) for contact in found}
    moved = [contact for contact in plain if contact.key in matched]
    if not moved:
        return plain, rest
    return ([contact for contact in plain if contact.key not in matched],
            list(heapq.merge(rest, moved, key=LINE)))


def holds_keys(driver: psycopg.Connection[Any] | sqlite3.Connection, account: str,
               parameter: str) -> int:
    """Whether a contact of `account` holds a key value: a probe of each key's index, on a
    connection of the driver (`parameter` is its placeholder)."""
    held = " OR ".join(f"EXISTS (SELECT 1 FROM contacts WHERE account = {parameter} "
                       f"AND {key} IS NOT NULL)" for key in KEYS)
    row = driver.execute(f"SELECT {held}", [account] * len(KEYS)).fetchone()
    assert row is not None  # a SELECT of no table: one row
    return row[0]


def highest_id(driver: psycopg.Connection[Any] | sqlite3.Connection) -> int:
    """The highest contact id of the store, 0 when it has none."""
    row = driver.execute("SELECT coalesce(max(id), 0) FROM contacts").fetchone()
    assert row is not None  # an aggregate: one row
    return row[0]


#: The journal's columns (tables.journal), and the contact `c`'s values they keep: what an
#: import's update is about to change, written by the same transaction just before it.
JOURNALED = ("import_id, contact_id, email, external_id, phone, fields, unsubscribed, "
             "fingerprint, created_at, updated_at, last_import")
BEFORE = ("c.id, c.email, c.external_id, c.phone, c.fields, c.unsubscribed, c.fingerprint, "
          "c.created_at, c.updated_at, c.import_id")


def values_sql(key: str, parameter: str = "%s") -> str:
    """The values of `key` the contacts of an account hold (`parameter`: the driver's
    placeholder of the account)."""
    return f"SELECT {key} FROM contacts WHERE account = {parameter} AND {key} IS NOT NULL"
