"""The fast path (reading ahead, chunks, bulk SQL) against the reference path, row by row.

Randomized files full of duplicates, key conflicts, invalid cells and broken rows, with every
mode and matching key, are imported once by the Importer (the fast path, in chunks of a few
rows so that every chunk boundary is crossed, read in a thread or in a process of its own) and
once by `tests.worker.reference`: both must leave the same contacts, counts and rejections.
"""

from contextlib import contextmanager

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select

from tests.worker import reference
from tests.worker.conftest import spool
from worker.importer import Importer
from worker.write.changes import Changes
from worker.write.fingerprints import fingerprints
from worker.write.postgres import PostgresWrites
from worker.write.sqlite import SQLiteWrites
from worker.write.store import Store
from worker.write.tables import contacts, imports
from worker.write.writes import Writes

COLUMNS = ("E-mail", "Id", "Tel", "Ville", "Opt")
CELLS = {
    # The shapes each converter reads quickly or leaves to its library (worker/read/fields.py):
    # a Latin local part, an internationalised domain in both spellings, phones of every
    # common shape, invalid ones decided without phonenumbers or by it.
    "E-mail": ["a@x.fr", "B@x.fr ", "b@x.fr", "c@x.fr", "bad@", "", "Zoé@x.fr", "zoé@x.fr",
               "a@société.fr", "A@xn--socit-esab.fr"],
    "Id": ["E1", "E2", "E3", ""],
    "Tel": ["06 12 34 56 78", "+33612345679", "0712345670", "123", "", "+33 (0)6 12 34 56 78",
            "0033 6 12 34 56 79", "+32 479 12 34 56", "+33 6 93 12 34 56", "Tél. 0612345678"],
    "Ville": ["Paris", "Lyon", "Zoé", ""],
    "Opt": ["1", "0", "oui", "peut-être", ""],
}


def template(match_on, mode, duplicates, empty_cells, invalid_phone):
    return {
        "file": "contacts.csv",
        "columns": list(COLUMNS),
        "format": {"encoding": "utf-8", "delimiter": ";"},
        "fields": {
            "email": {"column": "E-mail", "type": "email"},
            "external_id": {"column": "Id", "type": "text"},
            "phone": {"column": "Tel", "type": "phone", "region": "FR",
                      "invalid": invalid_phone},
            "city": {"column": "Ville", "type": "text"},
            "optin": {"column": "Opt", "type": "boolean"},
        },
        "match_on": match_on, "mode": mode, "duplicates": duplicates,
        "empty_cells": empty_cells, "empty_file": "ignore",
        "max_shrink": "off",  # a second file may have any number of rows
    }


def csv_file(rows):
    """The text of a file of `rows` (each its cells joined by ";"), with its header."""
    return ";".join(COLUMNS) + "\r\n" + "".join(r + "\r\n" for r in rows)


def emptied(store):
    """Start an example afresh: no contacts, no import records."""
    with store.transaction() as connection:
        connection.execute(delete(contacts))
        connection.execute(delete(imports))


row = st.one_of(
    st.tuples(*(st.sampled_from(CELLS[c]) for c in COLUMNS)).map(";".join),
    st.just("too;few"),
)
files = st.lists(row, max_size=30).map(csv_file)
templates = st.builds(
    template,
    match_on=st.sampled_from(["email", "external_id", "phone"]),
    mode=st.sampled_from(["upsert", "upsert", "create_only", "update_only", "unsubscribe"]),
    duplicates=st.sampled_from(["last_wins", "first_wins", "reject"]),
    empty_cells=st.sampled_from(["keep", "clear"]),
    invalid_phone=st.sampled_from(["reject_row", "empty"]),
)


class Collected:
    def __init__(self):
        self.rejections, self.skipped = [], 0

    def reject(self, rejection):
        self.rejections.append(rejection.as_dict())

    def skip(self):
        self.skipped += 1


@pytest.fixture
def accounts(registry, settings):
    registry.create("fast", "fast", "pw")
    registry.create("ref", "ref", "pw")
    store = Store(settings.database_url)
    yield registry, store
    store.close()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(template=templates, before=files, content=files, chunk_rows=st.integers(1, 7),
       separate=st.booleans(), learning=st.sampled_from([None, 1, 100]))
