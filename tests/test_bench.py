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
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from bench import baseline, data, datasets, mixed, workloads
from bench.database import Database
from schemas import template_with_defaults
from tests.conftest import POSTGRES_ADMIN_URL
from worker.read import csvfile
from worker.read.rows import contacts as row_contacts
from worker.read.template import check, plan_for

ROOT = Path(__file__).parent.parent
TEMPLATE = ROOT / "bench" / "template.json"
MIXED_TEMPLATE = ROOT / "bench" / "template-mixed.json"
#: The worker's reasons for rejecting a row -> the mixed file's faults (mixed.FAULTS).
REASONS = (("invalid e-mail", "email"), ("required field email is empty", "email_empty"),
           ("invalid phone number", "phone"), ("is not a date in the format", "date"),
           ("cells, found", "cells"), ("are not valid", "bytes"),
           ("is not an integer", "integer"), ("is not a boolean", "boolean"))


class Outcome:
    """What the template engine tells of rejected and skipped rows."""

    def __init__(self):
        self.rejected = []
        self.skipped = 0

    def reject(self, rejection):
        self.rejected.append(rejection)

    def skip(self):
        self.skipped += 1


def read(path, encoding="utf-8"):
    with open(path, encoding=encoding, errors="surrogateescape", newline="") as file:
        return list(csv.reader(file, delimiter=";"))


def encodable(cells, encoding):
    try:
        "".join(cells).encode(encoding)
    except UnicodeEncodeError:
        return False
    return True


def fault(rejection):
    """The fault of the mixed file that a Rejection's reason tells."""
    return next(name for part, name in REASONS if part in rejection.reason)


def imported(path, template):
    """The Contacts and the Outcome of the worker's template engine on the file at `path`."""
    outcome = Outcome()
    with csvfile.reading(path, template["format"]["encoding"], ";") as (dialect, rows):
        plan = plan_for(template_with_defaults(template), next(rows)[1], dialect.encoding)
        return list(row_contacts(plan, rows, outcome)), outcome


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


def test_a_mixed_file_looks_like_customers_exports(tmp_path):
    # When a mixed file of 2000 rows is generated, UTF-8 with a BOM, CRLF
    path = mixed.write(tmp_path / "clients.csv", 7, 2000)
    raw = path.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf") and raw.count(b"\r\n") > 2000
    header, *rows = read(path, "utf-8-sig")
    # Then it has its 20 columns, and a row of another width now and then
    assert tuple(header) == mixed.COLUMNS and len(header) == 20 and len(rows) == 2000
    assert Counter(map(len, rows)).most_common(1)[0][0] == 20
    full = [row for row in rows if len(row) == 20]
    # Most rows have a quoted cell holding the delimiter; some a line break
    assert sum(any(";" in cell for cell in row) for row in full) > 0.7 * len(full)
    assert any("\n" in row[6] for row in full) and any('"' in row[18] for row in full)
    emails, phones = [row[3] for row in full], [row[4] for row in full]
    # E-mails in mixed case, with stray spaces, a few with a Unicode local part or an IDN domain
    assert any(e != e.strip() for e in emails) and any(e != e.lower() for e in emails)
    assert 0.01 < sum(not e.split("@")[0].isascii() for e in emails if "@" in e) / 2000 < 0.1
    assert any(e.strip().lower().endswith(mixed.IDN_DOMAINS) for e in emails)
    # Phones in every common shape, French and international
    shapes = {re.sub(r"\d", "9", phone) for phone in phones}
    assert {"99 99 99 99 99", "9999999999", "99.99.99.99.99", "+99 9 99 99 99 99",
            "+99 (9)9 99 99 99 99", "9999 9 99 99 99 99", "+99 9999 999999"} <= shapes
    # And the cp1252 variant holds the same rows in Windows-1252, but for what it lacks
    other = read(mixed.write(tmp_path / "cp1252.csv", 7, 2000, encoding="cp1252"), "cp1252")
    assert other[0] == header and [len(row) for row in other[1:]] == [len(r) for r in rows]
    same = [(row, cp1252) for row, cp1252 in zip(rows, other[1:], strict=True)
            if encodable(row, "cp1252")]
    assert len(same) > 0.95 * len(rows) and all(row == cp1252 for row, cp1252 in same)


