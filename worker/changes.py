"""What a batch of rows changes in the contacts base, pure: modes, matching, merging.

The store loads the contacts a batch can touch, a Batch decides row by row what happens to
each (created, updated, unchanged, skipped or rejected), and the store writes the result.
"""

import orjson

from .template import KEYS, Rejection, document

LABELS = {"email": "e-mail", "external_id": "external id", "phone": "phone number"}


class Stored:
    """A contact as the store holds it: its keys, its other fields, its subscription.

    Its fields come as a dict, or as their `document` (`text`), read only when they are
    needed: most rows of a nightly file find their contact unchanged by comparing texts.
    """

    __slots__ = ("_fields", "_text", "fingerprint", "id", "keys", "unsubscribed")

    def __init__(self, id=0, keys=None, fields=None, unsubscribed=False, text=None,
                 fingerprint=None):
        self.id = id  # negative for a contact this import creates, until it is inserted
        self.keys = {} if keys is None else keys
        self._fields = {} if fields is None and text is None else fields
        self._text = text
        self.unsubscribed = unsubscribed
        self.fingerprint = fingerprint  # of the row that last wrote it (template.Plan)

    def values(self):
        """The fields, not to be changed."""
        if self._fields is None:
            self._fields = orjson.loads(self._text)
        return self._fields

    @property
    def fields(self):
        """The fields, to change: the text is written anew from them."""
        values = self.values()
        self._text = None
        return values

    @property
    def text(self):
        if self._text is None:
            self._text = document(self._fields)
        return self._text

    def copy(self):
        fields = None if self._fields is None else dict(self._fields)
        return Stored(self.id, dict(self.keys), fields, self.unsubscribed, self._text,
                      self.fingerprint)

    def __eq__(self, other):  # the contact, not the row that wrote it: no fingerprint
        return (type(other) is Stored and self.id == other.id and self.keys == other.keys
                and self.unsubscribed == other.unsubscribed
                and ((self._text is not None and self._text == other._text)
                     or self.values() == other.values()))

    __hash__ = None  # type: ignore[assignment]  # equal by value, and mutable

    def __repr__(self):
        return (f"Stored({self.id}, {self.keys}, {self.values()}, "
                f"unsubscribed={self.unsubscribed})")


def merged(before, values):
    """`before` with `values` applied: a None value erases the field."""
    after = before.copy()
    for name, value in values.items():
        target = after.keys if name in KEYS else after.fields
        if value is None:
            target.pop(name, None)
        else:
            target[name] = value
    return after


class Batch:
    """Applies rows to the contacts loaded for them, in file order."""

    def __init__(self, stored, match_on="email", mode="upsert"):
        self.match_on = match_on
        self.mode = mode
        self.owners = {key: {} for key in KEYS}  # key -> value -> Stored
        self.loaded = {}  # id -> the keys the stored contact had
        for contact in stored:
            self._own(contact)
            self.loaded[contact.id] = dict(contact.keys)
        self.created = {}  # negative id -> Stored, contacts to insert
        self.changed = {}  # id -> Stored, stored contacts to update
        self.fingerprinted = {}  # id -> the fingerprint of an unchanged contact's new row

    def _own(self, contact, before=None):
        if before is not None:
            for key, value in before.keys.items():
                self.owners[key].pop(value, None)
        for key, value in contact.keys.items():
            self.owners[key][value] = contact

    def quick(self, contact):
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

    def apply(self, contact, outcome):
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

    def _written(self, after, target):
        """Write `after` in place of `target` (None for a new contact); return its count."""
        self._own(after, before=target)
        # A contact created earlier in this batch is inserted once, in its latest state.
        (self.created if after.id < 0 else self.changed)[after.id] = after
        self.fingerprinted.pop(after.id, None)
        return "created" if target is None else "updated"

    def _unchanged(self, target, contact):
        """Count `contact` unchanged; `target` now keeps its fingerprint, so that the same row
        next time is not even converted."""
        if target.fingerprint != contact.fingerprint:
            target.fingerprint = contact.fingerprint
            if target.id > 0 and target.id not in self.changed:
                self.fingerprinted[target.id] = contact.fingerprint
        return "unchanged"

    def touches(self, keys, found):
        """Whether writing this batch would change what a lookup of `keys` ({key: values})
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

    def released(self):
        """key -> the ids of changed contacts whose old value another contact now holds.

        Unique keys are checked row by row within a statement: such a value is first taken
        from its old holder. A value let go that nobody takes needs no such extra write.
        """
        moved = {}
        for contact in self.changed.values():
            for key, value in self.loaded[contact.id].items():
                holder = self.owners[key].get(value)
                if holder is not None and holder is not contact:
                    moved.setdefault(key, []).append(contact.id)
        return moved

    def _conflict(self, target, after):
        """Why `after` cannot be stored: another contact already has one of its keys."""
        for key, value in after.keys.items():
            owner = self.owners[key].get(value)
            if owner is not None and owner is not target:
                return f"{LABELS[key]} {value!r} already belongs to another contact"
        return None