def test_the_fast_path_leaves_what_the_reference_path_leaves(
    accounts, home, template, before, content, chunk_rows, separate, learning
):
    registry, store = accounts
    emptied(store)
    # Given both accounts holding the same contacts, from a first file
    stored_before = template | {"mode": "upsert", "duplicates": "last_wins"}
    for account in ("fast", "ref"):
        registry.set_template(account, template)
        path = home.root / "before.csv"
        path.write_text(before, "utf-8")
        reference.import_file(store, account, "first", path, stored_before, Collected())
    assert list(store.export("fast")) == list(store.export("ref"))
    # When one imports the file through the fast path, the other through the reference
    importer = Importer(home, store, chunk_rows=chunk_rows,
                        separate_process_bytes=0 if separate else 1 << 30)
    # Then both leave the same contacts, counts and rejections
    with learned(learning):
        imported_alike(importer, store, home, template, "second", content)
    assert store.engine.pool.checkedout() == 0


@contextmanager
def learned(reads):
    """Unless `reads` is None, the fast path reads the account's key values from the first
    miss on, `reads` values per miss (Writes._learn): pages of a few values, while the
    import writes (1), or all of them at once, so that the rows that find their contact by
    their match key alone are upserted by the database (100)."""
    with pytest.MonkeyPatch.context() as patch:
        if reads is not None:
            patch.setattr(Writes, "MISSES", 1)
            patch.setattr(Writes, "READS_PER_MISS", reads)
        yield


def imported_alike(importer, store, home, template, name, text):
    """Import `text` into "fast" by `importer` and into "ref" by the reference path; check
    that both leave the same contacts, counts and rejections."""
    record = importer.run(spool(home, "fast", text))
    path = home.root / f"{name}.csv"
    path.write_text(text, "utf-8")
    outcome = Collected()
    counts = reference.import_file(store, "ref", name, path, template, outcome)
    assert record["status"] == "imported", record["reason"]
    assert list(store.export("fast")) == list(store.export("ref"))
    assert {k: record[k] for k in counts if k != "skipped"} == {
        k: v for k, v in counts.items() if k != "skipped"}
    assert record["skipped"] == counts["skipped"] + outcome.skipped
    assert record["rejections"] == outcome.rejections


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(template=templates, before=st.lists(row, max_size=20),
       picks=st.lists(st.one_of(st.integers(0, 19), row), max_size=20),
       chunk_rows=st.integers(1, 7), learning=st.sampled_from([None, 1, 100]))
def test_a_file_imported_again_leaves_what_the_reference_path_leaves(
    accounts, home, template, before, picks, chunk_rows, learning
):
    registry, store = accounts
    emptied(store)
    # Given a second file made mostly of the first one's rows (kept, moved, repeated)
    content = [before[pick % len(before)] if isinstance(pick, int) else pick
               for pick in picks if not isinstance(pick, int) or before]
    first, second = csv_file(before), csv_file(content)
    assume(first != second)  # an identical file is recorded without being read
    for account in ("fast", "ref"):
        registry.set_template(account, template)
    # When the fast path imports both, read by the process that looks up the fingerprints
    # the first import left, and the reference path imports both
    importer = Importer(home, store, chunk_rows=chunk_rows, separate_process_bytes=0)
    # Then each leaves the same contacts, counts and rejections
    for name, text in (("first", first), ("second", second)):
        with learned(learning):
            imported_alike(importer, store, home, template, name, text)


def test_a_nightly_re_upload_changes_only_its_changed_rows(accounts, home):
    registry, store = accounts
    nightly = template("email", "upsert", "last_wins", "keep", "empty")
    registry.set_template("fast", nightly)
    rows = [f"{n}@x.fr;E{n};06 12 34 {n // 10 % 10}{n % 10} 78;Paris;1" for n in range(40)]
    importer = Importer(home, store, chunk_rows=10, separate_process_bytes=0)

    def upload(rows):
        return importer.run(spool(home, "fast", csv_file(rows)))

    def fingerprints():
        with store.engine.connect() as connection:
            return dict(connection.execute(select(contacts.c.email, contacts.c.fingerprint)).all())

    # Given contacts imported by the reference path, which leaves no fingerprint
    path = home.root / "first.csv"
    path.write_text(csv_file(rows), "utf-8")
    reference.import_file(store, "fast", "first", path, nightly, Collected())
    assert set(fingerprints().values()) == {None}
    # When the same rows come, in another order: each is unchanged, and now fingerprinted
    record = upload(rows[::-1])
    assert (record["unchanged"], record["updated"]) == (40, 0)
    assert None not in fingerprints().values()
    before = list(store.export("fast"))
    # When they come again, two of them changed: only those two are updated
    rows[5] = rows[5].replace("Paris", "Lyon")
    rows[30] = rows[30].replace(";1", ";0")
    record = upload(rows[::-1])
    assert (record["unchanged"], record["updated"], record["created"]) == (38, 2, 0)
    after = list(store.export("fast"))
    was = {contact["email"]: contact for contact in before}
    assert [c for c in after if c not in before] == [
        {**was["30@x.fr"], "optin": False}, {**was["5@x.fr"], "city": "Lyon"}]