@pytest.mark.parametrize("dataset", [datasets.MIXED, datasets.CP1252], ids=lambda d: d.name)
def test_the_mixed_template_rejects_the_faulty_rows_and_imports_the_rest(tmp_path, dataset):
    # Given the mixed template, valid for the worker, and a file of 3000 rows
    template = check(json.loads(MIXED_TEMPLATE.read_text("utf-8")))
    assert tuple(template["columns"]) == mixed.COLUMNS
    assert check(dataset.template)["fields"] == template["fields"]
    path = dataset.write(tmp_path / "clients.csv", 7, 3000, 0.0)
    # When the worker's template engine reads it
    contacts, outcome = imported(path, dataset.template)
    # Then it rejects the rows with a fault, each for its fault, and no other: 5-10% of them
    faults = mixed.faults(7, 3000)
    assert Counter(map(fault, outcome.rejected)) == faults
    assert set(faults) == {name for name, _ in mixed.FAULTS}
    assert 0.05 < sum(faults.values()) / 3000 < 0.10
    # And every other row is a contact of its own
    assert len(contacts) + len(outcome.rejected) == 3000 and outcome.skipped == 0
    assert len({contact.key for contact in contacts}) == len(contacts)
    phones = [contact.keys["phone"] for contact in contacts if "phone" in contact.keys]
    assert len(set(phones)) == len(phones)
    assert {"+32", "+41", "+44", "+49"} <= {phone[:3] for phone in phones}
    assert any("é" in contact.key.split("@")[0] for contact in contacts)
    assert any(contact.key.endswith(mixed.IDN_DOMAINS) for contact in contacts)


def test_a_later_mixed_version_keeps_the_people_and_their_faults():
    before = list(mixed.rows(7, 2000))
    after = list(mixed.rows(7, 2000, changed=0.1))
    # The same people, and the same rows of another width (a fault of every version)
    assert [len(row) for row in before] == [len(row) for row in after]
    identity = (0, 1, 2, 3, 5, 9, 10, 11, 15, 16, 19)
    pairs = [(b, a) for b, a in zip(before, after, strict=True) if len(b) == 20]
    assert all([b[i] for i in identity] == [a[i] for i in identity] for b, a in pairs)
    # About a tenth of them with other details
    assert 120 < sum(b != a for b, a in pairs) < 280
    # And no phone cell written twice, before or after: the baselines store them unchecked
    # under a unique key
    cells = [row[4] for row in before + after if len(row) == 20 and row[4]]
    assert len(cells) - len(set(cells)) == sum(b[4] == a[4] != "" for b, a in pairs)


