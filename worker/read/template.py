"""A template applied to a file's header, pure: where each field is and how to convert it."""

import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import orjson

from schemas import MAX_COLUMNS, SchemaError, Template, check_template

from ..contact import KEYS, keyed
from .csvfile import Unfinished, trimmed
from .fields import LIBRARIES, converter

#: Bump whenever a field type converts a cell otherwise: a stored fingerprint vouches for a
#: row's conversion by this code (Plan.fingerprint).
CONVERSIONS = 1


class HeaderMismatch(Exception):
    """The file's structure is not the template's; the message names the columns."""


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    index: int
    column: str
    convert: Callable[[str], object]
    required: bool
    default: str | None
    trim: bool
    key: bool  # one of KEYS, stored in its own column


@dataclass(frozen=True)
class Plan:
    """A template applied to one file's header: where each field is, how to convert it."""

    template: Template
    columns: tuple[str, ...]  # the file's columns (the template's when the file has no header)
    steps: tuple[Step, ...]
    encoding: str = "utf-8"

    @property
    def places(self) -> dict[str, tuple[int, str]]:
        """Each field but the keys: (its place in the row's document, in jsonb's order of
        keys, its JSON key and colon)."""
        names = keyed(step.name for step in self.steps if not step.key)
        return {name: (place, prefix) for place, (name, prefix) in enumerate(names)}

    @property
    def width(self) -> int:
        return len(self.columns)

    def cut(self, unfinished: Unfinished | None) -> int | None:
        """The line where the file was cut, in the middle of its last record, or None.

        `unfinished` is that record when no line break ends it (csvfile.Unfinished): a cut
        when the file ends inside a quoted cell or the record lacks cells; a complete file
        may just lack the final line break.
        """
        if unfinished and (unfinished.quoted or unfinished.cells < self.width):
            return unfinished.line
        return None

    @cached_property
    def fingerprint(self) -> Callable[[bytes], int]:
        """The function: a row's cells joined by _UNIT, in UTF-8 -> the row's fingerprint, a
        signed 64-bit hash of the row, this plan's template and columns, CONVERSIONS and
        LIBRARIES.

        A contact keeps the fingerprint of the row that last wrote it: the same row again
        would change nothing, so it needs no converting (`chunks`).
        """
        start = hashlib.blake2b(digest_size=8, key=hashlib.blake2b(orjson.dumps(
            [CONVERSIONS, LIBRARIES, self.template, self.columns],
            option=orjson.OPT_SORT_KEYS)).digest())

        def fingerprint(encoded: bytes) -> int:
            digest = start.copy()
            digest.update(encoded)
            return int.from_bytes(digest.digest(), "big", signed=True)

        return fingerprint


def check(template: dict[str, Any]) -> dict[str, Any]:
    """Validate a template completely: its schema, then each field's options (SchemaError)."""
    check_template(template)
    for name, spec in template["fields"].items():
        try:
            converter(spec)
        except ValueError as error:
            raise SchemaError(f"fields.{name}: {error}") from None
    return template


def _normalise(name: str, match: str) -> str:
    return "".join(name.split()).casefold() if match == "ignore_case_and_spaces" else name


def _header_indexes(template: Template, header: list[str]) -> dict[str, int]:
    """Index in `header` of each template column; raise HeaderMismatch naming what differs.

    Sets and counts, not searches of lists: a header of many columns is checked in one pass.
    """
    options = template["header"]
    assert isinstance(options, dict)  # the template has a header (plan_for): its options
    match = options["match"]
    expected = [_normalise(name, match) for name in template["columns"]]
    found = [_normalise(name, match) for name in header]
    wanted, times = set(expected), Counter(found)
    named = list(zip(header, found, strict=True))
    twice = sorted({h for h, n in named if times[n] > 1 and n in wanted})
    missing = [c for c, n in zip(template["columns"], expected, strict=True) if n not in times]
    unexpected = [h for h, n in named if n not in wanted]
    problems = []
    if missing:
        problems.append("missing " + ", ".join(map(repr, missing)))
    if unexpected and options["extra_columns"] == "reject":
        problems.append("unexpected " + ", ".join(map(repr, unexpected)))
    if twice:
        problems.append("repeated " + ", ".join(map(repr, twice)))
    if not problems and [n for n in found if n in wanted] != expected:
        problems.append(
            f"same columns in another order: expected {template['columns']}, found {header}"
        )
    if problems:
        raise HeaderMismatch("header differs from the template: " + "; ".join(problems))
    index = {n: i for i, n in enumerate(found)}  # each expected name is found once by now
    return {column: index[n] for column, n in zip(template["columns"], expected, strict=True)}


def key_converter(spec: dict[str, Any]) -> Callable[[str], Any]:
    """The converter of a standard key: its value as text, as the key's column holds it (an
    integer external_id is kept as its digits: 0042 and 42 are one contact)."""
    convert = converter(spec)
    if spec.get("type") != "integer":
        return convert

    def digits(value: str) -> str:
        return str(convert(value))

    return digits


def plan_for(template: Template, header: list[str] | None, encoding: str = "utf-8") -> Plan:
    """Plan the import of a file whose header line is `header` (None when it has none)."""
    if template["header"] is False:
        columns = tuple(template["columns"])
        indexes = {name: i for i, name in enumerate(columns)}
    else:
        assert header is not None  # a template with a header reads the file's
        columns = tuple(trimmed(header))
        if len(columns) > MAX_COLUMNS:
            raise HeaderMismatch(f"the header has {len(columns)} columns, more than the "
                                 f"{MAX_COLUMNS} a template may have")
        indexes = _header_indexes(template, list(columns))
    match_on = template["match_on"]
    steps: list[Step] = []
    for name, spec in template["fields"].items():
        column = spec["column"]
        index = column - 1 if isinstance(column, int) else indexes[column]
        if index >= len(columns):
            raise HeaderMismatch(f"field {name} is in column {column}, the file has {len(columns)}")
        steps.append(Step(
            name=name,
            index=index,
            column=columns[index],
            convert=key_converter(spec) if name in KEYS else converter(spec),
            required=spec.get("required", False) or name == match_on,
            default=spec.get("default"),
            trim=spec.get("trim", True),
            key=name in KEYS,
        ))
    return Plan(template, columns, tuple(steps), encoding)
