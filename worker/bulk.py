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
works while Python does. A chunk's writes are thus held until the next chunk is looked up,
which sees the database without them: when they touch one of its values or contacts, they
are written first and the chunk looked up again.
"""

import heapq
import sqlite3
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from itertools import chain
from operator import attrgetter

import orjson
import psycopg
from sqlalchemy import make_url

from .changes import Stored
from .template import KEYS, KeyFilter

_COLUMNS = ", ".join(KEYS)
LINE = attrgetter("line")  # what rows and rejections are ordered by: their line


def _loaded(rows):
    """The Stored contacts of `rows`, each once (one contact may match twice), a row at a
    time: the driver's rows are not all made first."""
    loaded = {}
    for id_, *keys, text, unsubscribed, fingerprint in rows:
        if id_ not in loaded:
            loaded[id_] = Stored(id_, {k: v for k, v in zip(KEYS, keys, strict=True)
                                       if v is not None},
                                 None, bool(unsubscribed), text, fingerprint)
    return list(loaded.values())


def wanted(chunk):
    """The values of each key that the contacts of `chunk` carry."""
    values = {key: set() for key in KEYS}
    for contact in chunk:
        for key, value in contact.keys.items():
            values[key].add(value)
    return {key: found for key, found in values.items() if found}


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

    def __init__(self, connection, account, import_id, at, match_on, mode):
        self.driver = connection.connection.driver_connection
        self.account, self.import_id, self.at = account, import_id, at
        self.match_on = match_on
        # Whether a row none of whose key values can be held creates a contact (`_plain`).
        self.creates = mode in ("upsert", "create_only")
        # The match key values met so far, when the database upserts plain rows: a row whose
        # value an earlier one had is not plain.
        self.met = KeyFilter() if self.UPSERTS and mode == "upsert" else None
        self.plain = ()  # the Contacts of the chunk being applied that the database upserts
        self.new = ()  # those that are new contacts, inserted as they are
        self.plain_values = {}  # key -> the values both carry (and those of rows _moved)
        #: What the database's upserts came to, and the new rows inserted without a Batch,
        #: once `finish` returned.
        self.upserted = dict.fromkeys(("created", "updated", "unchanged"), 0)
        self.created = self.upserted_rows = 0  # of those created and upserted, what `_learn` saw
        self.rows = 0  # the Contacts of the chunks sorted so far (`_wanted`)
        self.inserted = 0
        # The key values the account may hold, as far as the keys of `complete` go: the
        # others of these keys are not looked up. Into an account holding none (a first
        # import), every key starts complete. The values each chunk looks up enter the filter
        # (a superset of what the import writes), so that it stays exact about what can be
        # found.
        self.known = KeyFilter()
        self.complete = set() if _holds_keys(self.driver, account, self.PARAMETER) else set(KEYS)
        self.read_to = {}  # key -> the last of its values read from the account, while reading
        self.recent = deque(maxlen=2)  # the values of each key of the last two chunks looked up
        self.held = None  # (a Batch, its writes) sent once the next chunk is looked up
        self.sending = None  # (the Future of the writes and lookup under way, its chunk)
        # An in-memory SQLite database belongs to the thread that opened it.
        shared = connection.dialect.name == "postgresql" or connection.engine.url.database not in (
            None, "", ":memory:")
        self.sender = ThreadPoolExecutor(1, "import-writes") if shared else None

    def stored(self, chunk, coming=None):
        """The stored contacts that hold a key value of the Contacts of `chunk`, and those
        Contacts to apply to them, in file order: the others, plain and new, are written
        with the chunk's writes (`_plain`).

        Then the held writes are sent, followed by the lookup of `coming` (the next chunk,
        if any), to run while `chunk` is applied.
        """
        keys, plain, self.new, plain_values, rest, found = self._settle(chunk)
        if found is None:
            found = self._stored(keys)
        if self.held is not None and self._touches(keys, found):
            self._write(self.held[2])
            self.held = None
            found = self._stored(keys)
        self._send(coming)
        self.plain, rest = _moved(plain, rest, found, self.match_on)
        self.plain_values = plain_values if self.plain or self.new else {}
        return found, rest

    def write(self, batch):
        """Write the changes of `batch`, upsert the chunk's plain rows and insert its new
        ones: once the next chunk is looked up, or by `finish`.

        Its statements are made here: the thread that sends them then only waits on the
        database, and keeps it busy (it shares one interpreter lock with the applying).
        """
        self.held = batch, self.plain_values, self._prepare(batch, self.plain, self.new)
        self.inserted += len(self.new)
        self.plain, self.new, self.plain_values = (), (), {}

    def finish(self):
        """Write what is held and wait for every write; raise what failed."""
        self._settle(None)
        if self.held is not None:
            self._write(self.held[2])
            self.held = None

    def close(self):
        """Wait for the work under way, if any (the import failed: its errors are moot)."""
        if self.sending is not None:
            self.sending[0].exception()
        if self.sender is not None:
            self.sender.shutdown()

    def _send(self, coming):
        writes = self.held and self.held[2]
        self.held = None
        if self.sender is None or coming is None:
            if writes is not None:
                self._write(writes)
            return
        # The writes start at once; what to look up is found meanwhile, here: the thread
        # that sends keeps the database busy.
        writing = writes and self.sender.submit(self._write, writes)
        wanted = self._wanted(coming)
        self.sending = self.sender.submit(self._looked_up, writing, wanted), coming

    def _looked_up(self, writing, wanted):
        if writing is not None:
            writing.result()  # done (one thread sends): raise what failed
        return *wanted, self._stored(wanted[0])

    def _settle(self, chunk):
        """Wait for the work sent; return `_wanted(chunk)` and the contacts found of its keys
        (None when the work sent did not look `chunk` up)."""
        if self.sending is not None:
            (sending, coming), self.sending = self.sending, None
            looked_up = sending.result()
            if coming is chunk:
                return looked_up
        if chunk is None:
            return None, (), (), {}, (), None
        return *self._wanted(chunk), None

    def _wanted(self, chunk):
        """The values of each key of `chunk` to look up, its plain and its new Contacts, the
        values of each key they carry, and the others: once per chunk in file order.

        Of each key, the values of the Contacts not plain; of a complete key, only those that
        `known` may hold (it takes them all).
        """
        keys = wanted(chunk)
        self.rows += len(chunk)
        self.recent.append(keys)
        held = {}  # key -> the values of `keys` the account may hold
        for key, values in keys.items():
            if key in self.complete:
                values = self.known.met(values)
            elif key in self.read_to:
                self.known.update(values)
            held[key] = values
        # No row is plain but where the database upserts, none new till the match key is read.
        sorts = self.creates and (self.met is not None or self.match_on in self.complete)
        plain, new, rest = self._plain(chunk, keys, held) if sorts else ((), (), chunk)
        written = {}
        if plain or new:  # the values of the others; plain and new rows share none with them
            others = wanted(rest)
            written = {key: values - others.get(key, set()) for key, values in keys.items()}
            held = {key: values & held[key] for key, values in others.items()}
        return ({key: values for key, values in held.items() if values}, plain, new, written,
                rest)

    def _plain(self, chunk, keys, held):
        """The Contacts of `chunk` the database can upsert by itself, those that are new
        contacts, and the others.

        Plain (when the database upserts): its match key value may be held, but by a
        contact no earlier row of the import met; none of its other key values can be held
        (every value of those keys is `known`) or is another row's of the chunk; it erases
        no field. Its contact, if any, is then updated by its row alone, and only another
        row holding a value it lets go can tell: `_moved` takes it back.

        New: none of its key values can be held (its keys are complete), even its match
        key's, or is another row's of the chunk: its contact is its row, inserted as it is
        without a Batch to keep (less of the importing process's CPU on a file of new
        contacts).
        """
        match_on = self.match_on
        upserts = self.met is not None
        met = self.met.met({contact.key for contact in chunk
                            if contact.key is not None}) if upserts else ()
        # Of the match key's values, those that may be held; when its values are not all
        # `known`, any.
        maybe = held.get(match_on, ()) if match_on in self.complete else None
        names = self.complete | {match_on}  # the keys a plain or new row may carry
        # The values no plain or new row may carry: another key's value that may be held (of any
        # key: stricter), or a value carried twice (whichever keys carry it).
        barred = set().union(*(held[name] for name in keys if name != match_on))
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

    def _touches(self, keys, found):
        """Whether the held writes change what a lookup of `keys` found (`found`)."""
        batch, upserted, _ = self.held
        if batch.touches(keys, found):
            return True
        if not upserted:
            return False
        if any(values & upserted.get(key, set()) for key, values in keys.items()):
            return True  # who holds a value
        matched = upserted[self.match_on]  # the contacts upserted
        return any(contact.keys.get(self.match_on) in matched for contact in found)

    def _stored(self, keys):
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

    def _learn(self, asked, found):
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
        created, upserted = self.upserted["created"], sum(self.upserted.values())
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

    def _read(self, key, limit, rate):
        """Read on `limit` values of `key` the account holds, into `known`, in the order of
        the key's index (account, key). (`rate`: the share of the values looked for that the
        last chunk missed; PostgreSQL's reading weighs it.)"""
        after, parameters = self.read_to[key], [self.account]
        page = _held(key, self.PARAMETER)
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


