"""Exactly once, in order, all or nothing: the importer's side of the delivery guarantees."""

import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from schemas import spool as layout
from tests.worker.conftest import HEADER, exported, spool
from worker.importer import OperationError


def rows(n, city="Lyon"):
    return HEADER + "".join(f"c{i}@x.fr;C{i};;{city}\r\n" for i in range(n))


def test_an_older_file_still_in_the_spool_is_imported_first(importer, home):
    # Given two uploads of one account, the newer one's message delivered first
    older = spool(home, "acme", rows(3, "Lyon"))
    newer = spool(home, "acme", rows(3, "Paris"))
    # When the newer message is handled
    record = importer.run(newer)
    # Then the older file was imported before it, so the newer values win
    assert {c["city"] for c in exported(importer.store, "acme").values()} == {"Paris"}
    assert (record["updated"], importer.store.get_import(older["import_id"])["created"]) == (3, 3)
    # And the older message, arriving later, changes nothing
    again = importer.run(older)
    assert again["status"] == "imported"
    assert {c["city"] for c in exported(importer.store, "acme").values()} == {"Paris"}


def test_the_same_message_twice_at_once_imports_once(importer, home):
    event = spool(home, "acme", rows(500))
    with ThreadPoolExecutor(2) as pool:
        records = list(pool.map(importer.run, [event, event]))
    assert [r["id"] for r in records] == [event["import_id"]] * 2
    assert [r["created"] for r in records] == [500, 500]  # the one record, read twice
    assert len(importer.store.list_imports()) == 1
    assert len(exported(importer.store, "acme")) == 500


def test_another_account_is_not_held_up(importer, home):
    # Given account acme held by a long import
    held, release = threading.Event(), threading.Event()

    def hold():
        with importer.store.account_lock("acme"):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        held.wait(5)
        # When globex's file arrives, it is imported at once
        record = importer.run(spool(home, "globex", rows(2)))
        assert record["status"] == "imported"
    finally:
        release.set()
        holder.join()


def test_identical_content_is_recorded_without_reading_it(importer, home):
    first = importer.run(spool(home, "acme", rows(4) + "bad;;;\r\n"))
    again = importer.run(spool(home, "acme", rows(4) + "bad;;;\r\n"))
    assert again["status"] == "imported"
    assert again["note"] == f"identical to import {first['id']}: nothing to change"
    assert (again["rows"], again["created"], again["updated"], again["unchanged"],
            again["rejected_rows"]) == (5, 0, 0, 4, 1)



def test_an_identical_file_lists_the_rows_it_rejects_as_its_first_did(importer, home):
    # Given a file with a rejected row, imported, then uploaded again unchanged
    first = importer.run(spool(home, "acme", rows(4) + "bad;;;\r\n"))
    again = importer.run(spool(home, "acme", rows(4) + "bad;;;\r\n"))
    # Then its record lists the rejected row its count says, and its report has the CSV
    assert again["rejected_rows"] == len(again["rejections"]) == 1
    assert again["rejections"] == first["rejections"]
    reports = home.reports("acme")
    report = json.loads((reports / f"contacts.csv.{again['id']}.json").read_text("utf-8"))
    assert report["rejected_file"] == f"contacts.csv.{again['id']}.rejected.csv"
    assert ((reports / report["rejected_file"]).read_bytes()
            == (reports / f"contacts.csv.{first['id']}.rejected.csv").read_bytes())


def test_a_report_names_no_rejected_file_it_could_not_keep(importer, home):
    # Given the customer deleted the first import's rejected rows report
    first = importer.run(spool(home, "acme", rows(4) + "bad;;;\r\n"))
    (home.reports("acme") / f"contacts.csv.{first['id']}.rejected.csv").unlink()
    # When the same file comes again, its report does not point to a file that is not there
    again = importer.run(spool(home, "acme", rows(4) + "bad;;;\r\n"))
    report = json.loads((home.reports("acme") / f"contacts.csv.{again['id']}.json")
                        .read_text("utf-8"))
    assert report["rejected_file"] is None and report["rejections"] == first["rejections"]


@pytest.mark.parametrize(("count", "status"), [(8, "imported"), (7, "rejected")])
def test_max_shrink_refuses_a_truncated_file(importer, home, registry, demo_template,
                                             count, status):
    registry.set_template("acme", {**demo_template, "max_shrink": "20%"})
    first = importer.run(spool(home, "acme", rows(10)))
    record = importer.run(spool(home, "acme", rows(count, "Paris")))
    assert record["status"] == status
    if status == "rejected":
        assert record["reason"] == (
            f"contacts.csv: the file has 7 rows, 30% fewer than the 10 of import {first['id']} "
            "(max_shrink 20%): nothing imported; if the drop is expected, raise max_shrink "
            "and upload the file again")
        assert {c["city"] for c in exported(importer.store, "acme").values()} == {"Lyon"}


@pytest.mark.parametrize(("max_shrink", "count", "status"), [
    (None, 5, "imported"), (None, 4, "rejected"), ("off", 1, "imported")])
