"""Export runs on each store: the file's lines, `changed` across imports, retention, retries,
and the round trip through `template from-sample`."""

import codecs
import gzip
import json
import threading
from datetime import UTC, datetime, timedelta

import pytest

from dropimport import remote
from schemas import export_event
from worker.exporter import Exporter, TryAgain
from worker.sample import propose, read_sample
from worker.write.locks import AccountBusy

from .conftest import HEADER, exported, spool

MONDAY = datetime(2026, 12, 7, 5, 0, tzinfo=UTC)
CONTACTS = (HEADER + "zoe@example.com;Zoë;=HYPERLINK(\"http://x\");Paris\r\n"
            "bob@example.com;Bob;-Dupont;\r\n"
            "ann@example.com;Ann;Lee;\"Lyon; Rhône\"\r\n")


def add(registry, name="nightly", account="acme", **settings):
    registry.set_export(account, name, {"schedule": "0 6 * * *", "to": "hosted", **settings})


def run(exporter, name="nightly", at=MONDAY, account="acme", **kwargs):
    return exporter.run(export_event(account, name, at), **kwargs)


@pytest.fixture
def exporter(importer, registry, demo_template):
    registry.set_template("acme", {**demo_template, "file": "delta.csv"})  # a night's changes
    importer.run(spool(importer.home, "acme", CONTACTS))
    return Exporter(importer.home, importer.store)


def test_a_hosted_csv_export_holds_every_contact_as_a_spreadsheet_opens_it_safely(
        exporter, registry, home):
    # Given an account of three contacts, one with a formula, one with a negative-looking name
    add(registry, file="contacts-{date}-{time}.csv")
    # When its export runs
    record = run(exporter)
    # Then exports/ holds the whole file, named for the planned time, cells neutralised
    assert (home.exports("acme") / "contacts-20261207-050000.csv").read_text("utf-8") == (
        "email;first_name;last_name;city;unsubscribed\n"
        "zoe@example.com;Zoë;\"'=HYPERLINK(\"\"http://x\"\")\";Paris;false\n"
        "bob@example.com;Bob;'-Dupont;;false\n"
        "ann@example.com;Ann;Lee;\"Lyon; Rhône\";false\n")
    # And the run is recorded done, with its counts and where it went
    assert record["status"] == "done" and record["rows"] == 3 and record["attempts"] == 1
    assert record["destination"] == "exports/contacts-20261207-050000.csv"
    assert record["bytes"] == (home.exports("acme") / "contacts-20261207-050000.csv").stat().st_size
    # And nothing is left in the work folder
    assert list(home.export_work.iterdir()) == []


def test_a_run_that_ended_is_not_run_again(exporter, registry, home):
    add(registry)
    run(exporter)
    path = home.exports("acme") / "nightly-20261207.csv"
    path.unlink()
    # When the same run is delivered again
    assert run(exporter) is None
    # Then it wrote nothing
    assert not path.exists()
    assert [r["status"] for r in exporter.store.export_runs("acme", "nightly")] == ["done"]


def test_an_export_waits_for_a_running_import_of_its_account(exporter, registry, home):
    add(registry)
    # Given an import of the account under way
    with exporter.store.account_lock("acme"), pytest.raises(AccountBusy):
        # When its export runs, it waits (the actor hands its message back for later)
        run(exporter)
    # Then the run waits, not counted a try, and nothing was written
    waiting = exporter.store.export_run("acme.nightly.20261207T050000Z")
    assert (waiting["status"], waiting["attempts"]) == ("queued", 0)
    assert not home.exports("acme").exists() or not list(home.exports("acme").iterdir())
    # And once the import is done, it runs
    assert run(exporter)["attempts"] == 1


def test_chosen_fields_as_json_lines_compressed(exporter, registry, home):
    add(registry, fields=["email", "city", "unsubscribed", "updated_at"], format="jsonl",
        gzip=True, file="all.jsonl")
    run(exporter)
    lines = gzip.decompress((home.exports("acme") / "all.jsonl.gz").read_bytes()).splitlines()
    first = json.loads(lines[0])
    assert first.keys() == {"email", "city", "unsubscribed", "updated_at"}
    assert first["email"] == "zoe@example.com" and first["unsubscribed"] is False
    assert first["updated_at"].endswith("Z")
    assert [json.loads(line)["city"] for line in lines] == ["Paris", None, "Lyon; Rhône"]