def test_an_import_on_sqlite_widens_the_page_cache_then_gives_it_back(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'contacts.db'}")
    try:
        with store.transaction() as connection:
            driver = connection.connection.driver_connection

            def cache():
                return driver.execute("PRAGMA cache_size").fetchone()[0]

            before = cache()
            writes = store.writes(connection, "acme", "20261125-083512-1-9f3a", "email", "upsert")
            assert cache() == -SQLiteWrites.CACHE_KIB < before
            writes.close()
            assert cache() == before
    finally:
        store.close()


def test_the_contacts_an_import_creates_and_updates_bear_one_time(accounts, home):
    registry, store = accounts
    registry.set_template("fast", template("email", "upsert", "last_wins", "keep", "empty"))
    importer = Importer(home, store, chunk_rows=10, separate_process_bytes=0)
    header = ";".join(COLUMNS) + "\r\n"
    importer.run(spool(home, "fast", header + "1@x.fr;E1;;Paris;1\r\n"))
    record = importer.run(spool(home, "fast", header + (
        "1@x.fr;E1;;Lyon;1\r\n2@x.fr;E2;;Nice;0\r\n")))
    assert (record["created"], record["updated"]) == (1, 1)
    with store.engine.connect() as connection:
        times = connection.execute(select(contacts.c.email, contacts.c.created_at,
                                          contacts.c.updated_at).order_by(contacts.c.email)).all()
    [(_, first_created, updated), (_, created, created_too)] = times
    assert updated == created == created_too > first_created


def test_fingerprints_are_looked_up_only_in_an_account_holding_contacts(accounts, home):
    registry, store = accounts
    registry.set_template("fast", template("email", "upsert", "last_wins", "keep", "empty"))
    importer = Importer(home, store, chunk_rows=10, separate_process_bytes=0)
    with fingerprints(store.shared_url, "fast", "email") as lookup:
        assert lookup is None  # a first import: no row can find its contact
    header = ";".join(COLUMNS) + "\r\n"
    importer.run(spool(home, "fast", header + "1@x.fr;E1;;Paris;1\r\n2@x.fr;E2;;Nice;0\r\n"))
    with store.engine.connect() as connection:
        stored = dict(connection.execute(select(contacts.c.email, contacts.c.fingerprint)).all())
    with fingerprints(store.shared_url, "fast", "email") as lookup:
        assert lookup({"1@x.fr", "3@x.fr"}) == {"1@x.fr": stored["1@x.fr"]}
    with fingerprints(store.shared_url, "ref", "email") as lookup:
        assert lookup is None  # another account's contacts are not its


def test_values_the_account_cannot_hold_are_no_longer_looked_up(accounts, home, monkeypatch):
    registry, store = accounts
    registry.set_template("fast", template("email", "upsert", "last_wins", "keep", "empty"))
    monkeypatch.setattr(Writes, "MISSES", 5)
    monkeypatch.setattr(Writes, "READS_PER_MISS", 2)
    asked = []
    for kind in (PostgresWrites, SQLiteWrites):
        def spied(writes, keys, lookup=kind._lookup):
            asked.extend(keys.get("email", ()))
            return lookup(writes, keys)

        monkeypatch.setattr(kind, "_lookup", spied)
    importer = Importer(home, store, chunk_rows=10, separate_process_bytes=1 << 30)
    header = ";".join(COLUMNS) + "\r\n"
    importer.run(spool(home, "fast", header + "".join(
        f"{n}@x.fr;E{n};;Paris;1\r\n" for n in range(30))))
    if store.engine.dialect.name == "postgresql":
        # PostgreSQL reads them all at once, when the reads allowed reach the planner's
        # estimate of their number (PostgresWrites._read): made on the table's statistics
        with store.transaction() as connection:
            connection.exec_driver_sql("ANALYZE contacts")
    # When a file updates those 30 contacts, then brings 30 new ones, the last of them the
    # repeat of a new contact of a chunk written while the account's e-mails were read
    rows = [f"{n}@x.fr;E{n};;Lyon;1" for n in (*range(30), *range(100, 129))]
    record = importer.run(spool(home, "fast", header + "".join(
        r + "\r\n" for r in (*rows, "100@x.fr;E100;;Nice;0"))))
    # Then the new e-mails are looked up until the account's 30 are read, no longer after:
    # 20 a chunk from the first chunk that misses them; on PostgreSQL all 30 at that chunk,
    # its 10 misses of 10 allowing 20 reads, and 80 more should the 40 rows read so far be
    # followed by as many as missed
    assert (record["status"], record["created"], record["updated"]) == ("imported", 29, 31)
    read_at = 110 if store.engine.dialect.name == "postgresql" else 120
    assert set(asked) == {f"{n}@x.fr" for n in (*range(30), *range(100, read_at))}
    assert {c["email"]: c["city"] for c in store.export("fast")}["100@x.fr"] == "Nice"


