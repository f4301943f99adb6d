"""A template proposed from a sample file: the customer's first manual import, read once.

Everything here is pure except `read_sample`: the header is detected, each column is mapped to
a contact field by its name (French and English synonyms) and typed from its values, using the
real converters of `fields.py` so that a proposed type is one that imports the whole sample.
"""

import csv
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Container, Iterable, Iterator, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any

from dropimport.packaging import packing

from .contact import KEYS
from .read.csvfile import Dialect, reading, trimmed, undecodable
from .read.fields import FORMULA_START, FieldError, converter
from .read.unpack import Unreadable, unpacked, unpacking

#: How many non-blank rows of a sample are read: the header and about a thousand rows.
SAMPLE_ROWS = 1001

#: Contact field -> the names a customer's header gives it (compared by `_folded`).
SYNONYMS = {
    "email": ("E-mail", "Email", "Mail", "Courriel", "Adresse e-mail", "Adresse mail",
              "Adresse électronique", "E-mail address", "Mail address"),
    "first_name": ("Prénom", "First name", "Firstname", "Given name"),
    "last_name": ("Nom", "Nom de famille", "Last name", "Lastname", "Surname", "Family name"),
    "phone": ("Téléphone", "Tél", "Tel", "Phone", "Phone number", "Portable", "Mobile", "Cell",
              "GSM", "Numéro de téléphone", "Téléphone portable", "Téléphone mobile"),
    "birth_date": ("Date de naissance", "Né le", "Née le", "Birth date", "Birthdate",
                   "Date of birth", "DOB", "Birthday"),
    "zip": ("Code postal", "CP", "Zip", "Zip code", "Postal code", "Postcode"),
    "city": ("Ville", "City", "Town", "Commune"),
    "civility": ("Civilité", "Titre", "Title", "Salutation", "Gender", "Sexe"),
    "company": ("Société", "Entreprise", "Company", "Organisation", "Organization",
                "Raison sociale"),
    "country": ("Pays", "Country"),
    "address": ("Adresse", "Address", "Adresse postale", "Street address"),
    "external_id": ("ID", "Identifiant", "Id client", "Customer id", "External id",
                    "Référence client", "Client id", "Numéro client"),
    "optin": ("Opt-in", "Optin", "Newsletter", "Consentement", "Abonné", "Abonnée",
              "Subscribed"),
}

#: Civility code -> how files spell it, in the order the codes are listed in a template.
CIVILITIES = {
    "mr": ("M.", "M", "Mr", "Mr.", "Monsieur"),
    "mrs": ("Mme", "Mme.", "Mrs", "Mrs.", "Madame"),
    "miss": ("Mlle", "Mlle.", "Miss", "Mademoiselle"),
    "ms": ("Ms", "Ms."),
}

#: Tried in this order, so an ambiguous 03/02/1990 is read day first, as in France.
DATE_FORMATS = ("%d/%m/%Y", "%Y-%m-%d", "%d-%m-%Y", "%d.%m.%Y", "%m/%d/%Y")

#: Words of a custom field's name that say its digits are a code, not a quantity: `01000`
#: must not become 1000 (the standard zip and external_id are text for the same reason).
_CODE_WORDS = {"id", "code", "ref", "reference", "numero", "num", "no", "number", "siret",
               "siren", "iban"}
_LEADING_ZERO = re.compile(r"[+-]?0[0-9]")
#: A cell made safe for a spreadsheet: a quote before what reads as a formula.
_NEUTRALISED = re.compile("'[" + re.escape("".join(FORMULA_START)) + "]")
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,62}")
_POSITION = re.compile(r"[0-9]+")
_LIGATURES = str.maketrans({"œ": "oe", "Œ": "OE", "æ": "ae", "Æ": "AE", "ß": "ss"})
_IGNORED = re.compile(r"[\s\-_.]+")