def test_max_shrink_is_half_unless_the_template_says_otherwise(importer, home, registry,
                                                              demo_template, max_shrink,
                                                              count, status):
    if max_shrink:
        registry.set_template("acme", {**demo_template, "max_shrink": max_shrink})
    # Given a first import, which has no import before it to compare with
    first = importer.run(spool(home, "acme", rows(10)))
    assert first["status"] == "imported"
    # When a file of fewer rows comes
    record = importer.run(spool(home, "acme", rows(count, "Paris")))
    # Then less than half of the rows is refused, unless max_shrink is off
    assert record["status"] == status
    if status == "rejected":
        assert record["reason"] == (
            f"contacts.csv: the file has 4 rows, 60% fewer than the 10 of import {first['id']} "
            "(max_shrink 50%): nothing imported; if the drop is expected, raise max_shrink "
            "and upload the file again")


@pytest.mark.parametrize(("expected", "reason"), [
    ({"rows": 4}, "the file has 3 rows, its completion marker announced 4"),
    ({"sha256": "0" * 64}, "is not the " + "0" * 64 + " its completion marker announced"),
])
def test_what_the_completion_marker_announced_is_checked(importer, home, expected, reason):
    event = {**spool(home, "acme", rows(3)), "expected": expected}
    record = importer.run(event)
    assert record["status"] == "rejected"
    assert reason in record["reason"]
    assert exported(importer.store, "acme") == {}


def test_a_file_missing_from_the_spool_fails_clearly(importer, home):
    event = spool(home, "acme", rows(1))
    layout.spooled_file(home, event).unlink()
    record = importer.run(event)
    assert record["status"] == "failed"
    assert "the spooled file" in record["reason"] and "is missing" in record["reason"]
    # And a redelivery does not loop: the import is final
    assert importer.run(event)["status"] == "failed"


def test_a_poison_file_fails_once_with_the_error_in_its_report(importer, home):
    # Given a file that makes the CSV reader itself raise (a runaway quote: a 17 MB cell)
    event = spool(home, "acme", HEADER.encode() + b'jo@x.com;"' + b"x" * (17 << 20))
    record = importer.run(event)
    # Then the import is failed with the error, the file kept in failed/, the report written
    assert record["status"] == "failed"
    assert "field larger than field limit" in record["reason"]
    assert (home.failed / "acme" / event["import_id"] / "contacts.csv").exists()
    report = home.reports("acme") / f"contacts.csv.{event['import_id']}.json"
    assert "field larger than field limit" in report.read_text()
    # And a redelivery does not try again
    assert importer.run(event)["finished_at"] == record["finished_at"]


def test_a_rejected_import_can_be_retried_after_the_template_is_fixed(importer, home, registry,
                                                                       demo_template):
    # Given a file rejected because the template expected another header
    registry.set_template("acme", {**demo_template, "columns": ["Mail", "Prénom", "Nom", "Ville"],
                                   "fields": {**demo_template["fields"],
                                              "email": {"column": "Mail", "type": "email"}}})
    event = spool(home, "acme", rows(2))
    assert importer.run(event)["status"] == "rejected"
    # When the template is fixed and the operator retries the import
    registry.set_template("acme", demo_template)
    requeued = importer.requeue(event["import_id"])
    # Then its file is back in the spool and it imports
    assert layout.spooled_file(home, requeued).exists()
    record = importer.run(requeued)
    assert (record["id"], record["status"], record["created"]) == (event["import_id"],
                                                                   "imported", 2)


def test_an_imported_import_cannot_be_retried(importer, home):
    event = spool(home, "acme", rows(1))
    importer.run(event)
    with pytest.raises(OperationError, match="is imported: only a failed or rejected"):
        importer.requeue(event["import_id"])


def test_an_older_import_is_retried_over_a_newer_one_only_when_forced(importer, home, registry,
                                                                       demo_template):
    # Given a rejected file (the template expected another header), then a newer file imported
    registry.set_template("acme", {**demo_template, "columns": ["Mail", "Prénom", "Nom", "Ville"],
                                   "fields": {**demo_template["fields"],
                                              "email": {"column": "Mail", "type": "email"}}})
    older = spool(home, "acme", rows(2, "Lyon"))
    assert importer.run(older)["status"] == "rejected"
    registry.set_template("acme", demo_template)
    newer = importer.run(spool(home, "acme", rows(2, "Paris")))
    # When the operator retries the older one, it is refused: it would put older data back
    with pytest.raises(OperationError, match=(
            f"import {newer['id']} of contacts.csv is newer; --force to apply this older "
            "file over it")):
        importer.requeue(older["import_id"])
    assert exported(importer.store, "acme")["c0@x.fr"]["city"] == "Paris"
    # Unless forced
    record = importer.run(importer.requeue(older["import_id"], force=True))
    assert record["status"] == "imported"
    assert exported(importer.store, "acme")["c0@x.fr"]["city"] == "Lyon"
