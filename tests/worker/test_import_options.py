"""Template options through the whole import: modes, keys, error policy, reports."""

import copy
import csv
import json

import pytest

from tests.worker.conftest import HEADER, exported, spool


@pytest.fixture
def template(registry, demo_template):
    """Change acme's contacts.csv template: template(mode="create_only", ...)."""

    def change(**options):
        changed = copy.deepcopy(demo_template)
        changed.update(options)
        registry.set_template("acme", changed)
        return changed

    return change


BASE = HEADER + "jo@x.com;Jo;Doe;Lyon\r\nam@y.fr;Am;Y;Nice\r\n"


def counts(record):
    return {k: record[k] for k in ("rows", "created", "updated", "unchanged", "skipped",
                                   "rejected_rows")}


@pytest.mark.parametrize(("mode", "expected_counts", "cities"), [
    ("upsert", (3, 1, 1, 1, 0), {"jo@x.com": "Paris", "am@y.fr": "Nice", "new@z.fr": "Rome"}),
    ("create_only", (3, 1, 0, 2, 0), {"jo@x.com": "Lyon", "am@y.fr": "Nice", "new@z.fr": "Rome"}),
    ("update_only", (3, 0, 1, 1, 1), {"jo@x.com": "Paris", "am@y.fr": "Nice"}),
])
def test_modes(importer, home, template, mode, expected_counts, cities):
    importer.run(spool(home, "acme", BASE))
    template(mode=mode)
    record = importer.run(spool(home, "acme", HEADER + "jo@x.com;Jo;Doe;Paris\r\n"
                                "am@y.fr;Am;Y;Nice\r\nnew@z.fr;New;Z;Rome\r\n"))
    rows, created, updated, unchanged, skipped = expected_counts
    assert counts(record) == {"rows": rows, "created": created, "updated": updated,
                              "unchanged": unchanged, "skipped": skipped, "rejected_rows": 0}
    assert {e: c["city"] for e, c in exported(importer.store, "acme").items()} == cities


def test_unsubscribe_mode(importer, home, template):
    importer.run(spool(home, "acme", BASE))
    template(mode="unsubscribe")
    record = importer.run(spool(home, "acme", HEADER + "JO@x.com;;;\r\nghost@z.fr;G;Z;Rome\r\n"))
    assert (record["updated"], record["created"]) == (1, 1)
    contacts = {c["email"]: c for c in importer.store.export("acme")}
    assert contacts["jo@x.com"] == {"email": "jo@x.com", "first_name": "Jo", "last_name": "Doe",
                                    "city": "Lyon", "unsubscribed": True}
    # An unknown contact is kept only as its key, so no later import subscribes it by mistake
    assert contacts["ghost@z.fr"] == {"email": "ghost@z.fr", "unsubscribed": True}
    assert contacts["am@y.fr"]["unsubscribed"] is False


def test_match_on_external_id(importer, home, registry):
    registry.set_template("acme", {
        "file": "contacts.csv", "columns": ["Id", "E-mail", "Ville"],
        "fields": {"external_id": {"column": "Id"}, "email": {"column": "E-mail", "type": "email"},
                   "city": {"column": "Ville"}},
        "match_on": "external_id",
    })
    importer.run(spool(home, "acme", "Id;E-mail;Ville\r\nC1;jo@x.com;Lyon\r\nC2;am@y.fr;Nice\r\n"))
    # When C1 changes its e-mail and C2 tries to take it
    record = importer.run(spool(home, "acme", "Id;E-mail;Ville\r\nC1;jo@new.fr;Lyon\r\n"
                                "C2;jo@new.fr;Nice\r\n"))
    assert (record["updated"], record["rejected_rows"]) == (1, 1)
    assert record["rejections"][0]["reason"] == (
        "e-mail 'jo@new.fr' already belongs to another contact")
    contacts = {c["external_id"]: c["email"] for c in importer.store.export("acme")}
    assert contacts == {"C1": "jo@new.fr", "C2": "am@y.fr"}


def test_an_integer_external_id_is_kept_as_its_digits(importer, home, registry):
    registry.set_template("acme", {
        "file": "contacts.csv", "columns": ["Id", "Ville"],
        "fields": {"external_id": {"column": "Id", "type": "integer"},
                   "city": {"column": "Ville"}},
        "match_on": "external_id",
    })
    first = importer.run(spool(home, "acme", "Id;Ville\r\n0042;Lyon\r\n7;Nice\r\n"))
    assert (first["status"], first["created"]) == ("imported", 2), first["reason"]
    # The same ids written otherwise find the same contacts
    again = importer.run(spool(home, "acme", "Id;Ville\r\n42;Paris\r\n +7 ;Nice\r\n"))
    assert (again["status"], again["created"], again["updated"], again["unchanged"]) == (
        "imported", 0, 1, 1), again["reason"]
    contacts = {c["external_id"]: c["city"] for c in importer.store.export("acme")}
    assert contacts == {"42": "Paris", "7": "Nice"}


