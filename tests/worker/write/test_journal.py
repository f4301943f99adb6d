"""The journal: what each import changed, listed and summed up, and its rollback."""

import csv
import json

import pytest

from worker.importer import OperationError
from worker.write.journal import JournalError

from ..conftest import HEADER, spool

FIRST = HEADER + (
    "ann@example.com;Ann;Lee;Lyon\r\n"
    "bob@example.com;Bob;Ray;Paris\r\n"
    "cid@example.com;Cid;Roe;Nice\r\n"
)
#: Ann's city changes, Bob's is erased, Dan is new, Cid is as he was.
SECOND = HEADER + (
    "ann@example.com;Ann;Lee;Lille\r\n"
    "bob@example.com;Bob;Ray;\r\n"
    "cid@example.com;Cid;Roe;Nice\r\n"
    "dan@example.com;Dan;Poe;Metz\r\n"
)


@pytest.fixture(autouse=True)
def clearing(importer, demo_template):
    """An empty cell erases the field; a short file is no surprise."""
    importer.registry.set_template("acme", {**demo_template, "empty_cells": "clear",
                                            "max_shrink": "off"})


def imported(importer, content, account="acme"):
    record = importer.run(spool(importer.home, account, content))
    assert record["status"] == "imported", record["reason"]
    return record


def contacts(importer, account="acme"):
    return list(importer.store.export(account))


def test_an_import_records_what_it_changed_field_by_field(importer):
    first = imported(importer, FIRST)
    assert first["changes"] == {"created": 3, "updated": 0, "unsubscribed": 0,
                                "resubscribed": 0, "erased": 0, "absent": 0, "fields": {}}
    second = imported(importer, SECOND)
    assert (second["created"], second["updated"], second["unchanged"]) == (1, 2, 1)
    assert second["changes"] == {
        "created": 1, "updated": 2, "unsubscribed": 0, "resubscribed": 0, "erased": 1,
        "absent": 0, "fields": {"city": {"changed": 1, "added": 0, "erased": 1}}}
    assert second["journal"] == "kept"
    changes = [change.as_dict() for change in importer.store.changes(second["id"])]
    assert changes[:2] == [
        {"key": "ann@example.com", "change": "changed", "field": "city", "before": "Lyon",
         "after": "Lille"},
        {"key": "bob@example.com", "change": "erased", "field": "city", "before": "Paris",
         "after": None}]
    assert sorted((c["key"], c["change"], c["field"], c["before"], c["after"])
                  for c in changes[2:]) == [
        ("dan@example.com", "created", field, None, value) for field, value in (
            ("city", "Metz"), ("email", "dan@example.com"), ("first_name", "Dan"),
            ("last_name", "Poe"), ("unsubscribed", False))]
    # The customer's reports: the changes file, named in the JSON report.
    reports = importer.home.reports("acme")
    report = json.loads((reports / f"contacts.csv.{second['id']}.json").read_text())
    assert report["changes_file"] == f"contacts.csv.{second['id']}.changes.csv"
    assert report["changes"] == second["changes"]
    with open(reports / report["changes_file"], encoding="utf-8-sig", newline="") as file:
        rows = list(csv.reader(file, delimiter=";"))
    assert rows[0] == ["key", "change", "field", "before", "after"]
    assert rows[1:3] == [["ann@example.com", "changed", "city", "Lyon", "Lille"],
                         ["bob@example.com", "erased", "city", "Paris", ""]]


def test_the_changes_report_neutralises_formulas(importer):
    imported(importer, HEADER + "eve@example.com;Eve;Lee;Lyon\r\n")
    record = imported(importer, HEADER + "eve@example.com;Eve;Lee;=HYPERLINK(\"x\")\r\n")
    report = importer.home.reports("acme") / f"contacts.csv.{record['id']}.changes.csv"
    assert "'=HYPERLINK" in report.read_text("utf-8-sig")


def test_a_rollback_puts_back_the_contacts_as_they_were(importer):
    imported(importer, FIRST)
    before = contacts(importer)
    second = imported(importer, SECOND)
    assert contacts(importer) != before
    dry = importer.roll_back(second["id"], "ops", dry_run=True)
    assert (dry.deleted, dry.restored, dry.left) == (1, 2, 0)
    assert importer.store.get_import(second["id"])["status"] == "imported"  # nothing done
    outcome = importer.roll_back(second["id"], "ops")
    assert (outcome.deleted, outcome.restored, outcome.left) == (1, 2, 0)
    assert contacts(importer) == before
    record = importer.store.get_import(second["id"])
    assert record["status"] == "rolled_back"
    assert record["rolled_back_by"] == "ops" and record["rolled_back_at"]
    assert record["rollback"]["deleted"] == 1
    with pytest.raises(OperationError, match="already rolled back"):
        importer.roll_back(second["id"], "ops")
    # The same file again is imported again: a rolled back import is not its twin.
    again = imported(importer, SECOND)
    assert (again["created"], again["updated"]) == (1, 2)


def test_rolling_back_a_first_import_empties_the_account(importer):
    first = imported(importer, FIRST)
    importer.roll_back(first["id"], "ops")
    assert contacts(importer) == []


