"""The template engine, pure: a header and rows in, contacts and rejections out."""

import hashlib
from collections import Counter
from dataclasses import dataclass
from functools import cached_property, lru_cache
from itertools import islice
from json.encoder import encode_basestring

import orjson

from schemas import KEY_TYPES, MAX_COLUMNS, SchemaError, check_template

from .csvfile import trimmed, undecodable
from .fields import LIBRARIES, FieldError, converter

#: The standard contact fields a template can match on; every other field is an attribute.
KEYS = tuple(KEY_TYPES)
#: Bump whenever a field type converts a cell otherwise: a stored fingerprint vouches for a
#: row's conversion by this code (Plan.fingerprint).
CONVERSIONS = 1
#: Chunks read without looking up fingerprints after one whose rows were mostly not the
#: same as stored (a first import, a file of new contacts): the lookups would not pay.
LOOKUP_PAUSE = 16


class HeaderMismatch(Exception):
    """The file's structure is not the template's; the message names the columns."""


@dataclass(frozen=True, slots=True)
class Rejection:
    """A row left out of the import, with where and why."""

    line: int
    reason: str
    column: str | None = None
    value: str | None = None
    cells: tuple = ()

    def as_dict(self):
        return {"line": self.line, "column": self.column, "value": self.value,
                "reason": self.reason}


class Contact:
    """One valid row: its match key, its standard keys, its other fields as a `document`.

    `cleared` names the fields its empty cells erase (empty_cells: clear).
    """

    __slots__ = ("_cells", "cleared", "fingerprint", "key", "keys", "line", "text")
    #: Written as such by a row the database upserts (bulk.Writes._plain): a contact is
    #: unsubscribed only by the unsubscribe mode, which changes.Batch applies.
    unsubscribed = False

    def __init__(self, line, cells, key, keys, text, cleared=(), fingerprint=None):
        self.line, self._cells, self.key, self.keys = line, cells, key, keys
        self.text, self.cleared, self.fingerprint = text, cleared, fingerprint

    @property
    def cells(self):
        """The row's cells, kept joined (by _UNIT) and split when asked for (a rejection)."""
        cells = self._cells
        return cells.split(_UNIT) if type(cells) is str else cells

    @property
    def fields(self):
        """Every field of the row, keys included; None for a field to erase."""
        return {**self.keys, **orjson.loads(self.text), **dict.fromkeys(self.cleared)}


def _jsonb_order(name):
    encoded = name.encode()
    return len(encoded), encoded


def _keyed(names):
    """`names` in jsonb's order of keys, each with its JSON key and colon."""
    return tuple((name, encode_basestring(name) + ": ") for name in sorted(names, key=_jsonb_order))


@lru_cache(maxsize=64)  # the contacts of a file share their field names
def documenter(names):
    """The `document` function of dicts whose fields are among the tuple `names`."""
    prefixes = _keyed(names)

    def document(values):  # a plain loop, faster than a comprehension: once per contact
        parts = []
        for name, prefix in prefixes:
            value = values.get(name)
            if value is not None:
                parts.append(prefix + _json(value))
        return "{" + ", ".join(parts) + "}"

    return document


def _json(value):
    """A field's value as jsonb writes it (booleans spelled out: faster)."""
    return (encode_basestring(value) if type(value) is str else "true" if value is True
            else "false" if value is False else orjson.dumps(value).decode())


def document(values):
    """`values` as JSON text in PostgreSQL's own jsonb output (keys shorter first, then by
    bytes; ", " and ": "; None values left out), so that a stored contact's `fields::text`
    and a row's document are equal strings when their fields are (SQLite stores the
    document itself)."""
    return documenter(tuple(values))(values)


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    index: int
    column: str
    convert: object
    required: bool
    default: str | None
    trim: bool
    key: bool  # one of KEYS, stored in its own column