def test_the_baselines_load_a_mixed_file(tmp_path):
    # Given the benchmark's database and a mixed file, as the baselines load it
    database = Database(POSTGRES_ADMIN_URL, f"dropimport_bench_test_{secrets.token_hex(4)}")
    dataset = datasets.CP1252
    names = baseline.staging_names(dataset.template)
    files = [baseline.copyable(dataset.write(tmp_path / f"{n}.csv", 7, 500, changed),
                               tmp_path / f"{n}.copy.csv", dataset.encoding)
             for n, changed in enumerate((0.0, 0.1))]
    # Only the rows COPY cannot read are left out of their copy: another width, a bad byte
    faults = mixed.faults(7, 500)
    assert files[0] == (500 - faults["cells"] - faults["bytes"], faults["cells"] + faults["bytes"])
    copies = [tmp_path / f"{n}.copy.csv" for n in range(2)]
    with_email = files[0][0] - faults["email_empty"]
    database.create()
    try:
        # When both baselines load it, then its later version, into an empty account
        loaded = [baseline.load(database.url, "acme", copies[0], names, "WIN1252"),
                  baseline.load_lean(database.url, "acme", copies[0], names, "WIN1252"),
                  baseline.load_lean(database.url, "acme", copies[0], names, "WIN1252"),
                  baseline.load_lean(database.url, "acme", copies[1], names, "WIN1252")]
        with psycopg.connect(database.url) as connection:
            stored = connection.execute(
                "SELECT count(*), count(*) FILTER (WHERE fields->>'city' LIKE 'Orl%'"
                " OR fields->>'last_name' ~ '[éèœ]') FROM lean_contacts").fetchone()
    finally:
        database.drop()
    # Then each stores every row that has an e-mail, its accents intact
    assert loaded[:2] == [with_email, with_email] and stored[0] == with_email and stored[1]
    # And the lean one writes nothing for a row that changes nothing, only the changed rows
    assert loaded[2] == 0 and 20 < loaded[3] < 80


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
    assert [w.id for w in workloads.select("S,a,W1")] == ["W1", "A", "S"]
    # F, about SFTP transfers, runs only when named
    assert "F" not in [w.id for w in workloads.select()]
    assert [w.id for w in workloads.select("f,W1")] == ["W1", "F"]
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
    # When the benchmark runs four workloads against the real PostgreSQL, on tiny sizes
    table, results = run_bench(tmp_path, "--rows", "300", "--big-base", "1000",
                               "--only", "W1,W3,A,S")
    # Then it prints one table, with both baselines and both ratios
    assert "W1 first import" in table and "A plain first import" in table
    assert workloads.BASELINE in table and workloads.LEAN in table and "vs lean" in table
    # And the JSON holds the same figures, every workload measured against its target
    assert {"command", "rows", "big_base", "dataset", "seed", "machine",
            "workloads"} <= results.keys()
    assert results["rows"] == 300 and results["machine"]["postgresql"]
    assert results["dataset"] == "mixed"
    measured = results["workloads"]
    assert list(measured) == ["W1", "W3", "A", "S"]
    for workload in measured.values():
        assert workload["status"] == "run"
        assert {"name", "target", "ratio", "lean_ratio", "met", "runs"} <= workload.keys()
        for run in workload["runs"]:
            assert {"label", "rows", "seconds", "rows_per_s", "peak_rss_mb", "database",
                    "counts"} <= run.keys()
            assert run["rows"] == 300 and run["peak_rss_mb"] > 0
    assert [run["database"] for run in measured["S"]["runs"]] == ["sqlite"]
    for name in ("W1", "W3", "A"):
        assert [run["label"] for run in measured[name]["runs"]][1:] == [
            workloads.BASELINE, workloads.LEAN]
        assert measured[name]["ratio"] > 0 and measured[name]["lean_ratio"] > 0
    # And W1 imported the mixed file, its faulty rows rejected, A the plain one whole
    rejected = sum(mixed.faults(1, 300).values())
    assert measured["W1"]["runs"][0]["counts"]["rejected_rows"] == rejected > 0
    assert measured["W1"]["runs"][0]["counts"]["created"] == 300 - rejected
    assert measured["A"]["runs"][0]["counts"]["created"] == 300
    # And W3 found its 2% of changed rows among rows already stored, the same rows rejected
    nightly = measured["W3"]["runs"][0]["counts"]
    assert nightly["created"] == 0 and nightly["rejected_rows"] == rejected
    assert 0 < nightly["updated"] < 30
    assert nightly["updated"] + nightly["unchanged"] + rejected == 300
    # And the lean baseline wrote only what changed
    lean = measured["W3"]["runs"][2]["counts"]
    assert 0 < lean["loaded"] < 30


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


def test_the_sftp_workload_puts_to_ours_and_to_openssh(tmp_path):
    # When F runs on tiny sizes: 1 MB put once to each server, then 2 accounts at once
    table, results = run_bench(tmp_path, "--only", "F", "--sftp-mb", "1", "--sftp-tries", "1",
                               "--sftp-accounts", "2")
    assert "F SFTP: ours, dropimport agent" in table and "OpenSSH sshd + sftp-server" in table
    sftp = results["workloads"]["F"]
    ours, theirs, uploaded, imported = sftp["runs"]
    # Then both servers got the same file of about 1 MB, each put timed, its cipher named
    assert ours["counts"]["bytes"] == theirs["counts"]["bytes"]
    assert abs(ours["counts"]["bytes"] - 1_000_000) < 50_000 and ours["rows"] == theirs["rows"]
    for put in (ours, theirs):
        assert put["seconds"] > 0 and put["counts"]["cipher"] != "?"
        assert len(put["counts"]["seconds_each"]) == 1
    # And the figure is our speed over OpenSSH's
    assert sftp["ratio"] == pytest.approx(theirs["seconds"] / ours["seconds"])
    # And the two accounts' files were all imported, after they were all uploaded
    counts = uploaded["counts"]
    assert counts["accounts"] == counts["imported"] == 2 and counts["statuses"] == {"imported": 2}
    assert 0 < uploaded["seconds"] < imported["seconds"]
    assert imported["rows"] == uploaded["rows"] > 0


