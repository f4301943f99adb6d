"""Preview, hold and mirror: imports computed whole, applied only when they should be."""

import pytest

from worker.importer import OperationError, held
from worker.spool import pending

from .conftest import HEADER, spool

BASE = HEADER + "".join(f"c{n}@example.com;C{n};Lee;Lyon\r\n" for n in range(10))


@pytest.fixture
def template(importer, demo_template):
    """Set acme's template with `options`; a short file is no surprise here."""
    def set_template(**options):
        importer.registry.set_template("acme", {**demo_template, "max_shrink": "off",
                                                **options})
    set_template()
    return set_template


def run(importer, content):
    return importer.run(spool(importer.home, "acme", content))


def contacts(importer):
    return {contact["email"]: contact for contact in importer.store.export("acme")}


def test_the_hold_limits_name_the_limit_and_the_figure():
    summary = {"created": 0, "updated": 41, "unsubscribed": 0, "erased": 0, "absent": 0}
    assert held({"max_updated": "10%"}, summary, 100) == (
        "41% of contacts would be updated, more than hold.max_updated 10% (41 of 100); "
        "approve or reject it")
    assert held({"max_updated": 40}, summary, 100).startswith(
        "41 contacts would be updated, more than hold.max_updated 40")
    assert held({"max_updated": "50%", "max_created": 0}, summary, 100) is None
    assert held({"max_updated": "10%"}, summary, 0) is None  # a share of no contacts


def test_a_preview_changes_nothing_and_counts_what_the_import_does(importer, template):
    run(importer, BASE)
    before = contacts(importer)
    changed = BASE.replace("c1@example.com;C1;Lee;Lyon", "c1@example.com;C1;Lee;Nice") + (
        "new@example.com;New;Lee;Metz\r\nbad;X;Y;Z\r\n")
    preview = importer.preview("acme", write(importer, changed), "contacts.csv", record=True)
    assert preview["status"] == "previewed"
    assert contacts(importer) == before
    assert preview["changes"]["fields"] == {"city": {"changed": 1, "added": 0, "erased": 0}}
    reports = importer.home.reports("acme")
    assert (reports / f"contacts.csv.{preview['id']}.changes.csv").exists()
    assert (reports / f"contacts.csv.{preview['id']}.rejected.csv").exists()
    # A preview is never the last import: the same file is then imported, not "identical".
    imported = run(importer, changed)
    assert imported["status"] == "imported"
    assert [imported[k] for k in ("created", "updated", "unchanged", "rejected_rows")] == [
        preview[k] for k in ("created", "updated", "unchanged", "rejected_rows")] == [1, 1, 9, 1]
    assert imported["changes"] == preview["changes"]


def test_an_unrecorded_preview_leaves_no_trace(importer, template):
    run(importer, BASE)
    preview = importer.preview("acme", write(importer, BASE), "contacts.csv")
    assert (preview["status"], preview["unchanged"]) == ("previewed", 10)
    assert importer.store.get_import(preview["id"]) is None
    assert not list(importer.home.reports("acme").glob(f"*{preview['id']}*"))
    assert not list(importer.home.root.glob(f"*/acme/{preview['id']}"))


def write(importer, content):
    path = importer.home.root / "local.csv"
    path.write_text(content, encoding="utf-8")
    return path


def test_a_held_import_waits_then_approved_applies_and_releases_the_next(importer, template):
    template(hold={"max_updated": "20%"})
    run(importer, BASE)
    before = contacts(importer)
    surprising = BASE.replace(";Lyon", ";Paris")
    record = run(importer, surprising)
    assert record["status"] == "held"
    assert record["reason"] == (
        "contacts.csv: 100% of contacts would be updated, more than hold.max_updated 20% "
        "(10 of 10); approve or reject it")
    assert contacts(importer) == before
    assert record["changes"]["updated"] == 10
    report = importer.home.reports("acme") / f"contacts.csv.{record['id']}.changes.csv"
    assert "Lyon;Paris" in report.read_text("utf-8-sig")
    # A later file of the same template waits behind it
    later = run(importer, surprising.replace("c2@example.com;C2;Lee;Paris",
                                             "c2@example.com;C2;Lee;Caen"))
    assert (later["status"], later["reason"]) == (
        "queued", f"waiting for held import {record['id']}")
    assert contacts(importer) == before
    # Approved, it applies against the contacts as they are, then the waiting one follows
    event = importer.approve(record["id"], "ops")
    assert importer.store.get_import(record["id"])["status"] == "queued"
    importer.run(event)
    approved = importer.store.get_import(record["id"])
    assert (approved["status"], approved["note"]) == ("imported", "held, then approved by ops")
    assert importer.store.get_import(later["id"])["status"] == "imported"
    cities = {email: contact["city"] for email, contact in contacts(importer).items()}
    assert cities["c2@example.com"] == "Caen" and cities["c3@example.com"] == "Paris"
    with pytest.raises(OperationError, match="is imported, not held"):
        importer.approve(record["id"], "ops")


