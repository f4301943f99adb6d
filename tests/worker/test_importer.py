"""The Importer on a spooled file, against SQLite and PostgreSQL (no broker)."""

import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from schemas import spool as layout
from tests.worker.conftest import HEADER, exported, spool


def test_import_creates_contacts_and_records_counts(importer, home):
    # Given a file with two good rows, one of them with a messy e-mail, and a bad one
    rows = " Jo@X.com ;Jo;Doe;Lyon\r\nbad;A;B;C\r\nam@y.fr;Am;Y;Nice\r\n"
    event = spool(home, "acme", HEADER + rows)
    # When it is imported
    record = importer.run(event)
    # Then the contacts are stored under normalised e-mails
    assert exported(importer.store, "acme") == {
        "jo@x.com": {"first_name": "Jo", "last_name": "Doe", "city": "Lyon"},
        "am@y.fr": {"first_name": "Am", "last_name": "Y", "city": "Nice"},
    }
    # And the record says what happened, with the rejected line and its reason
    assert record["status"] == "imported"
    counts = {k: record[k] for k in ("rows", "created", "updated", "unchanged", "rejected_rows")}
    assert counts == {"rows": 3, "created": 2, "updated": 0, "unchanged": 0, "rejected_rows": 1}
    assert record["rejections"][0]["line"] == 3
    assert "invalid e-mail 'bad'" in record["rejections"][0]["reason"]
    # And the file is archived and the report written into the account's FTP root
    assert (home.archive / "acme" / event["import_id"] / "contacts.csv").exists()
    assert not layout.folder(home, "acme", event["import_id"]).exists()
    report = home.reports("acme") / f"contacts.csv.{event['import_id']}.json"
    assert json.loads(report.read_text("utf-8")).items() >= record.items()


def test_second_file_updates_and_counts_unchanged(importer, home):
    importer.run(spool(home, "acme", HEADER + "jo@x.com;Jo;Doe;Lyon\r\nam@y.fr;Am;Y;Nice\r\n"))
    # When the same e-mails come again, one with a new city and one e-mail in another case
    rows = "JO@x.com;Jo;Doe;Paris\r\nam@y.fr;Am;Y;Nice\r\n"
    record = importer.run(spool(home, "acme", HEADER + rows))
    # Then there is no duplicate: one contact updated, one unchanged
    assert (record["created"], record["updated"], record["unchanged"]) == (0, 1, 1)
    assert exported(importer.store, "acme")["jo@x.com"]["city"] == "Paris"
    assert len(exported(importer.store, "acme")) == 2


def test_empty_cell_keeps_the_stored_value(importer, home):
    importer.run(spool(home, "acme", HEADER + "jo@x.com;Jo;Doe;Lyon\r\n"))
    importer.run(spool(home, "acme", HEADER + "jo@x.com;Joe;;\r\n"))
    assert exported(importer.store, "acme")["jo@x.com"] == {
        "first_name": "Joe", "last_name": "Doe", "city": "Lyon"}


def test_same_email_twice_in_a_file_last_wins(importer, home):
    record = importer.run(spool(home, "acme", HEADER + "jo@x.com;A;;\r\nJo@X.com;B;;\r\n"))
    assert exported(importer.store, "acme") == {"jo@x.com": {"first_name": "B"}}
    assert (record["rows"], record["created"], record["updated"]) == (2, 1, 1)


def test_changed_header_is_rejected_and_nothing_imported(importer, home):
    event = spool(home, "acme", "E-mail;Prénom;Nom;Town\r\njo@x.com;Jo;Doe;Lyon\r\n")
    record = importer.run(event)
    assert record["status"] == "rejected"
    assert "contacts.csv line 1: header differs" in record["reason"]
    assert "missing 'Ville'; unexpected 'Town'" in record["reason"]
    assert exported(importer.store, "acme") == {}
    assert (home.failed / "acme" / event["import_id"] / "contacts.csv").exists()


@pytest.mark.parametrize(("content", "file", "reason"), [
    (HEADER, "other.csv", "no template for 'other.csv' (this account's templates: contacts.csv)"),
    ("", "contacts.csv", "contacts.csv: the file has no data rows"),
    (HEADER, "contacts.csv", "contacts.csv: the file has no data rows"),
])
def test_files_refused_as_a_whole_say_why(importer, home, content, file, reason):
    record = importer.run(spool(home, "acme", content, file=file))
    assert record["status"] == "rejected"
    assert record["reason"].startswith(reason)


def test_bytes_that_do_not_decode_reject_their_row_only(importer, home):
    # Given a UTF-8 template and a file with one Windows-1252 byte on line 3
    data = (HEADER + "jo@x.com;Jo;;\r\n").encode() + "am@y.fr;Zoé;;\r\n".encode("cp1252")
    record = importer.run(spool(home, "acme", data))
    # Then that row is rejected with its line and the bytes, the others imported
    assert (record["status"], record["created"], record["rejected_rows"]) == ("imported", 1, 1)
    assert record["rejections"] == [
        {"line": 3, "column": None, "value": None, "reason": "bytes b'\\xe9' are not valid utf-8"}
    ]


def test_a_replayed_event_changes_nothing(importer, home):
    event = spool(home, "acme", HEADER + "jo@x.com;Jo;Doe;Lyon\r\n")
    first = importer.run(event)
    # When the same event is delivered again (the file is already archived)
    again = importer.run(event)
    # Then it is a no-op returning the same record
    assert again == first
    assert len(importer.store.list_imports()) == 1