#: Rows of more values than `row`'s: many find their contact by their e-mail alone, with
#: other key values that no contact holds, which the database upserts by itself.
wide_row = st.tuples(
    st.sampled_from([f"{n}@x.fr" for n in range(8)] + ["B@x.fr ", "bad@", ""]),
    st.sampled_from([f"E{n}" for n in range(30)] + [""]),
    st.sampled_from([f"06 12 34 56 {n:02d}" for n in range(30)] + ["123", ""]),
    st.sampled_from(CELLS["Ville"]), st.sampled_from(CELLS["Opt"]),
).map(";".join)


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(match_on=st.sampled_from(["email", "external_id", "phone"]),
       before=st.lists(wide_row, min_size=5, max_size=20),
       content=st.lists(wide_row, min_size=5, max_size=30),
       chunk_rows=st.integers(1, 7), empty_cells=st.sampled_from(["keep", "clear"]))
def test_the_rows_the_database_upserts_leave_what_the_reference_path_leaves(
    accounts, home, match_on, before, content, chunk_rows, empty_cells
):
    registry, store = accounts
    emptied(store)
    upsert = template(match_on, "upsert", "last_wins", empty_cells, "empty")
    first, second = csv_file(before), csv_file(content)
    for account in ("fast", "ref"):
        registry.set_template(account, upsert)
        path = home.root / "before.csv"
        path.write_text(first, "utf-8")
        reference.import_file(store, account, "first", path, upsert, Collected())
    importer = Importer(home, store, chunk_rows=chunk_rows, separate_process_bytes=1 << 30)
    with learned(100):
        imported_alike(importer, store, home, upsert, "second", second)


def test_the_database_upserts_the_rows_it_can_match_alone(accounts, home, monkeypatch):
    registry, store = accounts
    registry.set_template("fast", template("email", "upsert", "last_wins", "keep", "empty"))
    registry.set_template("ref", template("email", "upsert", "last_wins", "keep", "empty"))
    upserted = []

    def spied(writes, cursor, plain, upsert=PostgresWrites._upsert):
        upserted.extend(line.split("\t")[0] for line in plain.decode().splitlines())
        return upsert(writes, cursor, plain)

    monkeypatch.setattr(PostgresWrites, "_upsert", spied)
    phones = [f"06 12 34 {n // 10}{n % 10} 78" for n in range(40)]
    first = csv_file(f"{n}@x.fr;;{phones[n]};Paris;1" for n in range(20))
    # Given an account holding 20 contacts, each with an e-mail and a phone
    for account in ("fast", "ref"):
        path = home.root / "first.csv"
        path.write_text(first, "utf-8")
        reference.import_file(store, account, "first", path, registry.template(
            "ref", "contacts.csv"), Collected())
    # When a file gives them new phones and cities (a row takes the phone an earlier one
    # lets go, in an earlier chunk or in the same; another that of a contact which lets it
    # go later; contact 1 comes twice; contact 5 is unchanged), then brings new contacts,
    # one with a phone held (e-mails missed: the new ones are then known new, and created)
    rows = [f"{n}@x.fr;;{phones[n + 20]};Lyon;1" for n in range(20)]
    rows[5] = f"5@x.fr;;{phones[5]};Paris;1"
    rows[8] = f"8@x.fr;;{phones[3]};Lyon;1"
    rows[12] = f"12@x.fr;;{phones[18]};Lyon;1"
    rows[16] = f"41@x.fr;;{phones[15]};Lyon;1"  # in the chunk of contact 15
    rows[17] = f"42@x.fr;;{phones[19]};Lyon;1"  # rejected: contact 19 lets it go after
    rows += ["1@x.fr;;;Nice;0", "30@x.fr;;;Brest;1", "31@x.fr;;06 99 99 99 99;Brest;1",
             f"32@x.fr;;{phones[9]};Brest;1"]
    importer = Importer(home, store, chunk_rows=5, separate_process_bytes=1 << 30)
    # Then the fast path leaves what the reference path leaves, the database having upserted
    # the rows whose contact only their e-mail finds, once every stored phone is read, but
    # for the rows of contacts 15 and 19, whose phones others look up
    with learned(100):
        imported_alike(importer, store, home, registry.template("ref", "contacts.csv"),
                       "second", csv_file(rows))
    if store.engine.dialect.name == "postgresql":
        assert upserted == [f"{n}@x.fr" for n in (6, 7, 9, 10, 11, 13, 14, 18)]


