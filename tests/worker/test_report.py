"""The customer's reports are bounded, whatever the file, and say when they are cut."""

import csv
import json
from pathlib import Path

from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from tests.worker.conftest import HEADER, spool
from worker import cli
from worker.cli import history
from worker.report import MIN_BYTES, TEXT_CHARACTERS, RejectedRows, _Encoded, neutralised


def test_the_reports_of_a_file_of_bad_rows_are_bounded(importer, home, settings, monkeypatch):
    # Given a file whose first row holds a long bad e-mail, then 40,000 short bad rows, each
    # of whose line in the rejected-rows report is some 18 times longer than the row
    long = "x" * 5000
    event = spool(home, "acme", HEADER + f"{long};Jo;Doe;Lyon\r\n" + "x\n" * 40_000)
    # When it is imported
    record = importer.run(event)
    # Then every rejected row is counted
    assert (record["status"], record["rejected_rows"]) == ("imported", 40_001)
    # And the rejected-rows report holds at most 1 MiB (10 times the file's 85 kB is less),
    # ending with a row that says how many rows it does not list
    path = home.reports("acme") / f"contacts.csv.{event['import_id']}.rejected.csv"
    assert MIN_BYTES - 1000 < path.stat().st_size <= MIN_BYTES
    header, first, *rows, last = csv.reader(
        path.read_text("utf-8-sig").splitlines(), delimiter=";")
    assert header[:4] == ["line", "column", "value", "reason"]
    assert [row[0] for row in rows] == [str(line) for line in range(3, len(rows) + 3)]
    unlisted = 40_000 - len(rows)
    assert last == [f"… {unlisted:,} more rejected rows not listed: the report is limited "
                    f"to {MIN_BYTES:,} bytes"]
    # And its reason and value are cut to 200 characters, the cells kept whole
    assert first[:2] == ["2", "E-mail"] and first[4] == long
    assert len(first[2]) == len(first[3]) == TEXT_CHARACTERS and first[2].endswith("…")
    # And the JSON report keeps 1,000 rejections, shortened alike, and says there were more
    report = json.loads(
        (home.reports("acme") / f"contacts.csv.{event['import_id']}.json").read_text())
    assert (len(report["rejections"]), report["rejections_truncated"]) == (1000, True)
    assert report["rejections"][0]["value"] == long[:TEXT_CHARACTERS - 1] + "…"
    assert report["rejections"][1] == {"line": 3, "column": None, "value": None,
                                       "reason": "expected 4 cells, found 1"}
    # And `dropimport imports show` lists those 1,000 and says how many more there are
    monkeypatch.setattr(history, "open_store", lambda _: importer.store)
    shown = CliRunner().invoke(cli.imports, ["show", event["import_id"]], obj=settings).output
    assert shown.count("  rejected line ") == 1000
    assert shown.endswith("  … 39,001 more rejected rows: see the rejected-rows report\n")


def test_reports_that_hold_every_rejected_row_say_so(importer, home):
    # Given a file of one bad row among good ones
    event = spool(home, "acme", HEADER + "jo@x.com;Jo;Doe;Lyon\r\nbad;Al;Doe;Nice\r\n")
    importer.run(event)
    # Then both reports list it, and nothing else
    path = home.reports("acme") / f"contacts.csv.{event['import_id']}.rejected.csv"
    assert len(path.read_text("utf-8-sig").splitlines()) == 2
    report = json.loads(
        (home.reports("acme") / f"contacts.csv.{event['import_id']}.json").read_text())
    assert (len(report["rejections"]), report["rejections_truncated"]) == (1, False)


@given(st.lists(st.one_of(st.none(), st.integers(),
                          st.text(alphabet="ab=+-@\t\r\x1fé\udce9;\"'", max_size=6)),
                max_size=8))
def test_a_rejected_row_is_written_as_its_cells_neutralised_one_by_one(cells):
    # Given any row: formulas anywhere, undecoded bytes, the unit separator inside a cell
    # Then the report's line, written for the row whole, is the one of each cell neutralised
    one_by_one = csv.writer(_Encoded, delimiter=";").writerow(list(map(neutralised, cells)))
    assert RejectedRows(Path("unused"))._line(cells) == one_by_one