# The platform is French-first: national numbers (06 12 34 56 78) are read as French ones; a
# number in international form (+44..., 0044...) is read as such whatever the region. A number
# that is not valid leaves the phone empty rather than losing the whole contact.
_PHONE = {"type": "phone", "region": "FR", "invalid": "empty"}
_EMAIL = {"type": "email"}
_DATES = tuple({"type": "date", "format": form} for form in DATE_FORMATS)
_BOOLEAN = {"type": "boolean"}
_NUMBERS = ({"type": "integer"}, {"type": "decimal"},
            {"type": "decimal", "decimal_separator": ","})
#: The types a standard field other than email, phone and civility can have; else text.
_STANDARD_TYPES = {"birth_date": _DATES, "optin": (_BOOLEAN,)}


class SampleError(ValueError):
    """A sample no template can be proposed from, or a --map that cannot apply; one line."""


@dataclass(frozen=True)
class Sample:
    """The first rows of a sample file and how it was read."""

    file: str
    dialect: Dialect
    rows: tuple[tuple[str, ...], ...]  # the cells of each non-blank row, the header (if any) first


#: A sample is read from its beginning: these bound only what a bomb could make of it.
SAMPLE_LIMITS = {"max_file_size": 1 << 31, "max_ratio": 1000}


def read_sample(path: str | os.PathLike[str], limit: int = SAMPLE_ROWS) -> Sample:
    """Read the first `limit` non-blank rows of the file at `path`, detecting its dialect; a
    gzipped or zipped sample is read as the file inside, which names the template."""
    packed = packing(Path(path).name)
    if packed.encrypted:
        raise SampleError("an encrypted sample cannot be read here: give the file decrypted")
    opened = partial(unpacked, Path(path), unpacking(packed, SAMPLE_LIMITS, None)
                     ) if packed.compression else None
    try:
        with reading(path, "auto", "auto", opened) as (dialect, rows):
            found = tuple(tuple(cells) for _, cells in islice(rows, limit))
    except (csv.Error, Unreadable) as error:
        raise SampleError(f"not a readable CSV file: {error}") from None
    return Sample(packed.inner, dialect, found)


def _ascii(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.translate(_LIGATURES))
    return decomposed.encode("ascii", "ignore").decode("ascii")


def _folded(name: str) -> str:
    """`name` as synonyms are compared: lower case, no accents, no spaces, dashes, _ or dots."""
    return _IGNORED.sub("", _ascii(name).casefold())


_FIELDS_BY_NAME = {_folded(name): field for field, names in SYNONYMS.items() for name in names}


def field_for(column: str) -> str | None:
    """The standard contact field a header name stands for, or None."""
    return _FIELDS_BY_NAME.get(_folded(column))


def slug(name: str) -> str:
    """A custom field name for a column: `Centre d'intérêt` -> `centre_d_interet`."""
    words = re.findall(r"[a-z0-9]+", _ascii(name).lower())
    text = "_".join(words)[:56]  # room for the suffix that makes it unique
    if not text:
        return "field"
    return text if text[0].isalpha() else f"field_{text}"


def _unique(name: str, taken: Container[str | None]) -> str:
    found, number = name, 1
    while found in taken:
        number += 1
        found = f"{name}_{number}"
    return found


def _converts(spec: dict[str, Any], values: Iterable[str]) -> list[Any] | None:
    """Whether the converter of `spec` takes every one of `values`; what it stored, if so."""
    convert = converter(spec)
    try:
        return [convert(value) for value in values]
    except FieldError:
        return None


def _mostly(spec: dict[str, Any], values: Sequence[str]) -> bool:
    """Whether the converter of `spec` turns most of `values` into a value."""
    convert = converter(spec)
    valid = 0
    for value in values:
        with suppress(FieldError):
            valid += convert(value) is not None
    return valid * 2 > len(values)


def _kind(value: str) -> str | None:
    """What a cell is when it is a value rather than a column name: e-mail, date, number."""
    for kind, specs in (("email", (_EMAIL,)), ("date", _DATES), ("number", _NUMBERS)):
        if any(_converts(spec, [value]) for spec in specs):
            return kind
    return None