def test_new_contacts_are_inserted_as_their_rows_are(accounts, home, monkeypatch):
    registry, store = accounts
    first_import = template("email", "upsert", "last_wins", "keep", "empty")
    for account in ("fast", "ref"):
        registry.set_template(account, first_import)
    batched = []

    def spied(batch, contact, quick=Changes.quick):
        batched.append(contact.key)
        return quick(batch, contact)

    monkeypatch.setattr(Changes, "quick", spied)
    # Given an empty account (a first import: no key value can be held), when a file brings
    # contacts, two of which share a phone and two an e-mail
    rows = [f"{n}@x.fr;E{n};06 12 34 56 {n:02d};Paris;1" for n in range(8)]
    rows[5] = "5@x.fr;E5;06 12 34 56 03;Lyon;0"  # contact 3's phone: rejected
    rows[6] = "4@x.fr;E6;;Nice;1"  # contact 4 again, with another external id
    importer = Importer(home, store, chunk_rows=10, separate_process_bytes=1 << 30)
    # Then it leaves what the reference path leaves, only the rows sharing a value having
    # gone through a Batch: the others are inserted as they are
    imported_alike(importer, store, home, first_import, "first", csv_file(rows))
    assert sorted(batched) == ["3@x.fr", "4@x.fr", "4@x.fr", "5@x.fr"]
    assert len(list(store.export("fast"))) == 6


def test_new_contacts_are_inserted_once_upserts_create_enough(accounts, home, monkeypatch):
    registry, store = accounts
    nightly = template("email", "upsert", "last_wins", "keep", "empty")
    registry.set_template("fast", nightly)
    monkeypatch.setattr(Writes, "MISSES", 5)
    monkeypatch.setattr(Writes, "READS_PER_MISS", 2)
    upserted = []

    def spied(writes, cursor, plain, upsert=PostgresWrites._upsert):
        upserted.extend(line.split("\t")[0] for line in plain.decode().splitlines())
        return upsert(writes, cursor, plain)

    monkeypatch.setattr(PostgresWrites, "_upsert", spied)
    # Given an account holding 10 contacts known by their e-mail alone
    first = csv_file(f"{n}@x.fr;;;Paris;1" for n in range(10))
    for account in ("fast", "ref"):
        path = home.root / "first.csv"
        path.write_text(first, "utf-8")
        reference.import_file(store, account, "first", path, nightly, Collected())
    if store.engine.dialect.name == "postgresql":  # the estimate of its e-mails, 10
        with store.transaction() as connection:
            connection.exec_driver_sql("ANALYZE contacts")
    # When a file updates them, then brings 30 new contacts, in chunks of 5
    rows = [f"{n}@x.fr;;;Lyon;1" for n in (*range(10), *range(100, 130))]
    importer = Importer(home, store, chunk_rows=5, separate_process_bytes=1 << 30)
    # Then it leaves what the reference path leaves; on PostgreSQL, the database upserts
    # every row till its upserts have created 5 contacts (misses of the match key: the
    # account's e-mails are then read), the new contacts after are inserted as they are
    imported_alike(importer, store, home, nightly, "second", csv_file(rows))
    if store.engine.dialect.name == "postgresql":
        assert set(upserted) >= {f"{n}@x.fr" for n in range(10)} | {"100@x.fr"}
        assert not set(upserted) & {f"{n}@x.fr" for n in range(115, 130)}