def _moved(plain, rest, found, match_on):
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


def _holds_keys(driver, account, parameter):
    """Whether a contact of `account` holds a key value: a probe of each key's index, on a
    connection of the driver (`parameter` is its placeholder)."""
    held = " OR ".join(f"EXISTS (SELECT 1 FROM contacts WHERE account = {parameter} "
                       f"AND {key} IS NOT NULL)" for key in KEYS)
    return driver.execute(f"SELECT {held}", [account] * len(KEYS)).fetchone()[0]


def _row(contact):
    keys = contact.keys
    return (keys.get("email"), keys.get("external_id"), keys.get("phone"), contact.text,
            contact.unsubscribed, contact.fingerprint)


class PostgresWrites(Writes):
    PARAMETER = "%s"
    UPSERTS = True
    PAGE = 10_000  # values of a key read in one round trip (`_read`)

    def __init__(self, *args):
        super().__init__(*args)
        # Every statement of an import reaches rows by key, on pages the import itself keeps
        # warm; at the default cost of a random read (4, a disk's), the planner updated each
        # chunk's thousands of changed contacts by scanning the whole table, once per chunk.
        # For this transaction only.
        self.driver.execute("SET LOCAL random_page_cost = 1.1")
        # The import's changes bear its transaction's time: COPY reads it as "now" (a
        # timestamptz input meaning the transaction's start), at a fraction of the cost of
        # parsing a written time twice a row.
        self.at = self.driver.execute("SELECT now()").fetchone()[0]
        # The columns every new contact of this import shares, as COPY reads them.
        self.shared = "\t".join((_copy_text(self.account), "now", "now",
                                 _copy_text(self.import_id)))
        self.staged = set()  # the staging tables made
        self.allowed = Counter()  # key -> the values `_learn` allowed reading so far
        # The planner's estimate of the account's values of each key, before the import
        # writes (its updates leave more pages, and the planner expects more rows in them).
        self.estimated = {} if self.complete else {key: self._estimate(key) for key in KEYS}

    def _lookup(self, keys):
        union = " UNION ALL ".join(
            _probes(key, f"id, {_COLUMNS}, fields::text, unsubscribed, fingerprint")
            for key in keys
        )
        # In index order: each probe finds its pages where the one before it left them.
        parameters = [p for values in keys.values()
                      for p in (_array_literal(sorted(values)), self.account)]
        return _loaded(self.driver.execute(union, parameters))

    def _read(self, key, limit, rate):
        """Read the account's values of `key` into `known` all at once, in the table's
        order, when the reads allowed so far reach the planner's estimate of their number,
        counting those the misses to come would allow if the file went on as long again,
        each chunk missing the share `rate` of its values as the last did (so a key that
        keeps missing is read early, not once its misses cost what the reading would).
        Should the file stop right there, the reading cost at most 2 x READS_PER_MISS values
        a row imported: about what importing the rows cost.

        In the key's order, a page at a time, every value the import has updated costs two
        fetches of a table page (its index holds two entries a contact till the next
        vacuum): for a big account, many times what reading them at once in the table's
        order costs. Streamed: a few thousand values in memory.
        """
        self.allowed[key] += limit
        if self.allowed[key] + self.READS_PER_MISS * rate * self.rows < self.estimated[key]:
            return
        # Planned on the account's rows (or the whole table's), not on one of its indexes.
        self.driver.execute("SET LOCAL enable_indexscan = off; "
                            "SET LOCAL enable_indexonlyscan = off")
        with self.driver.cursor(f"reading_{key}") as cursor:
            cursor.execute(_held(key), [self.account])
            self.driver.execute("SET LOCAL enable_indexscan TO DEFAULT; "
                                "SET LOCAL enable_indexonlyscan TO DEFAULT")
            while rows := cursor.fetchmany(self.PAGE):
                self.known.update(value for value, in rows)
        self.complete.add(key)
        del self.read_to[key]

    def _estimate(self, key):
        (plan,), = self.driver.execute(f"EXPLAIN (FORMAT JSON) {_held(key)}", [self.account])
        return plan[0]["Plan"]["Plan Rows"]

    def _prepare(self, batch, plain, new):
        return (
            batch.released(),
            "".join(f"{contact.id}\t{_copy_row(contact)}\n"
                    for contact in batch.changed.values()).encode(),
            "".join(f"{_copy_row(contact)}\t{self.shared}\n"
                    for contact in chain(batch.created.values(), new)).encode(),
            batch.fingerprinted,
            "".join(f"{_copy_row(contact)}\n" for contact in plain).encode(),
        )

    def _write(self, writes):
        released, changed, created, fingerprinted, plain = writes
        cursor = self.driver.cursor()
        for key, ids in released.items():
            cursor.execute(f"UPDATE contacts SET {key} = NULL WHERE id = ANY(%s)", [ids])
        if changed:
            self._stage(cursor, "contact_changes", changed, "id integer PRIMARY KEY, ")
            cursor.execute(
                "UPDATE contacts c SET email = s.email, external_id = s.external_id, "
                "phone = s.phone, fields = s.fields, unsubscribed = s.unsubscribed, "
                "fingerprint = s.fingerprint, updated_at = %s, import_id = %s "
                "FROM contact_changes s WHERE c.id = s.id",
                [self.at, self.import_id],
            )
        if created:
            with cursor.copy(
                f"COPY contacts ({_COLUMNS}, fields, unsubscribed, fingerprint, account, "
                "created_at, updated_at, import_id) FROM STDIN"
            ) as copy:
                copy.write(created)
        if fingerprinted:  # unchanged contacts: not a change, so neither updated_at nor import_id
            cursor.execute(
                "UPDATE contacts c SET fingerprint = f.fingerprint "
                "FROM unnest(%s::integer[], %s::bigint[]) AS f(id, fingerprint) WHERE c.id = f.id",
                [list(fingerprinted), list(fingerprinted.values())],
            )
        if plain:
            self._upsert(cursor, plain)

    def _upsert(self, cursor, plain):
        """Upsert the plain rows (`_plain`), as COPY lines: each inserted, or merged into the
        contact holding its match key value, and counted. A contact no earlier row of the
        import met was last changed before its transaction: it is changed now if its
        updated_at is now."""
        self._stage(cursor, "contact_upserts", plain)
        match_on = self.match_on
        # Fields hold scalars: the row's are unchanged when the contact's contain them.
        changed = " OR ".join(
            [f"(excluded.{key} IS NOT NULL AND excluded.{key} IS DISTINCT FROM c.{key})"
             for key in KEYS] + ["NOT c.fields @> excluded.fields"])
        created, updated, rows = cursor.execute(
            f"WITH upserted AS (INSERT INTO contacts AS c ({_COLUMNS}, fields, unsubscribed, "
            "fingerprint, account, created_at, updated_at, import_id) "
            f"SELECT {_COLUMNS}, fields, unsubscribed, fingerprint, %s, now(), now(), %s "
            f"FROM contact_upserts ON CONFLICT (account, {match_on}) WHERE {match_on} IS NOT NULL "
            "DO UPDATE SET "
            + "".join(f"{key} = coalesce(excluded.{key}, c.{key}), " for key in KEYS)
            + "fields = c.fields || excluded.fields, fingerprint = excluded.fingerprint, "
            f"updated_at = CASE WHEN {changed} THEN now() ELSE c.updated_at END, "
            f"import_id = CASE WHEN {changed} THEN excluded.import_id ELSE c.import_id END "
            "RETURNING xmax = 0 AS created, updated_at = now() AS changed) "
            "SELECT count(*) FILTER (WHERE created), count(*) FILTER (WHERE changed AND NOT "
            "created), count(*) FROM upserted",
            [self.account, self.import_id],
        ).fetchone()
        self.upserted["created"] += created
        self.upserted["updated"] += updated
        self.upserted["unchanged"] += rows - created - updated

    def _stage(self, cursor, table, lines, id_column=""):
        """Fill the staging `table` with the COPY `lines` of contacts (their `id_column` first)."""
        if table in self.staged:
            cursor.execute(f"TRUNCATE {table}")
        else:
            cursor.execute(
                f"CREATE TEMPORARY TABLE {table} ({id_column}email text, external_id text, "
                "phone text, fields jsonb, unsubscribed boolean, fingerprint bigint) "
                "ON COMMIT DROP")
            self.staged.add(table)
        with cursor.copy(f"COPY {table} FROM STDIN") as copy:
            copy.write(lines)