def test_the_safety_net_workload_previews_imports_and_rolls_back(tmp_path):
    _table, results = run_bench(tmp_path, "--rows", "300", "--only", "J")
    rollback, run, preview = results["workloads"]["J"]["runs"]
    assert [rollback["label"], run["label"], preview["label"]] == [
        "rollback", "import", "preview"]
    # The preview counted what the import then did; the rollback undid all of it
    for count in ("created", "updated", "unchanged", "rejected_rows"):
        assert preview["counts"][count] == run["counts"][count]
    assert run["counts"]["updated"] > 0 and run["counts"]["journal_mb"] > 0
    assert rollback["counts"]["deleted"] == run["counts"]["created"]
    assert rollback["counts"]["restored"] == run["counts"]["updated"]
    assert results["workloads"]["J"]["ratio"] > 0


def test_the_export_workload_exports_all_then_the_changes(tmp_path):
    # When X runs on tiny sizes: W3's contacts exported, then the nightly import's changes
    table, results = run_bench(tmp_path, "--rows", "300", "--only", "X")
    assert "X exports" in table and workloads.COPY_TO_FILE in table
    export = results["workloads"]["X"]
    full, dump, since, big = export["runs"]
    # Then the first run of the `changed` export wrote every contact, as the database's COPY
    # of the same columns did
    rejected = sum(mixed.faults(1, 300).values())
    assert full["rows"] == dump["rows"] == 300 - rejected
    assert 0.9 < full["counts"]["bytes"] / dump["counts"]["bytes"] < 1.1
    # And the figure is the export's speed over the COPY's
    assert export["ratio"] == pytest.approx(dump["seconds"] / full["seconds"])
    # And its second run wrote the nightly import's 2% of changes, those since the first run
    assert 0 < since["rows"] < 30 and since["counts"]["since"] == full["counts"]["snapshot"]
    # And the account of 5N contacts was exported whole, its peak RSS measured
    assert big["rows"] == workloads.MEMORY_FACTOR * full["rows"]
    assert full["peak_rss_mb"] > 0 and big["peak_rss_mb"] > 0 and export["met"] in (True, False)


def test_the_packed_workload_imports_gzipped_encrypted_and_plain(tmp_path):
    # When Z runs on tiny sizes: W1's file uploaded gzipped, gzipped and encrypted, and plain
    table, results = run_bench(tmp_path, "--rows", "300", "--only", "Z")
    assert "Z packed uploads" in table and "clients.csv.gz.pgp" in table
    packed = results["workloads"]["Z"]
    gzipped, encrypted, plain = packed["runs"]
    assert [run["label"].split(" (")[0] for run in packed["runs"]] == [
        "worker, clients.csv.gz", "worker, clients.csv.gz.pgp", "worker, clients.csv"]
    # Then each form was imported whole, the same rows rejected as in the plain file
    rejected = sum(mixed.faults(1, 300).values())
    for run in packed["runs"]:
        assert run["counts"]["created"] == 300 - rejected
        assert run["counts"]["rejected_rows"] == rejected
    # And the packed files are smaller, and timed against the plain one's import
    assert encrypted["counts"]["bytes"] > gzipped["counts"]["bytes"]
    assert gzipped["counts"]["bytes"] < plain["counts"]["bytes"]
    assert packed["ratio"] == pytest.approx(gzipped["seconds"] / plain["seconds"])
    # And each is the fastest of its two tries
    for run in packed["runs"]:
        assert len(run["counts"]["seconds_each"]) == 2
        assert run["seconds"] == pytest.approx(min(run["counts"]["seconds_each"]), abs=0.01)
    assert encrypted["counts"]["vs_plain"] == pytest.approx(
        encrypted["seconds"] / plain["seconds"], abs=1e-3)
    assert plain["peak_rss_mb"] > 0 and packed["met"] in (True, False)
