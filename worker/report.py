"""The customer's reports, written into the account's FTP `reports/` folder.

    reports/<file>.<import-id>.json          the import record and its summary
    reports/<file>.<import-id>.rejected.csv  every rejected row: line, column, value, reason,
                                             then the original cells
"""

import csv
from datetime import datetime

from .csvfile import readable

#: Characters that make a spreadsheet read a cell as a formula (CSV injection).
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def neutralised(cell):
    """`cell`, made inert for a spreadsheet when it could be read as a formula."""
    cell = "" if cell is None else readable(str(cell))
    return "'" + cell if cell.startswith(FORMULA_START) else cell


class RejectedRows:
    """Streams rejected rows to a CSV file, created on the first one."""

    def __init__(self, path, columns=(), delimiter=";"):
        self.path = path
        self.columns = columns
        self.delimiter = delimiter
        self._file = None
        self._writer = None

    def write(self, rejection):
        if self._writer is None:
            # UTF-8 with a BOM: what Excel opens correctly on every locale.
            self._file = open(self.path, "w", encoding="utf-8-sig", newline="")  # noqa: SIM115
            self._writer = csv.writer(self._file, delimiter=self.delimiter)
            self._writer.writerow(
                [neutralised(c) for c in ("line", "column", "value", "reason", *self.columns)]
            )
        self._writer.writerow([
            rejection.line, *map(neutralised, (rejection.column, rejection.value,
                                               rejection.reason, *rejection.cells)),
        ])

    def close(self):
        if self._file is not None:
            self._file.close()


def summary(record, template, kept):
    """The JSON report: the import record, its durations, the template, the rejected file."""
    durations = {}
    if record.get("started_at") and record.get("finished_at"):
        received, started, finished = (
            datetime.fromisoformat(record[k]) for k in ("received_at", "started_at", "finished_at")
        )
        durations = {"waiting_seconds": round((started - received).total_seconds(), 3),
                     "import_seconds": round((finished - started).total_seconds(), 3)}
    return {**record, "durations": durations, "template": template,
            "rejected_file": kept}