def _values(rows: Iterable[Sequence[str]], index: int) -> list[str]:
    """The distinct non-empty cells of column `index` of `rows`, stripped, in order."""
    return list(dict.fromkeys(
        cell.strip() for cells in rows if index < len(cells) and (cell := cells[index]).strip()
    ))


def has_header(rows: Sequence[Sequence[str]]) -> bool:
    """Whether the first of `rows` names the columns.

    It does unless one of its cells is an e-mail, a date or a number while most cells below it
    are of the same kind (or there are none below): a column name is none of these.
    """
    first, below = rows[0], rows[1:]
    for index, cell in enumerate(first):
        kind = _kind(cell.strip())
        if kind is None:
            continue
        kinds = [_kind(value) for value in _values(below, index)]
        if kinds.count(kind) * 2 >= len(kinds):
            return False
    return True


def _width(rows: Sequence[Sequence[str]]) -> int:
    """The number of columns of a file without header: its most common row length."""
    width = Counter(len(cells) for cells in rows).most_common(1)[0][0]
    if width > 1 and all(cells[-1] == "" for cells in rows if len(cells) == width):
        width -= 1  # every line ends with a delimiter
    return width


def _columns(first: Iterable[str]) -> list[str]:
    """The header's column names, each present once: a template matches them by name."""
    columns = trimmed(list(first))
    if undecodable(columns):
        raise SampleError("the header has bytes that do not decode: save the file as UTF-8")
    for position, name in enumerate(columns, 1):
        if not name:
            raise SampleError(f"column {position} of the header has no name")
        if columns.count(name) > 1:
            raise SampleError(f"the header names {name!r} more than once")
    return columns


def _civility(values: Iterable[str]) -> dict[str, Any]:
    codes = {spelling.casefold(): code for code, spellings in CIVILITIES.items()
             for spelling in spellings}
    present = {codes.get(value.casefold()) for value in values}
    if None in present:
        return {}  # a spelling we do not know: text keeps it rather than rejecting the row
    chosen = [code for code in CIVILITIES if code in present]
    # Every spelling of the codes present, so that a later file writing "Madame" where the
    # sample wrote "Mme" still imports.
    mapping = {spelling: code for code in chosen for spelling in CIVILITIES[code]
               if spelling.casefold() != code}
    return {"type": "enum", "values": chosen, "mapping": mapping}


def _candidates(field: str, values: Sequence[str]) -> Iterator[dict[str, str]]:
    """The typed specs worth trying on a column, most specific first."""
    if field in SYNONYMS:  # a standard field is what its name says, whatever its values
        yield from _STANDARD_TYPES.get(field, ())
        return
    yield from _DATES
    # 0 and 1 alone are a boolean only for the opt-in: elsewhere they are more often a count.
    if any(value not in ("0", "1") for value in values):
        yield _BOOLEAN
    is_code = _CODE_WORDS.intersection(field.split("_"))
    if not is_code and not any(_LEADING_ZERO.match(value) for value in values):
        yield from _NUMBERS


def guess(field: str, values: Sequence[str]) -> dict[str, Any]:
    """The type and options of `field` ({} for text) from its distinct non-empty `values`."""
    # A standard key is of its own type (schemas.KEY_TYPES): a phone number that is not one
    # is left empty rather than stored as text.
    if field == "email":
        return dict(_EMAIL)
    if field == "phone":
        return dict(_PHONE)
    if not values:
        return {}
    if field == "civility":
        return _civility(values)
    for spec in _candidates(field, values):
        stored = _converts(spec, values)
        # strptime takes "90" for %Y: a date before year 1000 is a two-digit year, not a date.
        if stored is not None and not (spec["type"] == "date" and
                                       any(date.startswith("0") for date in stored)):
            return dict(spec)
    return {}


def _names(columns: Sequence[str], values: Sequence[Sequence[str]],
           header: bool) -> list[str | None]:
    """The field each column is imported as: its synonym, else a custom field by its slug."""
    names: list[str | None] = [None] * len(columns)
    if header:
        for index, column in enumerate(columns):
            field = field_for(column)
            if field is not None and field not in names:
                names[index] = field
    else:  # no names: the keys a contact can be matched on are found by their values
        for field, spec in (("email", _EMAIL), ("phone", _PHONE)):
            for index, found in enumerate(values):
                if names[index] is None and found and _mostly(spec, found):
                    names[index] = field
                    break
    for index, column in enumerate(columns):
        if names[index] is None:
            names[index] = _unique(slug(column), set(names))
    return names