def test_a_held_import_is_neither_retried_nor_cancelled(importer, template):
    template(hold={"max_created": 0})
    record = run(importer, BASE)
    for operation in (importer.requeue, importer.cancel):
        with pytest.raises(OperationError, match="is held: approve or reject it"):
            operation(record["id"])
    assert importer.store.get_import(record["id"])["status"] == "held"


def test_a_rejected_held_import_applies_nothing_and_releases_the_next(importer, template):
    template(hold={"max_created": 5})
    record = run(importer, BASE)
    assert record["status"] == "held"
    later = run(importer, HEADER + "one@example.com;One;Lee;Lyon\r\n")
    assert later["status"] == "queued"
    waiting = importer.reject(record["id"], "ops")
    rejected = importer.store.get_import(record["id"])
    assert rejected["status"] == "rejected"
    assert rejected["reason"].startswith("rejected by an operator (ops); it was held: ")
    assert [event["import_id"] for event in waiting] == [later["id"]]
    importer.run(waiting[0])
    assert list(contacts(importer)) == ["one@example.com"]
    assert not list(pending(importer.home, "acme"))


def test_an_import_of_another_template_is_not_held_up(importer, template, demo_template):
    template(hold={"max_created": 0})
    importer.registry.set_template("acme", {**demo_template, "file": "other.csv"})
    record = run(importer, BASE)
    assert record["status"] == "held"
    other = importer.run(spool(importer.home, "acme", BASE, file="other.csv"))
    assert other["status"] == "imported"


@pytest.mark.parametrize("absent", ["unsubscribe", "delete"])
def test_mirror_handles_the_contacts_absent_from_the_file(importer, template, absent):
    template(mode="mirror", absent=absent)
    # Read in a process of its own, where rows that last wrote their contact are skipped
    # ("same") in other modes: a mirror file's rows all count.
    importer.separate_process_bytes = 0
    run(importer, BASE)
    before = contacts(importer)
    # Two contacts are gone from the file; one row is rejected but still names its contact
    kept = BASE.replace("c3@example.com;C3;Lee;Lyon\r\n", "").replace(
        "c4@example.com;C4;Lee;Lyon\r\n", "").replace(
        "c5@example.com;C5;Lee;Lyon", "c5@example.com;C5;Lee;Lyon;extra")
    record = run(importer, kept)
    assert record["status"] == "imported"
    assert record["rejected_rows"] == 1
    assert record["absent"] == 2
    after = contacts(importer)
    if absent == "delete":
        assert set(before) - set(after) == {"c3@example.com", "c4@example.com"}
    else:
        assert [email for email, contact in after.items() if contact["unsubscribed"]] == [
            "c3@example.com", "c4@example.com"]
    changes = [c.as_dict() for c in importer.store.changes(record["id"])]
    assert {c["key"] for c in changes} == {"c3@example.com", "c4@example.com"}
    # The rollback brings them back as they were
    importer.roll_back(record["id"], "ops")
    assert contacts(importer) == before


def test_max_absent_holds_a_mirror_file_missing_half_the_base(importer, template):
    template(mode="mirror", hold={"max_absent": "10%"})
    run(importer, BASE)
    record = run(importer, HEADER + "c1@example.com;C1;Lee;Lyon\r\n")
    assert record["status"] == "held"
    assert "90% of contacts would be absent from the file" in record["reason"]
    assert not any(contact["unsubscribed"] for contact in contacts(importer).values())
