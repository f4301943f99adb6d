"""PostgreSQL's reads and writes of an import: lookups by lateral probes, COPY, staged
UPDATEs and the database's own upserts."""

from collections import Counter
from collections.abc import Iterable
from itertools import chain
from typing import Any

import psycopg

from ..contact import KEYS, Contact, Stored
from .changes import Changes
from .writes import BEFORE, COLUMNS, JOURNALED, Prepared, Writes, loaded, values_sql


class PostgresWrites(Writes):
    driver: psycopg.Connection[Any]

    PARAMETER = "%s"
    UPSERTS = True
    PAGE = 10_000  # values of a key read in one round trip (`_read`)

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        # Every statement of an import reaches rows by key, on pages the import itself keeps
        # warm; at the default cost of a random read (4, a disk's), the planner updated each
        # chunk's thousands of changed contacts by scanning the whole table, once per chunk.
        # For this transaction only.
        self.driver.execute("SET LOCAL random_page_cost = 1.1")
        # The import's changes bear its transaction's time: COPY reads it as "now" (a
        # timestamptz input meaning the transaction's start), at a fraction of the cost of
        # parsing a written time twice a row.
        now = self.driver.execute("SELECT now()").fetchone()
        assert now is not None  # a SELECT of no table: one row
        self.at = now[0]
        # The columns every new contact of this import shares, as COPY reads them.
        self.shared = "\t".join((_copy_text(self.account), "now", "now",
                                 _copy_text(self.import_id)))
        self.staged: set[str] = set()  # the staging tables made
        self.allowed: Counter[str] = Counter()  # key -> the values `_learn` allowed reading so far
        # The planner's estimate of the account's values of each key, before the import
        # writes (its updates leave more pages, and the planner expects more rows in them).
        self.estimated = {} if self.complete else {key: self._estimate(key) for key in KEYS}

    def _lookup(self, keys: dict[str, set[Any]]) -> list[Stored]:
        union = " UNION ALL ".join(
            probes(key, f"id, {COLUMNS}, fields::text, unsubscribed, fingerprint")
            for key in keys
        )
        # In index order: each probe finds its pages where the one before it left them.
        parameters = [p for values in keys.values()
                      for p in (array_literal(sorted(values)), self.account)]
        return loaded(self.driver.execute(union, parameters))

    def _read(self, key: str, limit: int, rate: float) -> None:
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
            cursor.execute(values_sql(key), [self.account])
            self.driver.execute("SET LOCAL enable_indexscan TO DEFAULT; "
                                "SET LOCAL enable_indexonlyscan TO DEFAULT")
            while rows := cursor.fetchmany(self.PAGE):
                self.known.update(value for value, in rows)
        self.complete.add(key)
        del self.read_to[key]

    def _estimate(self, key: str) -> int:
        (plan,), = self.driver.execute(f"EXPLAIN (FORMAT JSON) {values_sql(key)}", [self.account])
        return plan[0]["Plan"]["Plan Rows"]

    def _prepare(self, changes: Changes, plain: list[Contact], new: list[Contact]) -> Prepared:
        return Prepared(
            changes.released(),
            "".join(f"{contact.id}\t{_copy_row(contact)}\n"
                    for contact in changes.changed.values()).encode(),
            # Stored contacts, then Contacts: mypy types the chain of both as one of objects.
            "".join(f"{_copy_row(contact)}\t{self.shared}\n"  # type: ignore[arg-type]
                    for contact in chain(changes.created.values(), new)).encode(),
            changes.fingerprinted,
            "".join(f"{_copy_row(contact)}\n" for contact in plain).encode(),
        )

    def _write(self, prepared: Prepared) -> None:
        released, changed, created = prepared.released, prepared.changed, prepared.created
        fingerprinted, plain = prepared.fingerprinted, prepared.plain
        cursor = self.driver.cursor()
        if prepared.seen:
            self._see(prepared.seen)
        if changed:  # each contact as it was before the import, once (not one it created)
            self._stage(cursor, "contact_changes", changed, "id integer PRIMARY KEY, ")
            cursor.execute(
                f"INSERT INTO journal ({JOURNALED}) SELECT %s, {BEFORE} FROM contacts c "
                "WHERE c.id IN (SELECT id FROM contact_changes) AND c.id <= %s "
                "ON CONFLICT DO NOTHING", [self.import_id, self.first_id])
        for key, ids in released.items():
            cursor.execute(f"UPDATE contacts SET {key} = NULL WHERE id = ANY(%s)", [ids])
        if changed:
            cursor.execute(
                "UPDATE contacts c SET email = s.email, external_id = s.external_id, "
                "phone = s.phone, fields = s.fields, unsubscribed = s.unsubscribed, "
                "fingerprint = s.fingerprint, updated_at = %s, import_id = %s "
                "FROM contact_changes s WHERE c.id = s.id",
                [self.at, self.import_id],
            )
        if created:
            with cursor.copy(
                f"COPY contacts ({COLUMNS}, fields, unsubscribed, fingerprint, account, "
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

    def _upsert(self, cursor: psycopg.Cursor[Any], plain: bytes) -> None:
        """Upsert the plain rows (`_plain`), as COPY lines: each inserted, or merged into the
        contact holding its match key value, and counted. A contact no earlier row of the
        import met was last changed before its transaction: it is changed now if its
        updated_at is now."""
        self._stage(cursor, "contact_upserts", plain)
        match_on = self.match_on
        # The contacts the upsert is about to change, as they are before it (the plain rows'
        # contacts were not changed by the import yet).
        cursor.execute(
            f"INSERT INTO journal ({JOURNALED}) SELECT %s, {BEFORE} FROM contact_upserts s "
            f"JOIN contacts c ON c.account = %s AND c.{match_on} = s.{match_on} "
            f"WHERE c.id <= %s AND ({_changes('s')}) ON CONFLICT DO NOTHING",
            [self.import_id, self.account, self.first_id])
        changed = _changes("excluded")
        counted = cursor.execute(
            f"WITH upserted AS (INSERT INTO contacts AS c ({COLUMNS}, fields, unsubscribed, "
            "fingerprint, account, created_at, updated_at, import_id) "
            f"SELECT {COLUMNS}, fields, unsubscribed, fingerprint, %s, now(), now(), %s "
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
        assert counted is not None  # an aggregate: one row
        created, updated, rows = counted
        self.upserted.created += created
        self.upserted.updated += updated
        self.upserted.unchanged += rows - created - updated

    def _seen_table(self) -> None:
        self.driver.execute("CREATE TEMPORARY TABLE mirror_seen (value text) ON COMMIT DROP")

    def _see(self, keys: list[Any]) -> None:
        with self.driver.cursor().copy("COPY mirror_seen FROM STDIN") as copy:
            copy.write("".join(f"{_copy_text(str(key))}\n" for key in keys))

    def _before_absent(self) -> None:
        # Its statistics: without them, the planner could compare each contact with every
        # value (a nested loop) instead of hashing them.
        self.driver.execute("ANALYZE mirror_seen")

    def _stage(self, cursor: psycopg.Cursor[Any], table: str, lines: bytes, id_column: str = ""
               ) -> None:
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


def _changes(row: str) -> str:
    """PostgreSQL: whether the plain `row` changes its contact `c` when upserted into it."""
    # Fields hold scalars: the row's are unchanged when the contact's contain them.
    return " OR ".join(
        [f"({row}.{key} IS NOT NULL AND {row}.{key} IS DISTINCT FROM c.{key})" for key in KEYS]
        + [f"NOT c.fields @> {row}.fields"])


def probes(key: str, columns: str, condition: str = "") -> str:
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
def array_literal(values: Iterable[str]) -> str:
    """`values` as one PostgreSQL array literal: each quoted, `\\` and `"` escaped."""
    return '{"' + '","'.join(
        value.replace("\\", "\\\\").replace('"', '\\"') if "\\" in value or '"' in value
        else value for value in values
    ) + '"}'


def _copy_text(value: str | None) -> str:
    """`value` as a field of COPY's text format: `\\`, tab, newline and return escaped."""
    if value is None:
        return "\\N"
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return (value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
                .replace("\r", "\\r"))
    return value


def _copy_row(contact: Stored | Contact) -> str:
    """The keys, fields and subscription of `contact`, as a line of COPY's text format."""
    keys = contact.keys
    return "\t".join((
        _copy_text(keys.get("email")), _copy_text(keys.get("external_id")),
        _copy_text(keys.get("phone")), _copy_text(contact.text),
        "t" if contact.unsubscribed else "f",
        "\\N" if contact.fingerprint is None else str(contact.fingerprint),
    ))