@dataclass(frozen=True)
class Plan:
    """A template applied to one file's header: where each field is, how to convert it."""

    template: dict
    columns: tuple  # the file's columns (the template's when the file has no header)
    steps: tuple
    encoding: str = "utf-8"

    @property
    def places(self):
        """Each field but the keys: (its place in the row's document, in jsonb's order of
        keys, its JSON key and colon)."""
        keyed = _keyed(step.name for step in self.steps if not step.key)
        return {name: (place, prefix) for place, (name, prefix) in enumerate(keyed)}

    @property
    def width(self):
        return len(self.columns)

    def cut(self, unfinished):
        """The line where the file was cut, in the middle of its last record, or None.

        `unfinished` is that record when no line break ends it (csvfile.Unfinished): a cut
        when the file ends inside a quoted cell or the record lacks cells; a complete file
        may just lack the final line break.
        """
        if unfinished and (unfinished.quoted or unfinished.cells < self.width):
            return unfinished.line
        return None

    @cached_property
    def fingerprint(self):
        """The function: a row's cells joined by _UNIT, in UTF-8 -> the row's fingerprint, a
        signed 64-bit hash of the row, this plan's template and columns, CONVERSIONS and
        LIBRARIES.

        A contact keeps the fingerprint of the row that last wrote it: the same row again
        would change nothing, so it needs no converting (`chunks`).
        """
        start = hashlib.blake2b(digest_size=8, key=hashlib.blake2b(orjson.dumps(
            [CONVERSIONS, LIBRARIES, self.template, self.columns],
            option=orjson.OPT_SORT_KEYS)).digest())

        def fingerprint(encoded):
            digest = start.copy()
            digest.update(encoded)
            return int.from_bytes(digest.digest(), "big", signed=True)

        return fingerprint


class KeyFilter:
    """A set of key values as a Bloom filter of one hash (8 MiB): it may take a value never
    added for one that was (1.5% of them after a million values, 7% after five million),
    never the reverse."""

    BITS = 1 << 26

    def __init__(self):
        self.bits = bytearray(self.BITS >> 3)

    def meets(self, value):
        """Whether `value` may have been added; it is added now (one call a row)."""
        spot = hash(value) & (self.BITS - 1)
        bits, byte, bit = self.bits, spot >> 3, 1 << (spot & 7)
        if bits[byte] & bit:
            return True
        bits[byte] |= bit
        return False

    def update(self, values):
        """Add each of `values`."""
        self.met(values)

    def met(self, values):
        """Those of `values` that may have been added; all of them are added now (one pass)."""
        bits, mask = self.bits, self.BITS - 1
        found = set()
        for value in values:
            spot = hash(value) & mask
            byte, bit = spot >> 3, 1 << (spot & 7)
            if bits[byte] & bit:
                found.add(value)
            else:
                bits[byte] |= bit
        return found


def check(template):
    """Validate a template completely: its schema, then each field's options (SchemaError)."""
    check_template(template)
    for name, spec in template["fields"].items():
        try:
            converter(spec)
        except ValueError as error:
            raise SchemaError(f"fields.{name}: {error}") from None
    return template


def _normalise(name, match):
    return "".join(name.split()).casefold() if match == "ignore_case_and_spaces" else name


def _header_indexes(template, header):
    """Index in `header` of each template column; raise HeaderMismatch naming what differs.

    Sets and counts, not searches of lists: a header of many columns is checked in one pass.
    """
    options = template.get("header") or {}
    match = options.get("match", "exact")
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
    if unexpected and options.get("extra_columns", "reject") == "reject":
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


def plan(template, header, encoding="utf-8"):
    """Plan the import of a file whose header line is `header` (None when it has none)."""
    if template.get("header") is False:
        columns = tuple(template["columns"])
        indexes = {name: i for i, name in enumerate(columns)}
    else:
        columns = tuple(trimmed(header))
        if len(columns) > MAX_COLUMNS:
            raise HeaderMismatch(f"the header has {len(columns)} columns, more than the "
                                 f"{MAX_COLUMNS} a template may have")
        indexes = _header_indexes(template, list(columns))
    match_on = template.get("match_on", "email")
    steps = []
    for name, spec in template["fields"].items():
        column = spec["column"]
        index = column - 1 if isinstance(column, int) else indexes[column]
        if index >= len(columns):
            raise HeaderMismatch(f"field {name} is in column {column}, the file has {len(columns)}")
        steps.append(Step(
            name=name,
            index=index,
            column=columns[index],
            convert=converter(spec),
            required=spec.get("required", False) or name == match_on,
            default=spec.get("default"),
            trim=spec.get("trim", True),
            key=name in KEYS,
        ))
    return Plan(template, columns, tuple(steps), encoding)


#: What `fates` yields for a row the duplicates policy leaves out.
SKIPPED = "skipped"
#: What `fates` yields for a row that last wrote its contact: it would change nothing.
SAME = "same"


