"""The safety net, through the real pipeline: what an import changed, and its rollback."""

import csv
import io
import json

import pytest

from tests.conftest import DEMO, sqlite_only

from .test_pipeline import HEADER, upload


@pytest.fixture
def acme(system, tmp_path):
    system.cli("account", "create", "acme", "--ftp-user", "acme-ftp", "--password-stdin",
               input="acme-secret\n")
    template = json.loads((DEMO / "template.json").read_text("utf-8"))
    path = tmp_path / "template.json"
    path.write_text(json.dumps({**template, "empty_cells": "clear", "max_shrink": "off"}))
    system.cli("template", "set", "acme", str(path))
    return system


def exported(system):
    return system.cli("contacts", "export", "acme").stdout


def test_a_rollback_restores_the_exported_contacts_exactly(acme):
    upload(acme, HEADER + "ann@x.com;Ann;Lee;Lyon\r\nbob@x.com;Bob;Ray;Paris\r\n")
    acme.wait_for_imports(1)
    before = exported(acme)
    # When a file changes a city, erases one and adds a contact
    upload(acme, HEADER + "ann@x.com;Ann;Lee;Lille\r\nbob@x.com;Bob;Ray;\r\n"
                          "cy@x.com;Cy;Poe;Metz\r\n")
    second, _ = acme.wait_for_imports(2)
    assert exported(acme) != before
    # Then `imports show` tells what changed, field by field
    shown = acme.cli("imports", "show", second["id"]).stdout
    assert "changes:       1 created, 2 updated, 0 unsubscribed, 0 resubscribed" in shown
    assert "city:" in shown and "1 changed" in shown and "1 erased" in shown
    # And `imports diff` lists each change, before and after
    diff = [json.loads(line) for line in acme.cli("imports", "diff", second["id"], "--json",
                                                  "--field", "city").stdout.splitlines()]
    assert diff == [
        {"key": "ann@x.com", "change": "changed", "field": "city", "before": "Lyon",
         "after": "Lille"},
        {"key": "bob@x.com", "change": "erased", "field": "city", "before": "Paris",
         "after": None},
        {"key": "cy@x.com", "change": "created", "field": "city", "before": None,
         "after": "Metz"}]
    # And the customer reads the changes file over FTP
    with acme.ftp("acme-ftp", "acme-secret") as ftp:
        data = io.BytesIO()
        ftp.retrbinary(f"RETR reports/contacts.csv.{second['id']}.changes.csv", data.write)
    rows = list(csv.reader(io.StringIO(data.getvalue().decode("utf-8-sig")), delimiter=";"))
    assert ["ann@x.com", "changed", "city", "Lyon", "Lille"] in rows
    # When the operator rolls it back (after a dry run that changes nothing)
    dry = acme.cli("imports", "rollback", second["id"], "--dry-run").stdout
    assert "1 contacts it created would be deleted, 2 would be restored, 0 left" in dry
    assert exported(acme) != before
    done = acme.cli("imports", "rollback", second["id"], "--by", "ops@platform").stdout
    assert "rolled back: 1 contacts it created were deleted, 2 were restored" in done
    # Then the contacts are exactly as they were, and the record says who did it
    assert exported(acme) == before
    record = json.loads(acme.cli("imports", "show", second["id"], "--json").stdout)
    assert (record["status"], record["rolled_back_by"]) == ("rolled_back", "ops@platform")
    listed = acme.cli("imports", "list", "--status", "rolled_back").stdout
    assert second["id"] in listed
    # And a second rollback is refused with its reason
    again = acme.cli("imports", "rollback", second["id"], check=False)
    assert again.returncode == 1
    assert "already rolled back" in again.stderr


