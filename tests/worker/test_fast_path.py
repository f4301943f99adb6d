"""The fast path (reading ahead, chunks, bulk SQL) against the reference path, row by row.

Randomized files full of duplicates, key conflicts, invalid cells and broken rows, with every
mode and matching key, are imported once by the Importer (the fast path, in chunks of a few
rows so that every chunk boundary is crossed, read in a thread or in a process of its own) and
once by `worker.reference`: both must leave the same contacts, counts and rejections.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete

from tests.worker.conftest import spool
from worker import reference
from worker.importer import Importer
from worker.store import Store, contacts, imports

COLUMNS = ("E-mail", "Id", "Tel", "Ville", "Opt")
CELLS = {
    "E-mail": ["a@x.fr", "B@x.fr ", "b@x.fr", "c@x.fr", "bad@", ""],
    "Id": ["E1", "E2", "E3", ""],
    "Tel": ["06 12 34 56 78", "+33612345679", "0712345670", "123", ""],
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
    }


row = st.one_of(
    st.tuples(*(st.sampled_from(CELLS[c]) for c in COLUMNS)).map(";".join),
    st.just("too;few"),
)
files = st.lists(row, max_size=30).map(
    lambda rows: ";".join(COLUMNS) + "\r\n" + "".join(r + "\r\n" for r in rows)
)
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
       separate=st.booleans())
def test_the_fast_path_leaves_what_the_reference_path_leaves(
    accounts, home, template, before, content, chunk_rows, separate
):
    registry, store = accounts
    with store.transaction() as connection:  # each example starts afresh
        connection.execute(delete(contacts))
        connection.execute(delete(imports))
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
    record = importer.run(spool(home, "fast", content))
    path = home.root / "file.csv"
    path.write_text(content, "utf-8")
    outcome = Collected()
    counts = reference.import_file(store, "ref", "second", path, template, outcome)
    # Then both leave the same contacts, counts and rejections
    assert store.engine.pool.checkedout() == 0
    assert record["status"] == "imported", record["reason"]
    assert list(store.export("fast")) == list(store.export("ref"))
    assert {k: record[k] for k in counts if k != "skipped"} == {
        k: v for k, v in counts.items() if k != "skipped"}
    assert record["skipped"] == counts["skipped"] + outcome.skipped
    assert record["rejections"] == outcome.rejections