def test_accounts_with_the_same_file_name_are_isolated(importer, home):
    importer.run(spool(home, "acme", HEADER + "jo@x.com;Jo;Acme;Lyon\r\n"))
    importer.run(spool(home, "globex", HEADER + "jo@x.com;Jo;Globex;Rome\r\n"))
    assert exported(importer.store, "acme")["jo@x.com"]["last_name"] == "Acme"
    assert exported(importer.store, "globex")["jo@x.com"]["last_name"] == "Globex"
    assert [r["account"] for r in importer.store.list_imports("globex")] == ["globex"]


def test_concurrent_imports_of_one_account_queue_up(importer, home):
    # Given two files of one account that create the same 2,000 contacts
    rows = [
        HEADER + "".join(f"c{i}@x.com;N{n};;\r\n" for i in range(2000)) for n in range(2)
    ]
    events = [spool(home, "acme", content) for content in rows]
    # When two worker threads import them at the same time
    with ThreadPoolExecutor(2) as pool:
        records = list(pool.map(importer.run, events))
    # Then neither fails: one creates the contacts, the other updates them
    assert [r["status"] for r in records] == ["imported", "imported"]
    assert sorted((r["created"], r["updated"]) for r in records) == [(0, 2000), (2000, 0)]
    assert len(exported(importer.store, "acme")) == 2000


CUT = "the upload looks incomplete; nothing imported"


@pytest.mark.parametrize(("rows", "line"), [
    ("jo@x.com;Jo;Doe;Lyon\r\nam@y.fr;Am", 3),  # no line break, and cells missing
    ("jo@x.com;Jo;Doe;Lyon\r\nam@y.fr;", 3),
    ('jo@x.com;Jo;Doe;Lyon\r\nam@y.fr;Am;Y;"Ni', 3),  # inside a quoted cell
    ('jo@x.com;Jo;Doe;Lyon\r\nam@y.fr;Am;Y;"Nice\r\n', 3),  # a line break, but quoted
    ('jo@x.com;Jo;Doe;"Lyon\r\nSud"\r\nam@y.fr;"Am', 4),  # where the cut record starts
])
def test_a_file_cut_in_the_middle_of_its_last_line_is_rejected_whole(importer, home, rows,
                                                                     line):
    # Given a file whose last record was cut short by the upload
    event = spool(home, "acme", HEADER + rows)
    # When it is imported
    record = importer.run(event)
    # Then nothing is imported, and the reason says where the file ends
    assert record["status"] == "rejected"
    assert record["reason"] == f"contacts.csv: the file ends in the middle of line {line}: {CUT}"
    assert (record["rows"], record["created"]) == (2, 0)
    assert exported(importer.store, "acme") == {}
    assert (home.failed / "acme" / event["import_id"] / "contacts.csv").exists()


@pytest.mark.parametrize("last", ["am@y.fr;Am;Y;Nice", 'am@y.fr;Am;Y;"Nice"', "am@y.fr;Am;Y;Nice;"])
def test_a_complete_file_without_a_final_line_break_is_imported(importer, home, last):
    record = importer.run(spool(home, "acme", HEADER + "jo@x.com;Jo;Doe;Lyon\r\n" + last))
    assert (record["status"], record["created"], record["rejected_rows"]) == ("imported", 2, 0)
    assert exported(importer.store, "acme")["am@y.fr"]["city"] == "Nice"


@pytest.mark.parametrize(("rows", "status"), [
    ("jo@x.com;Jo;Lyon\r\nam@y.fr;Am", "rejected"),
    ("jo@x.com;Jo;Lyon\r\nam@y.fr;Am;Nice", "imported"),
])
def test_a_file_without_header_is_cut_by_its_template_s_columns(importer, home, registry,
                                                                rows, status):
    registry.set_template("acme", {
        "file": "contacts.csv", "columns": ["mail", "prenom", "ville"], "header": False,
        "fields": {"email": {"column": 1, "type": "email"}, "city": {"column": 3}}})
    record = importer.run(spool(home, "acme", rows))
    assert record["status"] == status
    if status == "rejected":
        assert record["reason"] == f"contacts.csv: the file ends in the middle of line 2: {CUT}"


def test_a_nul_character_rejects_its_row_only(importer, home):
    # Given a file whose third line holds a NUL character (which PostgreSQL cannot store)
    rows = "jo@x.com;Jo;Doe;Lyon\r\nam@y.fr;A\x00m;Y;Nice\r\nzoe@z.fr;Zoé;;\r\n"
    record = importer.run(spool(home, "acme", HEADER + rows))
    # Then that row is rejected with its line, its column and why; the others are imported
    assert (record["status"], record["created"], record["rejected_rows"]) == ("imported", 2, 1)
    assert record["rejections"] == [
        {"line": 3, "column": "Prénom", "value": None, "reason": "contains a NUL character"}]
    assert set(exported(importer.store, "acme")) == {"jo@x.com", "zoe@z.fr"}
    report = home.reports("acme") / f"contacts.csv.{record['id']}.rejected.csv"
    assert "contains a NUL character" in report.read_text("utf-8-sig")


@pytest.mark.parametrize(("header", "reason"), [
    (";".join(f"c{n}" for n in range(100_000)),
     "contacts.csv line 1: the header has 100000 columns, more than the 2000 a template may "
     "have"),
    ("E-mail;" + "x" * (50 << 20),
     "contacts.csv line 1: the header is longer than 1,048,576 characters, more than a "
     "template's may be"),
])
def test_a_hostile_header_is_rejected_naming_the_cap(importer, home, header, reason):
    # Given a two-line file of 100,000 columns (its check took minutes), or of a 50 MB header
    record = importer.run(spool(home, "acme", header + "\r\n" + "jo@x.com;" * 100 + "\r\n"))
    # Then it is rejected at once, the reason naming the cap
    assert (record["status"], record["reason"]) == ("rejected", reason)