def _held(key, parameter="%s"):
    """The values of `key` the contacts of an account hold (`parameter`: the driver's
    placeholder of the account)."""
    return f"SELECT {key} FROM contacts WHERE account = {parameter} AND {key} IS NOT NULL"


def _probes(key, columns, condition=""):
    """PostgreSQL: the `columns` of the contacts holding each value of `key` (parameters: the
    values as one array literal, the account).

    Each value looked up on its (account, key) index, whatever the planner believes of the
    account's size (its statistics lag behind an import that fills an account; planned with
    `= ANY`, a first import of millions scanned the whole table at each chunk): a lateral
    probe per value, which OFFSET 0 keeps from being flattened into a join. One text
    parameter for the values: no dumper per value.
    """
    return (f"SELECT c.* FROM unnest(%s::text[]) AS wanted(value) CROSS JOIN LATERAL ("
            f"SELECT {columns} FROM contacts WHERE account = %s AND {key} = wanted.value"
            f"{condition} OFFSET 0) c")


# str.translate is slow (a lookup per character): values are searched, then escaped if need be.
def _array_literal(values):
    """`values` as one PostgreSQL array literal: each quoted, `\\` and `"` escaped."""
    return '{"' + '","'.join(
        value.replace("\\", "\\\\").replace('"', '\\"') if "\\" in value or '"' in value
        else value for value in values
    ) + '"}'