# The store's side of it is tested on both stores in tests/worker: the pipeline once.
@sqlite_only
def test_a_rollback_after_a_later_import_keeps_the_later_changes(acme):
    upload(acme, HEADER + "ann@x.com;Ann;Lee;Lyon\r\nbob@x.com;Bob;Ray;Paris\r\n")
    acme.wait_for_imports(1)
    upload(acme, HEADER + "ann@x.com;Ann;Lee;Lille\r\nbob@x.com;Bob;Ray;Nantes\r\n")
    second, _ = acme.wait_for_imports(2)
    upload(acme, HEADER + "ann@x.com;Ann;Lee;Brest\r\n")
    third, *_ = acme.wait_for_imports(3)
    done = acme.cli("imports", "rollback", second["id"]).stdout
    assert f"left ann@x.com: changed by import {third['id']} since" in done
    contacts = acme.contacts("acme")
    assert (contacts["ann@x.com"]["city"], contacts["bob@x.com"]["city"]) == ("Brest", "Paris")


def test_a_file_uploaded_into_dryrun_is_previewed_and_changes_nothing(acme):
    upload(acme, HEADER + "ann@x.com;Ann;Lee;Lyon\r\nbob@x.com;Bob;Ray;Paris\r\n")
    acme.wait_for_imports(1)
    before = exported(acme)
    tonight = HEADER + "ann@x.com;Ann;Lee;Lille\r\nbob@x.com;Bob;Ray;Paris\r\nbad;B;C;D\r\n"
    # When the customer uploads tonight's file into dryrun/ first
    assert upload(acme, tonight, name="dryrun/contacts.csv").startswith("226")
    preview, _ = acme.wait_for_imports(2)
    # Then it is compared, not applied, and the reports say what it would do
    assert preview["status"] == "previewed"
    assert exported(acme) == before
    with acme.ftp("acme-ftp", "acme-secret") as ftp:
        reports = ftp.nlst("reports")
    assert {f"contacts.csv.{preview['id']}.{end}" for end in
            ("json", "changes.csv", "rejected.csv")} <= set(reports)
    # And the real upload then does what the preview said
    upload(acme, tonight)
    imported, *_ = acme.wait_for_imports(3)
    assert imported["status"] == "imported"
    assert [imported[k] for k in ("created", "updated", "unchanged", "rejected_rows")] == [
        preview[k] for k in ("created", "updated", "unchanged", "rejected_rows")] == [0, 1, 1, 1]
    assert exported(acme) != before


@sqlite_only
def test_a_held_import_waits_for_an_operator_and_holds_the_next_files(acme, tmp_path):
    template = json.loads((DEMO / "template.json").read_text("utf-8"))
    path = tmp_path / "held.json"
    path.write_text(json.dumps({**template, "max_shrink": "off",
                                "hold": {"max_updated": "40%"}}))
    acme.cli("template", "set", "acme", str(path))
    upload(acme, HEADER + "".join(f"c{n}@x.com;C;D;Lyon\r\n" for n in range(5)))
    acme.wait_for_imports(1)
    before = exported(acme)
    # When a file would update every contact, it is held; the next file waits behind it
    upload(acme, HEADER + "".join(f"c{n}@x.com;C;D;Nice\r\n" for n in range(5)))
    held, _ = acme.wait_for_imports(2)
    assert held["status"] == "held"
    assert "100% of contacts would be updated, more than hold.max_updated 40%" in held["reason"]
    upload(acme, HEADER + "c9@x.com;C;D;Brest\r\n")
    acme.wait_for(lambda: acme.imports("acme")[0]["reason"] == (
        f"waiting for held import {held['id']}"))
    assert exported(acme) == before
    status = acme.cli("status", check=False).stdout
    assert "HELD IMPORTS (1)" in status and held["id"] in status
    # When the operator approves it, it is applied, then the waiting file
    acme.cli("imports", "approve", held["id"], "--by", "ops")
    acme.wait_for(lambda: [r["status"] for r in acme.imports("acme")] == ["imported"] * 3)
    contacts = acme.contacts("acme")
    assert contacts["c1@x.com"]["city"] == "Nice" and contacts["c9@x.com"]["city"] == "Brest"
