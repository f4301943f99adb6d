"""What a chunk of rows changes in the contacts base, pure: modes, matching, merging.

The writes load the contacts a chunk can touch, its Changes decide row by row what happens to
each (created, updated, unchanged, skipped or rejected), and the writes write the result.
"""

from collections.abc import Iterable
from typing import Any, Protocol

import orjson

from ..contact import KEYS, Contact, Rejection, Stored

LABELS = {"email": "e-mail", "external_id": "external id", "phone": "phone number"}


class Rejects(Protocol):
    """What `Changes.apply` tells of a row it rejects (importer.Conflicts)."""

    def reject(self, rejection: Rejection, /) -> None: ...


def merged(before: Stored, values: dict[str, Any]) -> Stored:
    """`before` with `values` applied: a None value erases the field."""
    after = before.copy()
    for name, value in values.items():
        target = after.keys if name in KEYS else after.fields
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value
    return after


class Changes:
    """Applies rows to the contacts loaded for them, in file order."""

    def __init__(self, stored: Iterable[Stored], match_on: str = "email", mode: str = "upsert"
                 ) -> None:
        self.match_on = match_on
        self.mode = mode
        #: key -> value -> Stored
        self.owners: dict[str, dict[Any, Stored]] = {key: {} for key in KEYS}
        self.loaded: dict[int, dict[str, Any]] = {}  # id -> the keys the stored contact had
        for contact in stored:
            self._own(contact)
            self.loaded[contact.id] = dict(contact.keys)
        self.created: dict[int, Stored] = {}  # negative id -> Stored, contacts to insert
        self.changed: dict[int, Stored] = {}  # id -> Stored, stored contacts to update
        #: id -> the fingerprint of an unchanged contact's new row
        self.fingerprinted: dict[int, int | None] = {}

    def _own(self, contact: Stored, before: Stored | None = None) -> None:
        if before is not None:
            for key, value in before.keys.items():
                self.owners[key].pop(value, None)
        for key, value in contact.keys.items():
            self.owners[key][value] = contact

    def quick(self, contact: Contact) -> str | None:
        """Apply `contact` when it is plainly new, plainly unchanged or plainly replaces its
        contact, and return its count; else None, having changed nothing: `apply` decides
        (the same, by the general way)."""
        if self.mode not in ("upsert", "create_only"):
            return None
        target = self.owners[self.match_on].get(contact.key)
        if target is None:
            owners = self.owners
            for key, value in contact.keys.items():
                if value in owners[key]:
                    return None  # another contact has it: a conflict, or a merge
            return self._written(Stored(-1 - len(self.created), contact.keys, None, False,
                                        contact.text, contact.fingerprint), None)
        if self.mode == "create_only":
            return self._unchanged(target, contact)
        keys, cleared = contact.keys, contact.cleared
        if target.keys == keys:
            if target.text == contact.text:
                return self._unchanged(target, contact)
        elif target.keys.keys() <= {*keys, *cleared}:
            for key, value in keys.items():
                owner = self.owners[key].get(value)
                if owner is not None and owner is not target:
                    return None  # a conflict: the general way says so
        else:
            return None
        # Every key and field the contact has, the row sets or erases: the row's are the
        # merged ones, and its document theirs.
        values, stored = orjson.loads(contact.text), target.values()
        if not stored.keys() <= {*values, *cleared}:
            return None
        if values == stored and target.keys == keys:  # a document written otherwise
            return self._unchanged(target, contact)
        return self._written(Stored(target.id, keys, None, target.unsubscribed, contact.text,
                                    contact.fingerprint), target)

    def apply(self, contact: Contact, outcome: Rejects) -> str | None:
        """Apply one Contact; return its count name, or None when `outcome` got a rejection."""
        target = self.owners[self.match_on].get(contact.key)
        if self.mode == "unsubscribe":
            after = (target or Stored(keys={self.match_on: contact.key})).copy()
            after.unsubscribed = True
        elif target is not None and self.mode == "create_only":
            return self._unchanged(target, contact)
        elif target is None and self.mode == "update_only":
            return "skipped"
        else:
            after = merged(target or Stored(), contact.fields)
        conflict = self._conflict(target, after)
        if conflict:
            outcome.reject(Rejection(contact.line, conflict, cells=tuple(contact.cells)))
            return None
        if target is not None and after == target:
            return self._unchanged(target, contact)
        if target is None:
            after.id = -1 - len(self.created)
        after.fingerprint = contact.fingerprint
        return self._written(after, target)

    def _written(self, after: Stored, target: Stored | None) -> str:
        """Write `after` in place of `target` (None for a new contact); return its count."""
        self._own(after, before=target)
        # A contact created earlier in this chunk is inserted once, in its latest state.
        (self.created if after.id < 0 else self.changed)[after.id] = after
        self.fingerprinted.pop(after.id, None)
        return "created" if target is None else "updated"

    def _unchanged(self, target: Stored, contact: Contact) -> str:
        """Count `contact` unchanged; `target` now keeps its fingerprint, so that the same row
        next time is not even converted."""
        if target.fingerprint != contact.fingerprint:
            target.fingerprint = contact.fingerprint
            if target.id > 0 and target.id not in self.changed:
                self.fingerprinted[target.id] = contact.fingerprint
        return "unchanged"

    def touches(self, keys: dict[str, set[Any]], found: Iterable[Stored]) -> bool:
        """Whether writing these changes would change what a lookup of `keys` ({key: values})
        found before (`found`): one of the contacts, or who holds one of the values."""
        changed = self.changed
        # A value a changed contact lets go was found with that contact.
        if any(contact.id in changed for contact in found):
            return True
        for key, values in keys.items():
            owners = self.owners[key]
            for value in values & owners.keys():  # most values are not the batch's
                owner = owners[value]
                if owner.id < 0 or owner.id in changed:
                    return True
        return False

    def released(self) -> dict[str, list[int]]:
        """key -> the ids of changed contacts whose old value another contact now holds.

        Unique keys are checked row by row within a statement: such a value is first taken
        from its old holder. A value let go that nobody takes needs no such extra write.
        """
        moved: dict[str, list[int]] = {}
        for contact in self.changed.values():
            for key, value in self.loaded[contact.id].items():
                holder = self.owners[key].get(value)
                if holder is not None and holder is not contact:
                    moved.setdefault(key, []).append(contact.id)
        return moved

    def _conflict(self, target: Stored | None, after: Stored) -> str | None:
        """Why `after` cannot be stored: another contact already has one of its keys."""
        for key, value in after.keys.items():
            owner = self.owners[key].get(value)
            if owner is not None and owner is not target:
                return f"{LABELS[key]} {value!r} already belongs to another contact"
        return None