def _copy_text(value):
    """`value` as a field of COPY's text format: `\\`, tab, newline and return escaped."""
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                .replace("\r", "\\r"))
    return value


def _copy_row(contact):
    """The keys, fields and subscription of `contact`, as a line of COPY's text format."""
    keys = contact.keys
    return "\t".join((
        _copy_text(keys.get("email")), _copy_text(keys.get("external_id")),
        _copy_text(keys.get("phone")), _copy_text(contact.text),
        "t" if contact.unsubscribed else "f",
        "\\N" if contact.fingerprint is None else str(contact.fingerprint),
    ))


class SQLiteWrites(Writes):
    #: The page cache of an import's connection, in KiB: a big import inserts into each key
    #: index at random places, and once an index outgrows the cache every insert reads its
    #: pages back from the write-ahead log; twice the connections' 32 MiB keeps it off longer.
    CACHE_KIB = 65536

    def __init__(self, *args):
        super().__init__(*args)
        self.cache_kib = -self.driver.execute("PRAGMA cache_size").fetchone()[0]
        self.driver.execute(f"PRAGMA cache_size = -{self.CACHE_KIB}")

    def close(self):
        super().close()
        # Back to the connection's own size: its pages beyond it are freed.
        self.driver.execute(f"PRAGMA cache_size = -{self.cache_kib}")

    def _lookup(self, keys):
        union = " UNION ".join(
            f"SELECT id, {_COLUMNS}, fields, unsubscribed, fingerprint FROM contacts "
            f"WHERE account = ? AND {key} IN (SELECT value FROM json_each(?))"
            for key in keys
        )
        parameters = [p for values in keys.values()
                      for p in (self.account, orjson.dumps(list(values)))]
        return _loaded(self.driver.execute(union, parameters))

    def _prepare(self, batch, plain, new):  # SQLite upserts no plain rows
        return (
            batch.released(),
            [(*_row(c), self.at, self.import_id, c.id) for c in batch.changed.values()],
            [(self.account, *_row(c), self.at, self.at, self.import_id)
             for c in chain(batch.created.values(), new)],
            [(fingerprint, id_) for id_, fingerprint in batch.fingerprinted.items()],
        )

    def _write(self, writes):
        released, changed, created, fingerprinted = writes
        for key, ids in released.items():
            self.driver.execute(f"UPDATE contacts SET {key} = NULL "
                                "WHERE id IN (SELECT value FROM json_each(?))",
                                [orjson.dumps(ids)])
        if changed:
            self.driver.executemany(
                "UPDATE contacts SET email = ?, external_id = ?, phone = ?, fields = ?, "
                "unsubscribed = ?, fingerprint = ?, updated_at = ?, import_id = ? WHERE id = ?",
                changed)
        if created:
            self.driver.executemany(
                f"INSERT INTO contacts (account, {_COLUMNS}, fields, unsubscribed, fingerprint, "
                "created_at, updated_at, import_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                created)
        if fingerprinted:
            self.driver.executemany("UPDATE contacts SET fingerprint = ? WHERE id = ?",
                                    fingerprinted)


def writes(connection, account, import_id, at, match_on, mode):
    """The bulk reads and writes of one import, for the database of `connection`.

    `at` is the time of the changes, as the driver takes it.
    """
    kind = PostgresWrites if connection.dialect.name == "postgresql" else SQLiteWrites
    return kind(connection, account, import_id, at, match_on, mode)


@contextmanager
def fingerprints(url, account, key):
    """Yield a function: values of the match `key` -> {value: the fingerprint of the contact
    of `account` holding it}, as committed (a connection of its own, for the reading of a
    file while its import's transaction is open); or None when no contact of `account`
    holds a key value (a first import): none can be found. `url` is a
    DROPIMPORT_DATABASE_URL.
    """
    if make_url(url).get_backend_name() == "sqlite":
        connection = sqlite3.connect(make_url(url).database, timeout=60, isolation_level=None,
                                     check_same_thread=False)  # one thread at a time
        parameter, values_of = "?", lambda values: orjson.dumps(list(values))
        sql = (f"SELECT {key}, fingerprint FROM contacts WHERE {key} IN "
               "(SELECT value FROM json_each(?)) AND account = ? AND fingerprint IS NOT NULL")
    else:
        connection = psycopg.connect(url, autocommit=True, prepare_threshold=None)
        parameter, values_of = "%s", lambda values: _array_literal(sorted(values))
        sql = _probes(key, f"{key}, fingerprint", " AND fingerprint IS NOT NULL")
    try:
        if not _holds_keys(connection, account, parameter):
            yield None
            return
        yield lambda values: dict(
            connection.execute(sql, [values_of(values), account]).fetchall())
    finally:
        connection.close()
