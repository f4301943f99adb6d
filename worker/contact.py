"""The contact model, pure: the standard keys, a row's contact, a stored contact, the text
of their fields as PostgreSQL's jsonb writes it, and the key filter."""

from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from json.encoder import encode_basestring
from typing import Any, TypeVar, final

import orjson

from schemas import KEY_TYPES

#: The standard contact fields a template can match on; every other field is an attribute.
KEYS = tuple(KEY_TYPES)


UNIT = "\x1f"  # the unit separator: a row's cells joined


@final  # no subclass: `type(x) is Rejection` tells one apart (rows.fates), for mypy too
@dataclass(frozen=True, slots=True)
class Rejection:
    """A row left out of the import, with where and why."""

    line: int
    reason: str
    column: str | None = None
    value: str | None = None
    cells: tuple = ()

    def as_dict(self) -> dict[str, Any]:
        return {"line": self.line, "column": self.column, "value": self.value,
                "reason": self.reason}


class Contact:
    """One valid row: its match key, its standard keys, its other fields as a `document`.

    `cleared` names the fields its empty cells erase (empty_cells: clear).
    """

    __slots__ = ("_cells", "cleared", "fingerprint", "key", "keys", "line", "text")
    #: Written as such by a row the database upserts (bulk.Writes._plain): a contact is
    #: unsubscribed only by the unsubscribe mode, which changes.Batch applies.
    unsubscribed = False

    def __init__(self, line: int, cells: str | list[str], key: str | int, keys: dict[str, Any],
                 text: str, cleared: tuple[str, ...] = (), fingerprint: int | None = None
                 ) -> None:
        self.line, self._cells, self.key, self.keys = line, cells, key, keys
        self.text, self.cleared, self.fingerprint = text, cleared, fingerprint

    @property
    def cells(self) -> list[str]:
        """The row's cells, kept joined (by UNIT) and split when asked for (a rejection)."""
        cells = self._cells
        return cells.split(UNIT) if isinstance(cells, str) else cells

    @property
    def fields(self) -> dict[str, Any]:
        """Every field of the row, keys included; None for a field to erase."""
        return {**self.keys, **orjson.loads(self.text), **dict.fromkeys(self.cleared)}


def _jsonb_order(name: str) -> tuple[int, bytes]:
    encoded = name.encode()
    return len(encoded), encoded


def keyed(names: Iterable[str]) -> tuple[tuple[str, str], ...]:
    """`names` in jsonb's order of keys, each with its JSON key and colon."""
    return tuple((name, encode_basestring(name) + ": ") for name in sorted(names, key=_jsonb_order))


@lru_cache(maxsize=64)  # the contacts of a file share their field names
def documenter(names: tuple[str, ...]) -> Callable[[dict[str, Any]], str]:
    """The `document` function of dicts whose fields are among the tuple `names`."""
    prefixes = keyed(names)

    # a plain loop, faster than a comprehension: once per contact
    def document(values: dict[str, Any]) -> str:
        parts: list[str] = []
        for name, prefix in prefixes:
            value = values.get(name)
            if value is not None:
                parts.append(prefix + json_value(value))
        return "{" + ", ".join(parts) + "}"

    return document


def json_value(value: object) -> str:
    """A field's value as jsonb writes it (booleans spelled out: faster)."""
    return (encode_basestring(value) if type(value) is str else "true" if value is True
            else "false" if value is False else orjson.dumps(value).decode())


def document(values: dict[str, Any]) -> str:
    """`values` as JSON text in PostgreSQL's own jsonb output (keys shorter first, then by
    bytes; ", " and ": "; None values left out), so that a stored contact's `fields::text`
    and a row's document are equal strings when their fields are (SQLite stores the
    document itself)."""
    return documenter(tuple(values))(values)


class Stored:
    """A contact as the store holds it: its keys, its other fields, its subscription.

    Its fields come as a dict, or as their `document` (`text`), read only when they are
    needed: most rows of a nightly file find their contact unchanged by comparing texts.
    """

    __slots__ = ("_fields", "_text", "fingerprint", "id", "keys", "unsubscribed")

    def __init__(self, id: int = 0, keys: dict[str, Any] | None = None,
                 fields: dict[str, Any] | None = None, unsubscribed: bool = False,
                 text: str | None = None, fingerprint: int | None = None) -> None:
        self.id = id  # negative for a contact this import creates, until it is inserted
        self.keys = {} if keys is None else keys
        self._fields = {} if fields is None and text is None else fields
        self._text = text
        self.unsubscribed = unsubscribed
        self.fingerprint = fingerprint  # of the row that last wrote it (template.Plan)

    def values(self) -> dict[str, Any]:
        """The fields, not to be changed."""
        if self._fields is None:
            # Either is set: `_text` whenever `_fields` is None (__init__).
            self._fields = orjson.loads(self._text)  # type: ignore[arg-type]
        return self._fields

    @property
    def fields(self) -> dict[str, Any]:
        """The fields, to change: the text is written anew from them."""
        values = self.values()
        self._text = None
        return values

    @property
    def text(self) -> str:
        if self._text is None:
            # Either is set: `_fields` whenever `_text` is None (__init__, `fields`).
            self._text = document(self._fields)  # type: ignore[arg-type]
        return self._text

    def copy(self) -> "Stored":
        fields = None if self._fields is None else dict(self._fields)
        return Stored(self.id, dict(self.keys), fields, self.unsubscribed, self._text,
                      self.fingerprint)

    # the contact, not the row that wrote it: no fingerprint
    def __eq__(self, other: object) -> bool:
        return (type(other) is Stored and self.id == other.id and self.keys == other.keys
                and self.unsubscribed == other.unsubscribed
                and ((self._text is not None and self._text == other._text)
                     or self.values() == other.values()))

    __hash__ = None  # type: ignore[assignment]  # equal by value, and mutable

    def __repr__(self) -> str:
        return (f"Stored({self.id}, {self.keys}, {self.values()}, "
                f"unsubscribed={self.unsubscribed})")


_Value = TypeVar("_Value", bound=Hashable)  # a key value


class KeyFilter:
    """A set of key values as a Bloom filter of one hash (8 MiB): it may take a value never
    added for one that was (1.5% of them after a million values, 7% after five million),
    never the reverse."""

    BITS = 1 << 26

    def __init__(self) -> None:
        self.bits = bytearray(self.BITS >> 3)

    def meets(self, value: Hashable) -> bool:
        """Whether `value` may have been added; it is added now (one call a row)."""
        spot = hash(value) & (self.BITS - 1)
        bits, byte, bit = self.bits, spot >> 3, 1 << (spot & 7)
        if bits[byte] & bit:
            return True
        bits[byte] |= bit
        return False

    def update(self, values: Iterable[Hashable]) -> None:
        """Add each of `values`."""
        self.met(values)

    def met(self, values: Iterable[_Value]) -> set[_Value]:
        """Those of `values` that may have been added; all of them are added now (one pass)."""
        bits, mask = self.bits, self.BITS - 1
        found: set[_Value] = set()
        for value in values:
            spot = hash(value) & mask
            byte, bit = spot >> 3, 1 << (spot & 7)
            if bits[byte] & bit:
                found.add(value)
            else:
                bits[byte] |= bit
        return found