@pytest.mark.parametrize(("limit", "status"), [(1, "rejected"), (2, "imported"),
                                               ("40%", "imported"), ("30%", "rejected")])
def test_max_rejected(importer, home, template, limit, status):
    template(errors={"max_rejected": limit})
    # 2 bad rows of 5
    record = importer.run(spool(home, "acme", HEADER + "a@x.fr;;;\r\nbad;;;\r\nb@x.fr;;;\r\n"
                                "worse;;;\r\nc@x.fr;;;\r\n"))
    assert (record["status"], record["rows"], record["rejected_rows"]) == (status, 5, 2)
    if status == "rejected":
        assert f"2 of 5 rows rejected, more than max_rejected {limit}" in record["reason"]
        assert exported(importer.store, "acme") == {}
        assert record["created"] == 0
    else:
        assert record["created"] == 3
    # Either way the customer gets every rejected row
    report = home.reports("acme") / f"contacts.csv.{record['id']}.rejected.csv"
    assert len(report.read_text("utf-8-sig").splitlines()) == 3


@pytest.mark.parametrize(("option", "status"), [("ignore", "imported"), ("reject", "rejected")])
def test_empty_file(importer, home, template, option, status):
    template(empty_file=option)
    record = importer.run(spool(home, "acme", HEADER))
    assert record["status"] == status
    assert "no data rows" in (record["note"] or record["reason"])


def test_rejected_rows_report_is_safe_to_open_in_a_spreadsheet(importer, home):
    # Given rows that fail, one carrying a formula and one a negative-looking value
    record = importer.run(spool(home, "acme", HEADER + 'bad;=HYPERLINK("http://evil");x;y\r\n'
                                "ok@x.fr;Ok;;\r\n-1@;@SUM(A1);+33;Lille\r\n"))
    report = home.reports("acme") / f"contacts.csv.{record['id']}.rejected.csv"
    rows = list(csv.reader(report.read_text("utf-8-sig").splitlines(), delimiter=";"))
    # Then every rejected row is there with its line, column, value, reason and cells
    assert rows[0] == ["line", "column", "value", "reason", "E-mail", "Prénom", "Nom", "Ville"]
    assert rows[1][:3] == ["2", "E-mail", "bad"]
    assert rows[1][3].startswith("invalid e-mail 'bad'")
    # And no cell can run as a formula
    assert rows[1][4:] == ["bad", "'=HYPERLINK(\"http://evil\")", "x", "y"]
    assert rows[2][:3] == ["4", "E-mail", "'-1@"]
    assert rows[2][5:7] == ["'@SUM(A1)", "'+33"]


def test_report_summary(importer, home):
    record = importer.run(spool(home, "acme", BASE))
    report = json.loads((home.reports("acme") / f"contacts.csv.{record['id']}.json").read_text())
    assert (report["encoding"], report["delimiter"]) == ("utf-8", ";")
    assert report["template"]["file"] == "contacts.csv"
    assert report["durations"]["import_seconds"] >= 0
    assert report["rejected_file"] is None


def test_typed_fields_are_stored_normalised(importer, home, registry):
    registry.set_template("acme", {
        "file": "contacts.csv",
        "columns": ["Civilité", "E-mail", "Tél", "Naissance", "Optin", "Points", "Solde"],
        "format": {"encoding": "auto", "delimiter": "auto"},
        "fields": {
            "civility": {"column": "Civilité", "type": "enum", "values": ["mr", "mrs"],
                         "mapping": {"M.": "mr", "Mme": "mrs"}},
            "email": {"column": "E-mail", "type": "email"},
            "phone": {"column": "Tél", "type": "phone", "region": "FR", "invalid": "empty"},
            "birth_date": {"column": "Naissance", "type": "date", "format": "%d/%m/%Y"},
            "optin": {"column": "Optin", "type": "boolean", "default": "0"},
            "points": {"column": "Points", "type": "integer"},
            "balance": {"column": "Solde", "type": "decimal", "decimal_separator": ","},
        },
    })
    content = ("Civilité;E-mail;Tél;Naissance;Optin;Points;Solde\r\n"
               "Mme;Zoe@X.fr;06 12 34 56 78;03/02/1990;oui;1 200;-12,50\r\n"
               "M.;jo@x.fr;12;31/12/1985;;7;0,5\r\n").encode("cp1252")
    record = importer.run(spool(home, "acme", content))
    assert (record["encoding"], record["created"]) == ("cp1252", 2)
    contacts = {c["email"]: c for c in importer.store.export("acme")}
    assert contacts["zoe@x.fr"] == {
        "email": "zoe@x.fr", "phone": "+33612345678", "civility": "mrs",
        "birth_date": "1990-02-03", "optin": True, "points": 1200, "balance": "-12.50",
        "unsubscribed": False}
    # An invalid phone with "invalid": "empty" leaves the field empty, the row imported
    assert "phone" not in contacts["jo@x.fr"]
    assert contacts["jo@x.fr"]["optin"] is False
