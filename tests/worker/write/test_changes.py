"""Modes and matching, decided row by row without a database."""

import pytest

from worker.contact import KEYS, Contact, Stored, document
from worker.write.changes import Changes


class Outcome:
    def __init__(self):
        self.rejections = []

    def reject(self, rejection):
        self.rejections.append(rejection)


def stored():
    return [Stored(1, {"email": "jo@x.com", "external_id": "C1"}, {"city": "Lyon"}),
            Stored(2, {"email": "am@y.fr"}, {"city": "Nice"}, unsubscribed=True)]


def row(key, line=2, **fields):
    keys = {k: v for k, v in fields.items() if k in KEYS and v is not None}
    values = {k: v for k, v in fields.items() if k not in KEYS and v is not None}
    cleared = tuple(k for k, v in fields.items() if v is None)
    return Contact(line, [], key, keys, document(values), cleared)


@pytest.mark.parametrize(("mode", "contact", "counted"), [
    ("upsert", row("jo@x.com", email="jo@x.com", city="Paris"), "updated"),
    ("upsert", row("jo@x.com", email="jo@x.com", city="Lyon"), "unchanged"),
    ("upsert", row("new@x.com", email="new@x.com"), "created"),
    ("create_only", row("jo@x.com", email="jo@x.com", city="Paris"), "unchanged"),
    ("create_only", row("new@x.com", email="new@x.com"), "created"),
    ("update_only", row("jo@x.com", email="jo@x.com", city="Paris"), "updated"),
    ("update_only", row("new@x.com", email="new@x.com"), "skipped"),
    ("unsubscribe", row("jo@x.com", email="jo@x.com"), "updated"),
    ("unsubscribe", row("am@y.fr", email="am@y.fr"), "unchanged"),
    ("unsubscribe", row("new@x.com", email="new@x.com", city="Rome"), "created"),
])
def test_modes(mode, contact, counted):
    batch = Changes(stored(), "email", mode)
    assert batch.apply(contact, Outcome()) == counted
    written = {**batch.created, **batch.changed}
    assert bool(written) == (counted in ("created", "updated"))


def test_unsubscribe_creates_only_the_minimum():
    batch = Changes([], "email", "unsubscribe")
    batch.apply(row("new@x.com", email="new@x.com", city="Rome", first_name="N"), Outcome())
    [created] = batch.created.values()
    assert (created.keys, created.fields, created.unsubscribed) == (
        {"email": "new@x.com"}, {}, True)


def test_upsert_keeps_the_unsubscription():
    batch = Changes(stored(), "email", "upsert")
    batch.apply(row("am@y.fr", email="am@y.fr", city="Rome"), Outcome())
    assert batch.changed[2].unsubscribed is True


def test_match_on_external_id_can_change_the_email():
    batch = Changes(stored(), "external_id", "upsert")
    assert batch.apply(row("C1", external_id="C1", email="jo@new.com"), Outcome()) == "updated"
    assert batch.changed[1].keys == {"email": "jo@new.com", "external_id": "C1"}


def test_a_key_of_another_contact_rejects_the_row():
    # Given contact C1 (jo@x.com) and am@y.fr
    batch, outcome = Changes(stored(), "external_id", "upsert"), Outcome()
    # When a row for C1 takes am@y.fr's e-mail
    assert batch.apply(row("C1", line=7, external_id="C1", email="am@y.fr"), outcome) is None
    # Then it is rejected, nothing changes
    [rejection] = outcome.rejections
    assert (rejection.line, rejection.reason) == (
        7, "e-mail 'am@y.fr' already belongs to another contact")
    assert batch.changed == {}


def test_none_erases_a_field():
    batch = Changes(stored(), "email", "upsert")
    batch.apply(row("jo@x.com", email="jo@x.com", city=None), Outcome())
    assert batch.changed[1].fields == {}


def test_rows_of_one_new_contact_make_one_insert_in_its_last_state():
    batch = Changes([], "email", "upsert")
    assert batch.apply(row("n@x.com", email="n@x.com", city="A"), Outcome()) == "created"
    assert batch.apply(row("n@x.com", email="n@x.com", city="B"), Outcome()) == "updated"
    [created] = batch.created.values()
    assert created.fields == {"city": "B"}


@pytest.mark.parametrize(("contact", "quickly"), [
    (row("jo@x.com", email="jo@x.com", external_id="C1", city="Paris"), "updated"),  # replaced
    (row("jo@x.com", email="jo@x.com", external_id="C1", city="Lyon"), "unchanged"),
    (row("jo@x.com", email="jo@x.com", external_id="C1", city=None, zip="1"), "updated"),
    (row("jo@x.com", email="jo@x.com", external_id="C1", zip="69001"), None),  # city kept
    (row("jo@x.com", email="jo@x.com", city="Paris"), None),  # external_id kept
    (row("am@y.fr", email="am@y.fr", city="Nice", zip="06000"), "updated"),
    (row("jo@x.com", email="jo@x.com", external_id="C2", city="Lyon"), "updated"),  # new key
    (row("jo@x.com", email="jo@x.com", external_id="C1", phone="+33611", city="Lyon"),
     "updated"),
    (row("jo@x.com", email="jo@x.com", external_id="C1", phone="+33600", city="Lyon"),
     None),  # v@z.fr's phone: rejected
    (row("v@z.fr", email="v@z.fr", phone=None, city="A", zip="1"), "updated"),  # erased
    (row("v@z.fr", email="v@z.fr", city="A", zip="1"), None),  # its phone kept: unchanged
])
def test_the_quick_way_decides_as_the_general_way(contact, quickly):
    # Given the same contacts, one written with its fields in another order than jsonb's
    def contacts():
        return [*stored(), Stored(3, {"email": "v@z.fr", "phone": "+33600"}, None, False,
                                  '{"zip": "1", "city": "A"}')]

    quick, general = Changes(contacts()), Changes(contacts())
    # When a row comes, the quick way decides it or leaves it to the general way
    assert quick.quick(contact) == quickly
    counted = quickly or quick.apply(contact, Outcome())
    # Then both ways count it and change the contacts alike
    assert counted == general.apply(contact, Outcome())
    assert (quick.changed, quick.created) == (general.changed, general.created)
    assert all(c.text == document(c.values()) for c in quick.changed.values())


def test_a_document_written_otherwise_is_not_taken_for_a_change():
    batch = Changes([Stored(3, {"email": "v@z.fr"}, None, False, '{"zip": "1", "city": "A"}')])
    assert batch.quick(row("v@z.fr", email="v@z.fr", city="A", zip="1")) == "unchanged"
    assert batch.changed == {}