@pytest.mark.parametrize(("encoding", "start", "zoe"), [
    ("utf-8-sig", codecs.BOM_UTF8, "Zoë".encode()),
    ("cp1252", b"email", "Zoë".encode("cp1252")),
])
def test_encodings(exporter, registry, home, encoding, start, zoe):
    add(registry, encoding=encoding, delimiter=",", fields=["email", "first_name"])
    run(exporter)
    data = (home.exports("acme") / "nightly-20261207.csv").read_bytes()
    assert data.startswith(start)
    assert b"zoe@example.com," + zoe + b"\n" in data


def test_cp1252_writes_a_question_mark_for_what_it_lacks(importer, registry, home):
    importer.run(spool(home, "acme", HEADER + "li@example.com;李;Wei;\r\n"))
    add(registry, encoding="cp1252", fields=["email", "first_name"])
    run(Exporter(home, importer.store))
    assert (home.exports("acme") / "nightly-20261207.csv").read_bytes() == (
        b"email;first_name\nli@example.com;?\n")


def test_a_changed_export_holds_what_changed_since_its_last_run(exporter, registry, home):
    add(registry, only="changed", file="changed-{date}.csv", fields=["email", "first_name"])
    # The first run: every contact
    assert run(exporter)["rows"] == 3
    # When a nightly import changes one contact, leaves one as it is, adds one
    exporter_import(exporter, home, HEADER + "zoe@example.com;Zoé;=HYPERLINK(\"http://x\");Paris\r\n"
                    "bob@example.com;Bob;-Dupont;\r\n"
                    "new@example.com;New;One;Nice\r\n")
    # Then the next run holds those two only
    second = run(exporter, at=MONDAY + timedelta(days=1))
    assert second["rows"] == 2
    assert (home.exports("acme") / "changed-20261208.csv").read_text().splitlines()[1:] == [
        "zoe@example.com;Zoé", "new@example.com;New"]
    # And a run after no change holds none
    third = run(exporter, at=MONDAY + timedelta(days=2))
    assert third["rows"] == 0
    assert (home.exports("acme") / "changed-20261209.csv").read_text() == "email;first_name\n"
    assert third["since"] == second["snapshot"]


def exporter_import(exporter, home, content):
    from worker.importer import Importer

    record = Importer(home, exporter.store).run(spool(home, "acme", content, file="delta.csv"))
    assert record["status"] == "imported", record["reason"]


def test_a_contact_changed_during_an_export_is_in_the_next_file_only(
        exporter, registry, home, monkeypatch):
    add(registry, only="changed", file="changed-{date}.csv", fields=["email", "first_name"])
    run(exporter)
    exporter_import(exporter, home, HEADER + "bob@example.com;Robert;-Dupont;\r\n")
    # Given an import that changes ann while the next export streams its snapshot
    streaming = exporter.store.export_contacts
    changed = threading.Event()

    def export_contacts(account, columns, only, since, lines, write):
        def write_then_import(data):
            if not changed.is_set():
                changed.set()
                exporter_import(exporter, home, HEADER + "ann@example.com;Annie;Lee;Lyon\r\n")
            return write(data)
        return streaming(account, columns, only, since, lines, write_then_import)

    monkeypatch.setattr(exporter.store, "export_contacts", export_contacts)
    second = run(exporter, at=MONDAY + timedelta(days=1))
    monkeypatch.undo()
    assert changed.is_set()
    # Then that export holds bob (changed before it) and not ann (changed after its snapshot)
    assert (home.exports("acme") / "changed-20261208.csv").read_text().splitlines()[1:] == [
        "bob@example.com;Robert"]
    assert second["rows"] == 1
    # And the next one holds ann, not bob again
    run(exporter, at=MONDAY + timedelta(days=2))
    assert (home.exports("acme") / "changed-20261209.csv").read_text().splitlines()[1:] == [
        "ann@example.com;Annie"]


def test_an_unsubscribed_export_holds_the_unsubscribed_contacts(importer, registry, home,
                                                                 demo_template):
    registry.set_template("acme", {**demo_template, "file": "optout.csv", "mode": "unsubscribe"})
    importer.run(spool(home, "acme", CONTACTS))
    importer.run(spool(home, "acme", HEADER + "bob@example.com;;;\r\n", file="optout.csv"))
    add(registry, only="unsubscribed", fields=["email", "unsubscribed"])
    assert run(Exporter(home, importer.store))["rows"] == 1
    assert (home.exports("acme") / "nightly-20261207.csv").read_text() == (
        "email;unsubscribed\nbob@example.com;true\n")


