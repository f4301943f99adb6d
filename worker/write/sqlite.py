"""SQLite's reads and writes of an import: lookups through json_each, executemany."""

import sqlite3
from itertools import chain
from typing import Any

import orjson

from ..contact import Contact, Stored
from .changes import Changes
from .writes import BEFORE, COLUMNS, JOURNALED, Prepared, Writes, loaded


class SQLiteWrites(Writes):
    driver: sqlite3.Connection

    #: The page cache of an import's connection, in KiB: a big import inserts into each key
    #: index at random places, and once an index outgrows the cache every insert reads its
    #: pages back from the write-ahead log; twice the connections' 32 MiB keeps it off longer.
    CACHE_KIB = 65536

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.cache_kib = -self.driver.execute("PRAGMA cache_size").fetchone()[0]
        self.driver.execute(f"PRAGMA cache_size = -{self.CACHE_KIB}")

    def close(self) -> None:
        super().close()
        # Back to the connection's own size: its pages beyond it are freed.
        self.driver.execute(f"PRAGMA cache_size = -{self.cache_kib}")

    def _lookup(self, keys: dict[str, set[Any]]) -> list[Stored]:
        union = " UNION ".join(
            f"SELECT id, {COLUMNS}, fields, unsubscribed, fingerprint FROM contacts "
            f"WHERE account = ? AND {key} IN (SELECT value FROM json_each(?))"
            for key in keys
        )
        parameters = [p for values in keys.values()
                      for p in (self.account, orjson.dumps(list(values)))]
        return loaded(self.driver.execute(union, parameters))

    def _prepare(self, changes: Changes, plain: list[Contact], new: list[Contact]
                 ) -> Prepared:  # SQLite upserts no plain rows
        return Prepared(
            changes.released(),
            [(*_row(c), self.at, self.import_id, c.id) for c in changes.changed.values()],
            # Stored contacts, then Contacts: mypy types the chain of both as one of objects.
            [(self.account, *_row(c), self.at, self.at, self.import_id)  # type: ignore[arg-type]
             for c in chain(changes.created.values(), new)],
            [(fingerprint, id_) for id_, fingerprint in changes.fingerprinted.items()],
        )

    def _write(self, prepared: Prepared) -> None:
        released, changed, created = prepared.released, prepared.changed, prepared.created
        fingerprinted = prepared.fingerprinted
        if prepared.seen:
            self._see(prepared.seen)
        if changed:  # each contact as it was before the import, once (not one it created)
            self.driver.execute(
                f"INSERT OR IGNORE INTO journal ({JOURNALED}) SELECT ?, {BEFORE} FROM contacts c "
                "WHERE c.id IN (SELECT value FROM json_each(?)) AND c.id <= ?",
                [self.import_id, orjson.dumps([row[-1] for row in changed]), self.first_id])
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
                f"INSERT INTO contacts (account, {COLUMNS}, fields, unsubscribed, fingerprint, "
                "created_at, updated_at, import_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                created)
        if fingerprinted:
            self.driver.executemany("UPDATE contacts SET fingerprint = ? WHERE id = ?",
                                    fingerprinted)


    def _seen_table(self) -> None:
        self.driver.execute("CREATE TEMPORARY TABLE IF NOT EXISTS mirror_seen "
                            "(value TEXT PRIMARY KEY) WITHOUT ROWID")
        self.driver.execute("DELETE FROM temp.mirror_seen")

    def _see(self, keys: list[Any]) -> None:
        self.driver.executemany("INSERT OR IGNORE INTO mirror_seen VALUES (?)",
                                [(key,) for key in keys])


def _row(contact: Stored | Contact) -> tuple[Any, Any, Any, str, bool, int | None]:
    keys = contact.keys
    return (keys.get("email"), keys.get("external_id"), keys.get("phone"), contact.text,
            contact.unsubscribed, contact.fingerprint)