def test_a_contact_changed_by_a_later_import_is_left_and_listed(importer):
    imported(importer, FIRST)
    second = imported(importer, SECOND)
    imported(importer, HEADER + "ann@example.com;Ann;Lee;Brest\r\n"
                                "dan@example.com;Dan;Poe;Caen\r\n")
    outcome = importer.roll_back(second["id"], "ops", dry_run=True)
    assert (outcome.deleted, outcome.restored, outcome.left) == (0, 1, 2)
    assert {left["key"]: left["why"].split(" since")[0] for left in outcome.listed} == {
        "ann@example.com": "changed by import " + outcome.listed[0]["why"].split()[3],
        "dan@example.com": outcome.listed[1]["why"].split(" since")[0]}
    importer.roll_back(second["id"], "ops")
    cities = {contact["email"]: contact.get("city") for contact in contacts(importer)}
    assert cities == {"ann@example.com": "Brest", "bob@example.com": "Paris",
                      "cid@example.com": "Nice", "dan@example.com": "Caen"}


def test_force_puts_back_even_what_a_later_import_changed(importer):
    imported(importer, FIRST)
    before = contacts(importer)
    second = imported(importer, SECOND)
    imported(importer, HEADER + "ann@example.com;Ann;Lee;Brest\r\n")
    outcome = importer.roll_back(second["id"], "ops", force=True)
    assert (outcome.deleted, outcome.restored, outcome.left) == (1, 2, 0)
    assert contacts(importer) == before


def test_an_import_that_applied_nothing_cannot_be_rolled_back(importer):
    record = importer.run(spool(importer.home, "acme", "E-mail;Other\r\nx@example.com;1\r\n"))
    assert record["status"] == "rejected"
    with pytest.raises(OperationError, match="rejected: it applied nothing"):
        importer.roll_back(record["id"], "ops")
    with pytest.raises(OperationError, match="no import"):
        importer.roll_back("20260101-000000-1-0000", "ops")


def test_the_purge_drops_old_journals_and_then_no_rollback(importer):
    first = imported(importer, FIRST)
    importer.journal_days = 1
    assert importer.purge_journal() == 0  # younger than a day
    importer.journal_days = 0
    assert importer.purge_journal() == 1
    assert importer.store.get_import(first["id"])["journal"] == "purged"
    with pytest.raises(OperationError, match="purged"):
        importer.roll_back(first["id"], "ops")
    with pytest.raises(JournalError, match="purged"):
        list(importer.store.changes(first["id"]))


def test_no_journal_kept_when_turned_off(importer):
    importer.journal_days = 0
    imported(importer, FIRST)
    second = imported(importer, SECOND)
    assert second["journal"] == "off"
    assert second["changes"]["fields"] == {"city": {"changed": 1, "added": 0, "erased": 1}}
    with pytest.raises(OperationError, match="kept no journal"):
        importer.roll_back(second["id"], "ops")
    # The changes report is written in the import's transaction, before the journal goes.
    report = importer.home.reports("acme") / f"contacts.csv.{second['id']}.changes.csv"
    assert "Lyon;Lille" in report.read_text("utf-8-sig")


@pytest.fixture
def by_id(importer, demo_template):
    """acme's template matches on an external id: a file can move an e-mail to another
    contact."""
    importer.registry.set_template("acme", {
        **demo_template, "columns": ["Id", *demo_template["columns"]], "max_shrink": "off",
        "fields": {"external_id": {"column": "Id"}, **demo_template["fields"]},
        "match_on": "external_id"})
    return lambda rows: "Id;" + HEADER + "".join(f"{row}\r\n" for row in rows)


def test_a_rollback_gives_back_a_key_the_import_moved(importer, by_id):
    imported(importer, by_id(["1;a@x.com;A;A;Lyon", "2;b@x.com;B;B;Lyon"]))
    before = contacts(importer)
    # The e-mail a@x.com goes from contact 1 to a new contact 3
    moved = imported(importer, by_id(["1;new@x.com;A;A;Lyon", "3;a@x.com;C;C;Nice"]))
    assert (moved["created"], moved["updated"]) == (1, 1)
    outcome = importer.roll_back(moved["id"], "ops")
    assert (outcome.deleted, outcome.restored, outcome.left) == (1, 1, 0)
    assert contacts(importer) == before


def test_a_key_another_contact_holds_now_is_not_given_back(importer, by_id):
    imported(importer, by_id(["1;a@x.com;A;A;Lyon"]))
    moved = imported(importer, by_id(["1;new@x.com;A;A;Lyon", "3;a@x.com;C;C;Nice"]))
    later = imported(importer, by_id(["3;a@x.com;C;C;Brest"]))  # contact 3 changed since
    outcome = importer.roll_back(moved["id"], "ops", dry_run=True)
    assert (outcome.deleted, outcome.restored, outcome.left) == (0, 0, 2)
    assert sorted((left["key"], left["why"]) for left in outcome.listed) == [
        ("a@x.com", f"created by this import, changed by import {later['id']} since"),
        ("new@x.com", "its old value 'a@x.com' belongs to another contact now")]
    importer.roll_back(moved["id"], "ops")
    assert {c["external_id"]: c["email"] for c in contacts(importer)} == {
        "1": "new@x.com", "3": "a@x.com"}