class Chunk:
    """Consecutive rows of a file: the Contacts of the valid ones, the rest's rejections."""

    def __init__(self):
        self.contacts = []
        self.rejections = []
        self.skipped = 0
        self.same = 0  # rows that last wrote their contact: unchanged, not converted
        self.rows = 0
        self.bytes_read = 0  # of the file, when the chunk was read
        self.cut = None  # Plan.cut, known once the file is read to its end (the last chunk)

    def __reduce__(self):
        # Sent between processes: its contacts as columns, each row's cells as one string (a
        # row whose cells hold the separator as its list): a fifth of the pickling time.
        contacts = self.contacts
        columns = (
            [c.line for c in contacts], [c._cells for c in contacts],
            [c.key for c in contacts], [c.keys for c in contacts], [c.text for c in contacts],
            [c.cleared for c in contacts], [c.fingerprint for c in contacts],
        )
        return _chunk, (columns, self.rejections, self.skipped, self.same, self.rows,
                        self.bytes_read, self.cut)


_UNIT = "\x1f"  # the unit separator: a row's cells joined
NUL = "\x00"  # which PostgreSQL's text and jsonb cannot hold: it rejects its row


def _chunk(columns, rejections, skipped, same, rows, bytes_read, cut):
    chunk = Chunk()
    chunk.contacts = list(map(Contact, *columns))
    chunk.rejections, chunk.skipped, chunk.same, chunk.rows, chunk.bytes_read, chunk.cut = (
        rejections, skipped, same, rows, bytes_read, cut)
    return chunk


def contacts(plan, rows, outcome):
    """Yield a Contact for each valid row of `rows`; tell `outcome` of every other row.

    `rows` yields (line, cells) after the header. `outcome.reject(rejection)` receives each
    rejected row, `outcome.skip()` each row left out by the duplicates policy.
    """
    for fate in fates(plan, rows):
        if type(fate) is Contact:
            yield fate
        elif fate is SKIPPED:
            outcome.skip()
        else:
            outcome.reject(fate)


def chunks(plan, rows, size, fingerprints=None):
    """Yield the rows' fates grouped in Chunks of `size` rows (the last one may be smaller).

    `fingerprints`, if given, asks for the stored fingerprints of match key values: it takes
    the values and returns a function that waits for the answer, {value: the fingerprint of
    the stored contact holding it}, as stored before this import; the next chunk's are asked
    before a chunk is checked, so that the database answers meanwhile. A row whose
    fingerprint is its contact's is counted as `same`, and not converted.
    """
    met = None if fingerprints is None else KeyFilter()
    seen = {}  # the duplicates policy's, across chunks
    rows = iter(rows)
    blocks = iter(lambda: list(islice(rows, size)), [])
    block = next(blocks, None)
    pause = 0  # blocks to read without asking
    answer = _ask(plan, block, fingerprints) if fingerprints and block else None
    while block is not None:
        coming = next(blocks, None)
        known = answer() if answer is not None else None
        pause = max(pause - 1, 0)
        answer = _ask(plan, coming, fingerprints) if coming and fingerprints and not pause else None
        chunk = Chunk()
        for fate in fates(plan, block, known, met, seen):
            if type(fate) is Contact:
                chunk.contacts.append(fate)
            elif fate is SAME:
                chunk.same += 1
            elif fate is SKIPPED:
                chunk.skipped += 1
            else:
                chunk.rejections.append(fate)
        chunk.rows = len(block)
        if known is not None and chunk.same * 2 < chunk.rows:
            pause = LOOKUP_PAUSE
        yield chunk
        block = coming


def _ask(plan, block, fingerprints):
    """Ask `fingerprints` for those of the match keys of `block`; return a function that
    waits for line -> (match key, stored fingerprint) of each row whose key a stored
    contact with a fingerprint holds.

    A row's fingerprint, not its key, says whether it is the one that last wrote the
    contact found: the key needs only find that contact, which the converter's cheaper
    `lookup`, when it has one, does for nearly every row (an e-mail lower-cased, not checked;
    a row it misses is converted, as are the others).
    """
    match_on = plan.template.get("match_on", "email")
    step = next(s for s in plan.steps if s.name == match_on)
    index, trim, default = step.index, step.trim, step.default
    convert = getattr(step.convert, "lookup", step.convert)
    keys = {}
    for line, cells in block:  # as _fields reads the key's cell
        if len(cells) > index and NUL not in cells[index]:  # a NUL rejects its row (`fates`)
            value = cells[index].strip() if trim else cells[index]
            if not value and default is not None:
                value = default
            try:
                key = convert(value) if value else None
            except FieldError:
                continue
            if key is not None:
                keys[line] = key
    answer = fingerprints(set(keys.values())) if keys else dict

    def known():
        stored = answer()
        return {line: (key, stored[key]) for line, key in keys.items() if key in stored}

    return known


