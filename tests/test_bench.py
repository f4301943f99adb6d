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

from bench import data, workloads
from schemas import template_with_defaults
from tests.conftest import POSTGRES_ADMIN_URL
from worker.read import csvfile
from worker.read.rows import contacts as row_contacts
from worker.read.template import check, plan_for

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
    template = check(json.loads(TEMPLATE.read_text("utf-8")))
    assert tuple(template["columns"]) == data.COLUMNS
    path = data.write(tmp_path / "contacts.csv", 7, 2000)
    # When the worker's template engine reads the file
    outcome = Outcome()
    with csvfile.reading(path, "utf-8", ";") as (_, rows):
        plan = plan_for(template_with_defaults(template), next(rows)[1])
        contacts = list(row_contacts(plan, rows, outcome))
    # Then every row is a contact: the figures are about importing, not rejecting
    assert len(contacts) == 2000 and outcome.rejected == []
    assert len({contact.key for contact in contacts}) == 2000
    fields = contacts[0].fields
    assert re.fullmatch(r"\+33\d{9}", fields["phone"]) and isinstance(fields["optin"], bool)


def test_each_upload_of_a_series_differs_from_the_one_before(tmp_path):
    # Given the same 100 rows uploaded again and again
    files = [data.write(tmp_path / f"{n}.csv", 7, 100, number=n).read_bytes() for n in range(3)]
    # Then no file is identical to another (the worker would not import it again)
    assert len(set(files)) == 3
    # And only the first row's comment tells them apart
    original = list(data.rows(7, 100))
    _, first, *rest = read(tmp_path / "2.csv")
    assert first == [*original[0][:-1], "upload 2"] and rest == original[1:]


def test_a_file_of_one_e_mail_holds_the_same_people_under_that_e_mail(tmp_path):
    # D's file: each row finds the contact the row before wrote
    _, *rows = read(data.write(tmp_path / "one.csv", 7, 100, email="same@example.com"))
    assert rows == [["same@example.com", *row[1:]] for row in data.rows(7, 100)]


def test_the_percentile_is_the_nearest_rank():
    seconds = [n / 100 for n in range(100, 0, -1)]  # 1.00 .. 0.01, in no particular order
    assert workloads.percentile(seconds, 0.5) == 0.5
    assert workloads.percentile(seconds, 0.99) == 0.99
    assert workloads.percentile([0.2, 0.1, 0.3], 0.99) == 0.3
    assert workloads.percentile([0.2], 0.5) == 0.2


def test_workloads_are_chosen_by_name_in_the_issues_order():
    assert [w.id for w in workloads.select("w6,W4")] == ["W4", "W6"]
    with pytest.raises(ValueError, match=r"unknown workload\(s\) W7"):
        workloads.select("W1,W7")


def run_bench(tmp_path, *options):
    """Run `python -m bench` with `options` on a database of its own; its JSON figures."""
    name = f"dropimport_bench_test_{secrets.token_hex(4)}"
    figures = tmp_path / "results.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", *options, "--json", str(figures),
         "--database-url", POSTGRES_ADMIN_URL, "--database-name", name],
        cwd=ROOT, capture_output=True, text=True, timeout=100, check=False,
    )
    assert done.returncode == 0, done.stderr
    # It prints one table and says where the figures went
    assert f"figures written to {figures}" in done.stdout
    # And its database is gone
    with psycopg.connect(POSTGRES_ADMIN_URL) as connection:
        query = "SELECT 1 FROM pg_database WHERE datname = %s"
        assert connection.execute(query, (name,)).fetchone() is None
    return done.stdout, json.loads(figures.read_text("utf-8"))


def test_the_benchmark_runs_end_to_end(tmp_path):
    # When the benchmark runs three workloads against the real PostgreSQL, on tiny sizes
    table, results = run_bench(tmp_path, "--rows", "300", "--big-base", "1000",
                               "--only", "W1,W3,S")
    # Then it prints one table
    assert "W1 first import" in table and "baseline" in table
    # And the JSON holds the same figures, every workload measured against its target
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


def test_the_workloads_over_ftp_run_the_whole_system(tmp_path):
    # When W4 and W6 run on tiny sizes through the real agent, RabbitMQ and worker
    table, results = run_bench(tmp_path, "--only", "W4,W6", "--latency-uploads", "3",
                               "--fan-in-accounts", "3", "--fan-in-rows", "50")
    assert "W4 latency over FTP: p50 of 3 uploads" in table and "W6 fan-in" in table
    latency, fan_in = results["workloads"]["W4"], results["workloads"]["W6"]
    # Then W4 timed each of its uploads from its 226 reply to its import's commit
    p50, p99 = latency["runs"]
    assert p50["label"].startswith("p50") and p99["label"].startswith("p99")
    latencies = p50["counts"]["latencies_ms"]
    assert len(latencies) == 3 and min(latencies) > 0
    assert 0 < p50["seconds"] <= p99["seconds"]
    assert p99["seconds"] == pytest.approx(max(latencies) / 1000, abs=1e-3)
    assert p50["rows"] == 100 and latency["met"] in (True, False)
    # And W6 found every account's file imported, whole, none lost
    (run,) = fan_in["runs"]
    assert run["counts"]["accounts"] == run["counts"]["imported"] == 3 and fan_in["met"]
    assert run["counts"]["statuses"] == {"imported": 3} and run["rows"] == 150
    assert 0 < run["counts"]["uploads_seconds"] < run["seconds"]
    assert run["counts"]["worker_processes"] == 1 and run["counts"]["worker_threads"] == 4
    # And the agent's peak RSS is measured, above what it took at rest
    assert 0 < run["idle_rss_mb"] <= run["peak_rss_mb"]