def test_hosted_files_past_keep_are_deleted_with_their_markers(exporter, registry, home):
    add(registry, keep=2, marker=".done")
    (home.exports("acme")).mkdir(parents=True, exist_ok=True)
    (home.exports("acme") / "other.csv").write_text("not ours")
    for day in range(4):
        run(exporter, at=MONDAY + timedelta(days=day))
    assert sorted(p.name for p in home.exports("acme").iterdir()) == [
        "nightly-20261209.csv", "nightly-20261209.csv.done",
        "nightly-20261210.csv", "nightly-20261210.csv.done", "other.csv"]


def test_an_export_removed_after_it_was_planned_is_recorded_failed(exporter):
    record = run(exporter, name="gone")
    assert record["status"] == "failed"
    assert "has no export 'gone'" in record["error"]


class Server:
    """A customer's server as the Exporter's `connect` opens it, recording uploads."""

    def __init__(self, error=None):
        self.error = error
        self.uploads = {}

    def __call__(self, server, password):
        assert password == "s3cret"
        if self.error:
            raise self.error
        return self

    def upload(self, path, name):
        self.uploads[name] = path.read_bytes()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass


SERVER = {"protocol": "sftp", "host": "files.example.com", "port": 22, "user": "acme",
          "secret": "env:EXPORT_PASSWORD", "directory": "/in"}


def pushing(exporter, server):
    return Exporter(exporter.home, exporter.store, connect=server,
                    environ={"EXPORT_PASSWORD": "s3cret"})


def test_a_pushed_export_uploads_the_file_then_its_marker(exporter, registry):
    add(registry, to=SERVER, marker=".ok", fields=["email"])
    server = Server()
    record = run(pushing(exporter, server))
    assert server.uploads == {
        "nightly-20261207.csv": b"email\nzoe@example.com\nbob@example.com\nann@example.com\n",
        "nightly-20261207.csv.ok": b""}
    assert record["destination"] == "sftp://acme@files.example.com:22/in/nightly-20261207.csv"


def test_a_server_down_is_tried_again_then_failed_and_notified(exporter, registry):
    add(registry, to=SERVER)
    notified = []
    down = pushing(exporter, Server(remote.RemoteError("files.example.com:22: refused")))
    down.notifications.exported = notified.append
    with pytest.raises(TryAgain, match="refused"):
        run(down, last_attempt=False)
    assert exporter.store.export_run("acme.nightly.20261207T050000Z")["status"] == "retrying"
    assert notified == []
    # The last attempt records it failed, and notifies it
    record = run(down, last_attempt=True)
    assert record["status"] == "failed" and record["attempts"] == 2
    assert notified == [record]


def test_a_refused_login_fails_at_once(exporter, registry):
    add(registry, to=SERVER)
    record = run(pushing(exporter, Server(remote.LoginRefused("login refused"))),
                 last_attempt=False)
    assert record["status"] == "failed" and "login refused" in record["error"]


def test_an_export_imported_back_gives_the_same_contacts(exporter, registry, home, importer):
    # Given a full export of the account
    add(registry, fields=["email", "first_name", "last_name", "city"])
    run(exporter)
    path = home.exports("acme") / "nightly-20261207.csv"
    # When another account imports it with the template proposed from it
    template = propose(read_sample(path))
    template["file"] = "back.csv"
    registry.set_template("globex", template)
    record = importer.run(spool(home, "globex", path.read_bytes(), file="back.csv"))
    assert record["status"] == "imported", record
    # Then it holds the same contacts
    assert exported(importer.store, "globex") == exported(importer.store, "acme")


@pytest.mark.parametrize(("city", "written"), [
    ("=1+1", "'=1+1"), ("+33612345678", "+33612345678"), ("-12.5", "-12.5"),
    ("-12-5", "'-12-5"), ("@SUM(A1)", "'@SUM(A1)"), ("+", "'+"), ("Paris", "Paris"),
    ("'=already", "'=already"), ("Zoë=", "Zoë="),
])
def test_each_store_makes_a_cell_safe_alike(importer, registry, home, city, written):
    importer.run(spool(home, "acme", HEADER + f"jo@example.com;Jo;Doe;{city}\r\n"))
    add(registry, fields=["email", "city"])
    run(Exporter(home, importer.store))
    assert (home.exports("acme") / "nightly-20261207.csv").read_text() == (
        f"email;city\njo@example.com;{written}\n")
