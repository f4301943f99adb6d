"""The benchmark (bench/): its generated data, and one run end to end on tiny sizes.

Targets are reported by the benchmark, never asserted here: these tests check that it measures
the right thing, not how fast.
"""

import csv
import json
import re
import secrets
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from bench import data, report, workloads
from tests.conftest import POSTGRES_ADMIN_URL
from worker import csvfile
from worker import template as engine

ROOT = Path(__file__).parent.parent
TEMPLATE = ROOT / "bench" / "template.json"


class Outcome:
    """What the template engine tells of rejected and skipped rows."""

    def __init__(self):
        self.rejected = []
        self.skipped = 0

    def reject(self, rejection):
        self.rejected.append(rejection)

    def skip(self):
        self.skipped += 1


def read(path):
    with open(path, encoding="utf-8", newline="") as file:
        return list(csv.reader(file, delimiter=";"))


def national(phone):
    """The 10 digits of a generated phone, whatever its spelling."""
    digits = re.sub(r"\D", "", phone)
    return ("0" + digits[2:] if digits.startswith("33") else digits)[:10]


def test_the_same_seed_writes_the_same_bytes(tmp_path):
    first = data.write(tmp_path / "a.csv", 7, 300).read_bytes()
    assert data.write(tmp_path / "b.csv", 7, 300).read_bytes() == first
    assert data.write(tmp_path / "c.csv", 8, 300).read_bytes() != first


def test_a_file_has_the_ten_columns_and_n_messy_rows(tmp_path):
    # When a file of 2000 rows is generated
    header, *rows = read(data.write(tmp_path / "contacts.csv", 7, 2000))
    # Then it has the header and 2000 rows of 10 cells
    assert tuple(header) == data.COLUMNS and len(data.COLUMNS) == 10
    assert len(rows) == 2000 and {len(row) for row in rows} == {10}
    emails, firsts, lasts, phones, _, zips, births, optins, _, _ = zip(*rows, strict=True)
    # And it is as messy as customers' files: e-mails in mixed case or with stray spaces,
    # accented names, phones in national format, French dates, 0/1 opt-ins
    assert any(e != e.strip() for e in emails) and any(e != e.lower() for e in emails)
    assert {"Chloé", "Noémie", "Zoë", "François"} & set(firsts)
    assert any(re.search("[éèêëïôûœŒ]", name) for name in lasts)
    assert any(re.fullmatch(r"0[67]( \d\d){4}", phone) for phone in phones)
    assert all(re.fullmatch(r"\d{5}", z) for z in zips)
    assert all(re.fullmatch(r"\d\d/\d\d/\d{4}", b) for b in births)
    assert set(optins) == {"0", "1"}


def test_a_later_version_keeps_the_people_and_changes_some_details():
    before = list(data.rows(7, 1000))
    after = list(data.rows(7, 1000, changed=0.1))
    # The same people in the same order: e-mail, names and birth date
    assert [(r[0], r[1], r[2], r[6]) for r in before] == [(r[0], r[1], r[2], r[6]) for r in after]
    # About a tenth of them with other details
    assert 50 < sum(b != a for b, a in zip(before, after, strict=True)) < 150
    # And no phone number (a contact key) shared by two contacts, before or after
    owners = {}
    for index, row in [*enumerate(before), *enumerate(after)]:
        if row[3]:
            owners.setdefault(national(row[3]), set()).add(index)
    assert {len(indexes) for indexes in owners.values()} == {1}


def test_the_bench_template_imports_every_generated_row(tmp_path):
    # Given the benchmark's template, valid for the worker, and a generated file
    template = engine.check(json.loads(TEMPLATE.read_text("utf-8")))
    assert tuple(template["columns"]) == data.COLUMNS
    path = data.write(tmp_path / "contacts.csv", 7, 2000)
    # When the worker's template engine reads the file
    outcome = Outcome()
    with csvfile.reading(path, "utf-8", ";") as (_, rows):
        plan = engine.plan(template, next(rows)[1])
        contacts = list(engine.contacts(plan, rows, outcome))
    # Then every row is a contact: the figures are about importing, not rejecting
    assert len(contacts) == 2000 and outcome.rejected == []
    assert len({contact.key for contact in contacts}) == 2000
    fields = contacts[0].fields
    assert re.fullmatch(r"\+33\d{9}", fields["phone"]) and isinstance(fields["optin"], bool)


def test_the_workloads_not_built_yet_are_listed_as_not_run():
    results = [workloads.run(workload, rig=None) for workload in workloads.select("w6,W4")]
    assert [result.id for result in results] == ["W4", "W6"]
    assert report.table(results).count("not run: for later") == 2
    assert report.document(results)["workloads"]["W6"]["status"] == "not run"
    with pytest.raises(ValueError, match=r"unknown workload\(s\) W7"):
        workloads.select("W1,W7")


def test_the_benchmark_runs_end_to_end(tmp_path):
    # Given a database name of this test's own, and tiny sizes
    name = f"dropimport_bench_test_{secrets.token_hex(4)}"
    figures = tmp_path / "results.json"
    # When the benchmark runs three workloads against the real PostgreSQL
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--rows", "300", "--big-base", "1000",
         "--only", "W1,W3,S", "--json", str(figures), "--database-url", POSTGRES_ADMIN_URL,
         "--database-name", name],
        cwd=ROOT, capture_output=True, text=True, timeout=100, check=False,
    )
    assert done.returncode == 0, done.stderr
    # Then it prints one table and says where the figures went
    assert "W1 first import" in done.stdout and "baseline" in done.stdout
    assert f"figures written to {figures}" in done.stdout
    # And the JSON holds the same figures, every workload measured against its target
    results = json.loads(figures.read_text("utf-8"))
    assert {"command", "rows", "big_base", "seed", "machine", "workloads"} <= results.keys()
    assert results["rows"] == 300 and results["machine"]["postgresql"]
    workloads = results["workloads"]
    assert list(workloads) == ["W1", "W3", "S"]
    for workload in workloads.values():
        assert workload["status"] == "run"
        assert {"name", "target", "ratio", "met", "runs"} <= workload.keys()
        for run in workload["runs"]:
            assert {"label", "rows", "seconds", "rows_per_s", "peak_rss_mb", "database",
                    "counts"} <= run.keys()
            assert run["rows"] == 300 and run["peak_rss_mb"] > 0
    assert [run["database"] for run in workloads["S"]["runs"]] == ["sqlite"]
    assert workloads["W1"]["runs"][0]["counts"]["created"] == 300
    # And W3 found its 2% of changed rows among rows already stored
    nightly = workloads["W3"]["runs"][0]["counts"]
    assert nightly["created"] == nightly["rejected_rows"] == 0
    assert 0 < nightly["updated"] < 30 and nightly["updated"] + nightly["unchanged"] == 300
    # And its database is gone
    with psycopg.connect(POSTGRES_ADMIN_URL) as connection:
        query = "SELECT 1 FROM pg_database WHERE datname = %s"
        assert connection.execute(query, (name,)).fetchone() is None
