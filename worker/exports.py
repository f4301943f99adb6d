"""Scheduled exports, without I/O: an export's columns, its file's name and cells, its lines.

An export (the account's `exports`, schemas/account.schema.json) writes the account's contacts,
all of them, the changed ones or the unsubscribed ones, as CSV or JSON Lines. What the file
holds is decided here; the Exporter (exporter.py) runs it, the store (write/exports.py) reads
the contacts in one snapshot and streams them through `Lines`, or lets PostgreSQL write the
same CSV itself.
"""

import codecs
import csv
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from schemas import Template

from .contact import KEYS
from .read.fields import FORMULA_START
from .report import neutralised

#: What an export may write besides the keys and the templates' fields.
META = ("unsubscribed", "created_at", "updated_at")
#: A cell that starts like a formula but is a number (-12.5, an E.164 phone +33612345678): a
#: spreadsheet reads no formula in it, so it is written as it is and imports back unchanged.
_NUMBER = re.compile(r"[+-][0-9][0-9.]*")
#: The same, as PostgreSQL's regular expressions say it, and the code points of what starts a
#: formula (FORMULA_START): the CSV it writes itself is neutralised alike.
NUMBER_SQL = r"^[-+][0-9][0-9.]*$"
FORMULA_CODES = tuple(map(ord, FORMULA_START))


class Planned(NamedTuple):
    """One run's file: the columns it writes, its name, and which contacts."""

    columns: tuple[str, ...]
    file: str
    only: str


def columns(export: Mapping[str, Any], templates: Iterable[Template]) -> tuple[str, ...]:
    """The columns of `export`: its `fields`, else the keys and fields of the account's
    templates as they are now (in their order; the keys when it has none), then
    unsubscribed."""
    if export.get("fields"):
        return tuple(export["fields"])
    named: dict[str, None] = {}
    for template in templates:
        named.update(dict.fromkeys(template["fields"]))
    return (*(named or KEYS), "unsubscribed")


def unknown_fields(fields: Sequence[str], templates: Iterable[Template]) -> list[str]:
    """The `fields` an export may not name: neither a key, a template's field, nor META."""
    known = {*KEYS, *META, *(name for template in templates for name in template["fields"])}
    return [name for name in fields if name not in known]


def file_name(export: Mapping[str, Any], planned_for: datetime) -> str:
    """The name of the run's file: {date} and {time} of its planned time in the export's time
    zone, .gz added when compressed. The same on every attempt of a run: a retry replaces."""
    local = planned_for.astimezone(ZoneInfo(export["timezone"]))
    name = export["file"].replace("{date}", f"{local:%Y%m%d}").replace("{time}",
                                                                       f"{local:%H%M%S}")
    return name + ".gz" if export["gzip"] and not name.endswith(".gz") else name


def retention(export: Mapping[str, Any], names: Iterable[str]) -> list[str]:
    """Which of `names` (the hosted exports/ folder) to delete: this export's files past the
    newest `keep` (by the {date} and {time} in their names), and their markers."""
    pattern, named = "", set()
    for part in re.split(r"\{(date|time)\}", export["file"]):
        if part in ("date", "time"):  # re.split keeps the placeholders, without braces
            digits = "[0-9]{8}" if part == "date" else "[0-9]{6}"
            pattern += digits if part in named else f"(?P<{part}>{digits})"
            named.add(part)
        else:
            pattern += re.escape(part)
    if export["gzip"] and not export["file"].endswith(".gz"):
        pattern += r"\.gz"
    names = set(names)
    files = sorted((found.groupdict().get("date"), found.groupdict().get("time"), name)
                   for name in names if (found := re.fullmatch(pattern, name)))
    old = [name for *_, name in files[:-export["keep"]]]
    marker = export.get("marker")
    return old + [name + marker for name in old if marker and name + marker in names]


# --- cells and lines


def text(value: object) -> str:
    """How a stored value is written: booleans as true/false (what a boolean field reads),
    times in UTC ISO 8601, nothing as an empty cell."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return str(value)


def cell(value: object) -> str:
    """A CSV cell a spreadsheet opens safely: a formula made inert as in the rejected-rows
    report (a quote before it), a number left as it is."""
    written = text(value)
    return written if _NUMBER.fullmatch(written) else neutralised(written)


def values(columns: Sequence[str], contact: Mapping[Any, Any]) -> list[Any]:
    """The values of `columns` of a contact read from the store: its keys, META, fields."""
    fields = contact["fields"]
    return [contact[name] if name in KEYS or name in META else fields.get(name)
            for name in columns]


class Lines:
    """Turns contacts into the lines of an export file, in its format and encoding: `header`
    (the BOM, a CSV's header line), then `rows` for each batch of contacts."""

    def __init__(self, export: Mapping[str, Any], columns: Sequence[str]) -> None:
        self.columns = columns
        self.form = export["format"]
        self.delimiter = export["delimiter"]
        self.encoding = export["encoding"]
        # cp1252 lacks most of Unicode: such a character is written as ?, never failing a run.
        self.encoder = codecs.getincrementalencoder(
            "utf-8" if self.encoding == "utf-8-sig" else self.encoding)("replace")
        self._decoder = codecs.getincrementaldecoder("utf-8")()
        self._writer = csv.writer(self, delimiter=self.delimiter, lineterminator="\n")
        self._lines: list[str] = []

    def write(self, line: str) -> None:  # the csv writer's file
        self._lines.append(line)

    def header(self) -> bytes:
        bom = codecs.BOM_UTF8 if self.encoding == "utf-8-sig" else b""
        if self.form == "jsonl":
            return bom
        self._writer.writerow([cell(name) for name in self.columns])
        return bom + self._taken()

    def rows(self, contacts: Iterable[Mapping[Any, Any]]) -> bytes:
        if self.form == "jsonl":
            for contact in contacts:
                self._lines.append(json.dumps(
                    dict(zip(self.columns, map(_json, values(self.columns, contact)),
                             strict=True)), ensure_ascii=False) + "\n")
        else:
            self._writer.writerows([cell(value) for value in values(self.columns, contact)]
                                   for contact in contacts)
        return self._taken()

    def transcoded(self, utf8: bytes) -> bytes:
        """UTF-8 bytes (PostgreSQL's own CSV, a chunk at a time) in the file's encoding."""
        if self.encoding in ("utf-8", "utf-8-sig"):
            return utf8
        return self.encoder.encode(self._decoder.decode(utf8))

    def _taken(self) -> bytes:
        taken = "".join(self._lines)
        self._lines.clear()
        return self.encoder.encode(taken)


def _json(value: object) -> object:
    return text(value) if isinstance(value, datetime) else value