def fates(plan, rows, known=None, met=None, seen=None):
    """Yield, for each row of `rows`, its Contact, its Rejection, SKIPPED or SAME.

    `rows` yields (line, cells) after the header. `known` maps a row's line to its match
    key and the fingerprint of the stored contact holding it (`_ask`); the row is SAME
    when that is its own fingerprint and no row before it had its key (the KeyFilter `met`
    holds the keys of the rows before): nothing else can have changed its contact. `seen`
    holds the keys met before, for the first_wins and reject duplicates policies.
    """
    template = plan.template
    match_on = template.get("match_on", "email")
    clear = template.get("empty_cells", "keep") == "clear"
    duplicates = template.get("duplicates", "last_wins")
    # Only the first_wins and reject policies need to remember the keys already seen.
    seen = None if duplicates == "last_wins" else {} if seen is None else seen
    fingerprinted, width, places = plan.fingerprint, plan.width, plan.places
    # Unpacked per row, faster than attributes; plain text fields (most of a file's) apart,
    # as they cannot reject a row: most cells need no check.
    def is_plain(s):
        return s.convert is str and s.trim and s.default is None and not (s.required or s.key)

    plain = tuple((s.name, s.index, *places[s.name]) for s in plan.steps if is_plain(s))
    steps = tuple((s.name, s.index, s.convert, s.key, s.required, s.default, s.trim, s.column,
                   *places.get(s.name, (None, None))) for s in plan.steps if not is_plain(s))
    document = [None] * len(places)  # each row's, filled by _fields
    for line, cells in rows:
        if len(cells) == width + 1 and cells[-1] == "":
            cells = cells[:-1]  # a trailing delimiter
        if len(cells) != width:
            yield Rejection(
                line, f"expected {width} cells, found {len(cells)}", cells=tuple(cells)
            )
            continue
        joined = _UNIT.join(cells)  # the cells travel joined; a cell holding _UNIT, as a list
        try:
            encoded = joined.encode()
        except UnicodeEncodeError:  # a lone surrogate: a byte that did not decode
            bad = undecodable(cells)
            yield Rejection(line, f"bytes {bad!r} are not valid {plan.encoding}",
                            cells=tuple(cells))
            continue
        if NUL in joined:
            index = next(i for i, cell in enumerate(cells) if NUL in cell)
            yield Rejection(line, "contains a NUL character", plan.columns[index],
                            cells=tuple(cells))
            continue
        unit = joined.count(_UNIT) == len(cells) - 1
        fingerprint = fingerprinted(encoded) if unit else None
        stored = known.get(line) if known else None
        if stored is not None and stored[1] == fingerprint and not met.meets(stored[0]):
            key, fields = stored[0], SAME
        else:
            fields = _fields(steps, plain, document, line, cells, clear)
            if type(fields) is Rejection:
                yield fields
                continue
            keys, text, cleared = fields
            key = keys[match_on]
            if met is not None:
                met.meets(key)
        if seen is not None:
            first = seen.setdefault(key, line)
            if first != line:
                if duplicates == "reject":
                    yield Rejection(line, f"duplicate of line {first} ({match_on} {key})",
                                    cells=tuple(cells))
                else:
                    yield SKIPPED
                continue
        yield SAME if fields is SAME else Contact(
            line, joined if unit else cells, key, keys, text, cleared, fingerprint)


def _fields(steps, plain, document, line, cells, clear):
    """The converted keys, document and erased fields of one row, or the Rejection that
    explains why it has none. `plain` are the trimmed text fields; `document` the list
    in which each field's JSON goes to its place (Plan.places), the keys and JSON of their
    document's fields in jsonb's order, which builds it at a third of a dict's cost."""
    keys, parts, cleared = {}, document.copy(), ()
    for name, index, convert, key, required, default, trim, column, place, prefix in steps:
        value = cells[index].strip() if trim else cells[index]
        if not value and default is not None:
            value = default
        try:
            converted = convert(value) if value else None
        except FieldError as error:
            return Rejection(line, str(error), column, value, tuple(cells))
        if converted is not None:
            if key:
                keys[name] = converted
            else:
                parts[place] = prefix + _json(converted)
        elif required:
            reason = f"required field {name} is empty" if not value else (
                f"required field {name}: {value!r} is not valid")
            return Rejection(line, reason, column, value, tuple(cells))
        elif clear:
            cleared += (name,)
    for name, index, place, prefix in plain:
        value = cells[index].strip()
        if value:
            parts[place] = prefix + encode_basestring(value)
        elif clear:
            cleared += (name,)
    return keys, "{" + ", ".join(filter(None, parts)) + "}", cleared
