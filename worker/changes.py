"""What a batch of rows changes in the contacts base, pure: modes, matching, merging.

The store loads the contacts a batch can touch, a Batch decides row by row what happens to
each (created, updated, unchanged, skipped or rejected), and the store writes the result.
"""

from dataclasses import dataclass, field

from .template import KEYS, Rejection

LABELS = {"email": "e-mail", "external_id": "external id", "phone": "phone number"}


@dataclass(slots=True)
class Stored:
    """A contact as the store holds it: its keys, its other fields, its subscription."""

    id: int = 0  # negative for a contact this import creates, until it is inserted
    keys: dict = field(default_factory=dict)
    fields: dict = field(default_factory=dict)
    unsubscribed: bool = False

    def copy(self):
        return Stored(self.id, dict(self.keys), dict(self.fields), self.unsubscribed)


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

    def _own(self, contact, before=None):
        if before is not None:
            for key, value in before.keys.items():
                self.owners[key].pop(value, None)
        for key, value in contact.keys.items():
            self.owners[key][value] = contact

    def apply(self, contact, outcome):
        """Apply one Contact; return its count name, or None when `outcome` got a rejection."""
        target = self.owners[self.match_on].get(contact.key)
        if self.mode == "unsubscribe":
            after = (target or Stored(keys={self.match_on: contact.key})).copy()
            after.unsubscribed = True
        elif target is not None and self.mode == "create_only":
            return "unchanged"
        elif target is None and self.mode == "update_only":
            return "skipped"
        else:
            after = merged(target or Stored(), contact.fields)
        conflict = self._conflict(target, after)
        if conflict:
            outcome.reject(Rejection(contact.line, conflict, cells=tuple(contact.cells)))
            return None
        if target is not None and after == target:
            return "unchanged"
        if target is None:
            after.id = -1 - len(self.created)
        self._own(after, before=target)
        # A contact created earlier in this batch is inserted once, in its latest state.
        (self.created if after.id < 0 else self.changed)[after.id] = after
        return "created" if target is None else "updated"

    def released(self):
        """key -> the ids of changed contacts that no longer hold the value they had."""
        moved = {}
        for contact in self.changed.values():
            for key, value in self.loaded[contact.id].items():
                if contact.keys.get(key) != value:
                    moved.setdefault(key, []).append(contact.id)
        return moved

    def _conflict(self, target, after):
        """Why `after` cannot be stored: another contact already has one of its keys."""
        for key, value in after.keys.items():
            owner = self.owners[key].get(value)
            if owner is not None and owner is not target:
                return f"{LABELS[key]} {value!r} already belongs to another contact"
        return None
