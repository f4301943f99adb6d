"""The customer's reports, written into the account's FTP `reports/` folder.

    reports/<file>.<import-id>.json          the import record and its summary
    reports/<file>.<import-id>.rejected.csv  the rejected rows: line, column, value, reason,
                                             then the original cells
    reports/<file>.<import-id>.changes.csv   what an applied import changed: key, change,
                                             field, before, after

Both are bounded, whatever the file: short bad rows with long reasons (an enum listing its
values) would make a rejected-rows report hundreds of times the file's size.
"""

import codecs
import csv
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, overload

from schemas import Template

from .contact import UNIT, Rejection
from .read.csvfile import readable
from .read.fields import FORMULA_START
from .record import ImportRecord

#: A cell of a row joined by UNIT that starts as a formula
_FORMULA = re.compile(f"(?:^|{UNIT})[=+\\-@\t\r]")
#: The rejected-rows report of a file holds at most this many times the file's bytes ...
SIZE_FACTOR = 10
#: ... or this many bytes, for a small file: room for a few thousand rejected rows.
MIN_BYTES = 1 << 20
#: The most characters a report keeps of a reason, a value or a column name (a cell can be
#: megabytes; the rejected-rows report has the row's cells whole).
TEXT_CHARACTERS = 200
#: Bytes kept for the row that says how many rejected rows are not listed.
NOTE_BYTES = 256


@overload
def shortened(text: str, length: int = ...) -> str: ...
@overload
def shortened(text: None, length: int = ...) -> None: ...
def shortened(text: str | None, length: int = TEXT_CHARACTERS) -> str | None:
    """`text` cut to `length` characters, ending with an ellipsis when cut (None stays)."""
    if text is None or len(text) <= length:
        return text
    return text[:length - 1] + "…"


def listed(rejection: Rejection) -> Rejection:
    """`rejection` as reports keep it: its reason, value and column name shortened."""
    long: dict[str, Any] = {name: shortened(text) for name in ("reason", "value", "column")
                            if len(text := getattr(rejection, name) or "") > TEXT_CHARACTERS}
    return replace(rejection, **long) if long else rejection  # most are short: no copy


def rejected_rows_limit(size: int) -> int:
    """The most bytes the rejected-rows report of a file of `size` bytes may take."""
    return max(SIZE_FACTOR * size, MIN_BYTES)


def rejected_rows_report(file: str, import_id: str) -> str:
    """The name of the rejected-rows report of an import, in the account's `reports/`."""
    return f"{file}.{import_id}.rejected.csv"


def neutralised(cell: object) -> str:
    """`cell`, made inert for a spreadsheet when it could be read as a formula."""
    cell = "" if cell is None else str(cell)
    if not cell.isascii():  # only then can it hold a byte that did not decode
        cell = readable(cell)
    return "'" + cell if cell.startswith(FORMULA_START) else cell


class _Encoded:
    """Where `csv.writer` writes a row: writerow returns what `write` returns, the row's
    line in UTF-8, to be counted before it is written."""

    @staticmethod
    def write(line: str) -> bytes:
        return line.encode()


class RejectedRows:
    """Streams rejected rows to a CSV file, created on the first one, up to `limit` bytes:
    the rows past it are counted, and a last row says how many."""

    def __init__(self, path: Path, columns: Sequence[str] = (), delimiter: str = ";",
                 limit: int = MIN_BYTES) -> None:
        self.path = path
        self.columns = columns
        self.limit = limit
        self.size = 0  # the bytes written
        self.unlisted = 0  # the rows past the limit
        self._writer = csv.writer(_Encoded, delimiter=delimiter)
        self._file: BinaryIO | None = None

    def write(self, rejection: Rejection) -> None:
        if self.unlisted:
            self.unlisted += 1
            return
        if self._file is None:
            self._file = open(self.path, "wb")  # noqa: SIM115
            # UTF-8 with a BOM: what Excel opens correctly on every locale.
            self._put(codecs.BOM_UTF8)
            self._put(self._line(("line", "column", "value", "reason", *self.columns)))
        line = self._line((rejection.line, rejection.column, rejection.value, rejection.reason,
                           *rejection.cells))
        if self.size + len(line) + NOTE_BYTES > self.limit:
            self.unlisted = 1
            return
        self._put(line)

    def close(self) -> None:
        if self._file is None:
            return
        if self.unlisted:
            self._put(self._line((f"… {self.unlisted:,} more rejected rows not listed: the "
                                  f"report is limited to {self.limit:,} bytes",)))
        self._file.close()

    def _line(self, cells: Iterable[object]) -> bytes:
        texts = ["" if cell is None else str(cell) for cell in cells]
        joined = UNIT.join(texts)
        if joined.count(UNIT) != len(texts) - 1:  # a cell holds UNIT: one at a time
            return self._writer.writerow(list(map(neutralised, texts)))
        # The row whole, as `neutralised` makes each cell: a few calls, not a few a cell.
        if not joined.isascii():
            joined = readable(joined)
        if _FORMULA.search(joined):
            return self._writer.writerow(list(map(neutralised, joined.split(UNIT))))
        return self._writer.writerow(joined.split(UNIT))

    def _put(self, data: bytes) -> None:
        assert self._file is not None  # opened by the first write
        self._file.write(data)
        self.size += len(data)


def changes_report(file: str, import_id: str) -> str:
    """The name of the changes report of an applied import, in the account's `reports/`."""
    return f"{file}.{import_id}.changes.csv"


#: The changes a changes report lists (`dropimport imports diff` lists them all).
CHANGES_LISTED = 10_000


def write_changes(path: Path, changes: Iterable[Any]) -> None:
    """Write the first CHANGES_LISTED `changes` (journal.Change) as a CSV report at `path`:
    key, change, field, before, after; made whole under another name, then renamed."""
    part = path.with_name(path.name + ".part")
    with open(part, "w", encoding="utf-8-sig", newline="") as report:
        writer = csv.writer(report, delimiter=";")
        writer.writerow(("key", "change", "field", "before", "after"))
        for number, change in enumerate(changes):
            if number == CHANGES_LISTED:
                writer.writerow((f"… more changes not listed: the report lists the first "
                                 f"{CHANGES_LISTED:,}",))
                break
            writer.writerow([neutralised(_cell(value)) for value in (
                change.key, change.change, change.field, change.before, change.after)])
    os.replace(part, path)


def _cell(value: object) -> object:
    """A value as a report's cell: booleans as JSON spells them, which the boolean type
    reads."""
    return ("true" if value else "false") if isinstance(value, bool) else value


def summary(record: ImportRecord, template: Template | None,
            kept: str | None, changes: str | None = None) -> dict[str, Any]:
    """The JSON report: the import record, its durations, the template, the rejected file
    and the changes file.

    `rejections_truncated` says when its rejections are not all of the rejected rows.
    """
    durations: dict[str, float] = {}
    started_at, finished_at = record.get("started_at"), record.get("finished_at")
    if started_at and finished_at:
        received, started, finished = (
            datetime.fromisoformat(at) for at in (record["received_at"], started_at, finished_at)
        )
        durations = {"waiting_seconds": round((started - received).total_seconds(), 3),
                     "import_seconds": round((finished - started).total_seconds(), 3)}
    return {**record, "rejections_truncated": record["rejected_rows"] > len(record["rejections"]),
            "durations": durations, "template": template, "rejected_file": kept,
            "changes_file": changes}