def _column_index(columns: Sequence[str], name: str, option: str) -> int:
    """The index of the column a --map names: exactly, ignoring case and spaces, by position."""
    if name in columns:
        return columns.index(name)
    key = "".join(name.split()).casefold()
    matches = [i for i, column in enumerate(columns) if "".join(column.split()).casefold() == key]
    if len(matches) > 1:
        names = ", ".join(repr(columns[i]) for i in matches)
        raise SampleError(f"--map {option}: {name!r} could be {names}; name one exactly")
    if matches:
        return matches[0]
    if _POSITION.fullmatch(name) and 1 <= int(name) <= len(columns):
        return int(name) - 1
    listed = ", ".join(f"{position} {column!r}" for position, column in enumerate(columns, 1))
    raise SampleError(f"--map {option}: no column {name!r}; the columns are {listed}")


def override(names: list[str | None], columns: Sequence[str],
             option: str) -> list[str | None]:
    """`names` after one --map COLUMN=FIELD (FIELD `-`: the column is not imported).

    A column that held FIELD before becomes a custom field named from its header.
    """
    name, equals, field = option.rpartition("=")
    field = field.strip()
    if not equals or not name:
        raise SampleError(f"--map {option}: expected COLUMN=FIELD")
    if field != "-" and not _FIELD_NAME.fullmatch(field):
        raise SampleError(f"--map {option}: bad field name {field!r}: use lower-case letters, "
                          "digits and _, starting with a letter")
    index = _column_index(columns, name, option)
    names = list(names)
    names[index] = None if field == "-" else field
    for other, held in enumerate(names):
        if held == field and other != index:
            names[other] = _unique(slug(columns[other]), set(names))
    return names


def propose(sample: Sample, maps: Iterable[str] = ()) -> dict[str, Any]:
    """The template of `sample`'s file, with each --map COLUMN=FIELD of `maps` applied."""
    if not sample.rows:
        raise SampleError("the sample has no rows")
    header = has_header(sample.rows)
    if header:
        columns = _columns(sample.rows[0])
        data: Sequence[tuple[str, ...]] = sample.rows[1:]
    else:
        columns = [f"column {position}" for position in range(1, _width(sample.rows) + 1)]
        data = sample.rows
    width = len(columns)
    # Rows the import would reject (another width, bytes that do not decode) say nothing of
    # the types.
    data = [cells for cells in data if width in (len(cells), len(trimmed(list(cells))))
            and not undecodable(cells)]
    values = [_values(data, index) for index in range(width)]
    names = _names(columns, values, header)
    for option in maps:
        names = override(names, columns, option)
    match_on = next((key for key in KEYS if key in names), None)
    if match_on is None:
        listed = ", ".join(map(repr, columns))
        raise SampleError(
            "no column to match contacts on: say which holds the e-mail with --map COLUMN=email "
            f"(or COLUMN=external_id, COLUMN=phone); the columns are {listed}"
        )
    fields = {}
    for index, name in enumerate(names):
        if name is None:
            continue
        spec = {"column": columns[index] if header else index + 1}
        typed = guess(name, values[index])
        if "type" in typed:
            spec["type"] = typed["type"]
        if name == match_on:
            spec["required"] = True
        if any(_NEUTRALISED.match(value) for value in values[index]):
            spec["neutralised"] = True  # written safe for a spreadsheet: an export of ours
        fields[name] = {**spec, **typed}
    template: dict[str, Any] = {"file": sample.file, "columns": columns}
    if not header:
        template["header"] = False
    template["format"] = {"encoding": sample.dialect.encoding,
                          "delimiter": sample.dialect.delimiter}
    template["fields"] = fields
    template["match_on"] = match_on
    template["mode"] = "upsert"
    return template
