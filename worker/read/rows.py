"""A file's rows into contacts, pure: each row converted by the template's Plan, or rejected
with its line and reason, by Chunks of consecutive rows."""

# Annotations as strings: free for the functions `fates` and `_ask` define at each chunk.
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from itertools import compress, islice
from json.encoder import encode_basestring
from operator import itemgetter
from typing import Any, NamedTuple, Protocol

from ..contact import UNIT, Contact, KeyFilter, Rejection, json_value
from .csvfile import undecodable
from .fields import FieldError
from .template import Plan, Step

#: Chunks read without looking up fingerprints after one whose rows were mostly not the
#: same as stored (a first import, a file of new contacts): the lookups would not pay.
LOOKUP_PAUSE = 16


#: What `fates` yields for a row the duplicates policy leaves out.
SKIPPED = "skipped"


#: What `fates` yields for a row that last wrote its contact: it would change nothing.
SAME = "same"


NUL = "\x00"  # which PostgreSQL's text and jsonb cannot hold: it rejects its row


#: The bytes of a file a chunk holds at most, about: a chunk of a wide file's rows (twenty
#: columns of 250 bytes a row) takes fewer rows than CHUNK_ROWS (worker/importer.py), which
#: a file of narrow rows fills; its rows' objects, read ahead, would take the worker past its
#: memory target (docs/performance.md).
CHUNK_BYTES = 5 << 18  # 1.25 MiB
#: Rows converted at a time by `contacts`, the reference conversion.
REFERENCE_BLOCK = 1000

#: What `chunks` asks stored fingerprints with: match key values -> the function that waits
#: for {value: the fingerprint of the stored contact holding it}.
Fingerprints = Callable[[set[Any]], Callable[[], dict[Any, int]]]

#: A field as `_fields` unpacks it at each row: name, index, convert, key, required, default,
#: trim, column, then its place and JSON key and colon in the document (Plan.places; None for
#: a key).
_Conversion = tuple[str, int, Callable[[str], object], bool, bool, str | None, bool, str,
                    int | None, str | None]


class Outcome(Protocol):
    """What `contacts` tells of each row that is not a Contact (importer.Outcome)."""

    def reject(self, rejection: Rejection, /) -> None: ...

    def skip(self) -> None: ...


class Chunk:
    """Consecutive rows of a file: the Contacts of the valid ones, the rest's rejections."""

    def __init__(self) -> None:
        self.contacts: list[Contact] = []
        self.rejections: list[Rejection] = []
        self.skipped = 0
        self.same = 0  # rows that last wrote their contact: unchanged, not converted
        self.rows = 0
        self.bytes_read = 0  # of the file, when the chunk was read
        #: Plan.cut, known once the file is read to its end (the last chunk)
        self.cut: int | None = None

    def __reduce__(self) -> tuple[Callable[..., Chunk], tuple[object, ...]]:
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


def _chunk(columns: tuple[list[Any], ...], rejections: list[Rejection], skipped: int, same: int,
           rows: int, bytes_read: int, cut: int | None) -> Chunk:
    chunk = Chunk()
    chunk.contacts = list(map(Contact, *columns))
    chunk.rejections, chunk.skipped, chunk.same, chunk.rows, chunk.bytes_read, chunk.cut = (
        rejections, skipped, same, rows, bytes_read, cut)
    return chunk


def contacts(plan: Plan, rows: Iterable[tuple[int, list[str]]], outcome: Outcome
             ) -> Iterator[Contact]:
    """Yield a Contact for each valid row of `rows`, converted row by row; tell `outcome` of
    every other row.

    `rows` yields (line, cells) after the header. `outcome.reject(rejection)` receives each
    rejected row, `outcome.skip()` each row left out by the duplicates policy. The reference
    of `chunks`, which converts by columns: both yield the same (a test checks it).
    """
    how = conversions(plan)
    seen: dict[Any, int] = {}  # the duplicates policy's, across blocks
    rows = iter(rows)
    for block in iter(lambda: list(islice(rows, REFERENCE_BLOCK)), []):
        checked, todo = _checked(plan, block, None)
        for fate in fates(plan, how, checked, iter(by_rows(how, todo)), None, seen):
            if type(fate) is Contact:
                yield fate
            elif fate is SKIPPED:
                outcome.skip()
            else:  # a Rejection, which the tests above do not narrow `fate` to for mypy
                outcome.reject(fate)  # type: ignore[arg-type]


def chunks(plan: Plan, rows: Iterable[tuple[int, list[str]]], size: int,
           fingerprints: Fingerprints | None = None, convert: Converting | None = None,
           ahead: int = 0, bytes_read: Callable[[], int] | None = None) -> Iterator[Chunk]:
    """Yield the rows' fates grouped in Chunks of `size` rows (the last one may be smaller),
    or of about CHUNK_BYTES of the file when `bytes_read` tells how far its reading is.

    `fingerprints`, if given, asks for the stored fingerprints of match key values: it takes
    the values and returns a function that waits for the answer, {value: the fingerprint of
    the stored contact holding it}, as stored before this import; the next chunk's are asked
    before a chunk is checked, so that the database answers meanwhile. A row whose
    fingerprint is its contact's is counted as `same`, and not converted.

    `convert`, if given, starts converting a chunk's rows and returns the function that waits
    for them (`converting`: in other processes); `ahead` chunks are then read and sent to it
    before the first one is done. By default each chunk is converted by columns, in turn.
    """
    how = conversions(plan)
    start = convert or (lambda todo: partial(by_columns, how, todo))
    met = None if fingerprints is None else KeyFilter()
    seen: dict[Any, int] = {}  # the duplicates policy's, across chunks
    blocks = _blocks(rows, size, bytes_read)
    block = next(blocks, None)
    pause = 0  # blocks to read without asking
    answer = _ask(plan, block, fingerprints) if fingerprints and block else None
    # The chunks checked and being converted, in file order: their fates depend on the rows
    # before them, so they are decided in turn.
    converting: deque[tuple[int, list[Checked], Callable[[], list[Converted]]]] = deque()
    while block is not None:
        coming = next(blocks, None)
        known = answer() if answer is not None else None
        pause = max(pause - 1, 0)
        answer = _ask(plan, coming, fingerprints) if coming and fingerprints and not pause else None
        checked, todo = _checked(plan, block, known)
        if known is not None and len(todo) * 2 > len(block):  # mostly not as stored
            pause = LOOKUP_PAUSE
        converting.append((len(block), checked, start(todo)))
        while len(converting) > ahead:
            yield _chunk_of(plan, how, *converting.popleft(), met, seen)
        block = coming
    while converting:
        yield _chunk_of(plan, how, *converting.popleft(), met, seen)


def _blocks(rows: Iterable[tuple[int, list[str]]], size: int,
            bytes_read: Callable[[], int] | None) -> Iterator[list[tuple[int, list[str]]]]:
    """The rows by blocks of at most `size`, each of about CHUNK_BYTES of the file when
    `bytes_read` says how far the reading is: as many rows as the block before took bytes."""
    rows = iter(rows)
    start = bytes_read() if bytes_read else 0
    count = size
    while block := list(islice(rows, count)):
        yield block
        if bytes_read is not None:
            read = bytes_read()
            count = min(size, max(int(CHUNK_BYTES * len(block) / max(read - start, 1)), 1))
            start = read


def _chunk_of(plan: Plan, how: Conversions, rows: int, checked: list[Checked],
              converted: Callable[[], list[Converted]], met: KeyFilter | None,
              seen: dict[Any, int]) -> Chunk:
    chunk = Chunk()
    for fate in fates(plan, how, checked, iter(converted()), met, seen):
        if type(fate) is Contact:
            chunk.contacts.append(fate)
        elif fate is SAME:
            chunk.same += 1
        elif fate is SKIPPED:
            chunk.skipped += 1
        else:  # a Rejection, which the tests above do not narrow `fate` to for mypy
            chunk.rejections.append(fate)  # type: ignore[arg-type]
    chunk.rows = rows
    return chunk


def _ask(plan: Plan, block: list[tuple[int, list[str]]], fingerprints: Fingerprints
         ) -> Callable[[], dict[int, tuple[Any, int]]]:
    """Ask `fingerprints` for those of the match keys of `block`; return a function that
    waits for line -> (match key, stored fingerprint) of each row whose key a stored
    contact with a fingerprint holds.

    A row's fingerprint, not its key, says whether it is the one that last wrote the
    contact found: the key needs only find that contact, which the converter's cheaper
    `lookup`, when it has one, does for nearly every row (an e-mail lower-cased, not checked;
    a row it misses is converted, as are the others).
    """
    step = _match_step(plan)
    convert = getattr(step.convert, "lookup", step.convert)
    keys: dict[int, Any] = {}
    for line, cells in block:
        key = _match_key(step, convert, cells)
        if key is not None:
            keys[line] = key
    answer = fingerprints(set(keys.values())) if keys else dict

    def known() -> dict[int, tuple[Any, int]]:
        stored = answer()
        return {line: (key, stored[key]) for line, key in keys.items() if key in stored}

    return known


def _match_step(plan: Plan) -> Step:
    return next(s for s in plan.steps if s.name == plan.template["match_on"])


def _match_key(step: Step, convert: Callable[[str], Any], cells: Sequence[str]) -> Any:
    """The match key value of a row's `cells` as `convert` reads the key's cell (as `_fields`
    reads it), or None: none, or not a valid one."""
    index = step.index
    if len(cells) <= index or NUL in cells[index]:  # a NUL rejects its row (`fates`)
        return None
    value = cells[index].strip() if step.trim else cells[index]
    if not value and step.default is not None:
        value = step.default
    try:
        return convert(value) if value else None
    except FieldError:
        return None


def presence(plan: Plan) -> Callable[[Chunk], list[Any]]:
    """mirror: a function giving the match key values a Chunk's rows hold: its Contacts',
    and those of its rejected rows with a valid one (their contact is in the file, whatever
    else the row got wrong). Skipped rows repeat an earlier row's value."""
    step = _match_step(plan)

    def present(chunk: Chunk) -> list[Any]:
        keys = [contact.key for contact in chunk.contacts]
        keys += [_match_key(step, step.convert, rejection.cells)
                 for rejection in chunk.rejections if rejection.cells]
        return keys

    return present


class Conversions(NamedTuple):
    """How a Plan's fields convert a row: its checked fields (`_Conversion`), its plain text
    fields (name, index, place, JSON key and colon: they cannot reject a row, most cells
    need no check), and the places of a document's fields (Plan.places), empty."""

    steps: tuple[_Conversion, ...]
    plain: tuple[tuple[str, int, int, str], ...]
    document: list[str | None]
    clear: bool  # empty_cells: clear


def conversions(plan: Plan) -> Conversions:
    places = plan.places

    def is_plain(s: Step) -> bool:
        return s.convert is str and s.trim and s.default is None and not (s.required or s.key)

    return Conversions(
        tuple((s.name, s.index, s.convert, s.key, s.required, s.default, s.trim, s.column,
               *places.get(s.name, (None, None))) for s in plan.steps if not is_plain(s)),
        tuple((s.name, s.index, *places[s.name]) for s in plan.steps if is_plain(s)),
        [None] * len(places),
        plan.template["empty_cells"] == "clear",
    )


#: What a converter makes of a row: its keys, document and erased fields, or its Rejection.
Converted = tuple[dict[str, Any], str, tuple[str, ...]] | Rejection
#: What starts converting the rows of a chunk elsewhere, and returns the function that waits
#: for what `by_columns` makes of them (`chunks`).
Converting = Callable[[list[tuple[int, list[str]]]], Callable[[], list[Converted]]]


#: A row as `_checked` leaves it: its Rejection, or its line, cells, cells joined, whether
#: the join holds them (no cell holds UNIT), fingerprint, and (match key, fingerprint) of the
#: stored contact when that is the row's own fingerprint (None: the row is converted).
Checked = Rejection | tuple[int, list[str], str, bool, int | None, tuple[Any, int] | None]


def _checked(plan: Plan, rows: list[tuple[int, list[str]]],
             known: dict[int, tuple[Any, int]] | None) -> tuple[list[Checked],
                                                                list[tuple[int, list[str]]]]:
    """Each row of `rows` checked on its own (its cells, its bytes, its fingerprint), and
    those of them to convert."""
    fingerprinted, width = plan.fingerprint, plan.width
    checked: list[Checked] = []
    todo: list[tuple[int, list[str]]] = []
    for line, cells in rows:
        if len(cells) == width + 1 and cells[-1] == "":
            cells = cells[:-1]  # a trailing delimiter
        if len(cells) != width:
            checked.append(Rejection(
                line, f"expected {width} cells, found {len(cells)}", cells=tuple(cells)))
            continue
        joined = UNIT.join(cells)  # the cells travel joined; a cell holding UNIT, as a list
        try:
            encoded = joined.encode()
        except UnicodeEncodeError:  # a lone surrogate: a byte that did not decode
            bad = undecodable(cells)
            checked.append(Rejection(line, f"bytes {bad!r} are not valid {plan.encoding}",
                                     cells=tuple(cells)))
            continue
        if NUL in joined:
            index = next(i for i, cell in enumerate(cells) if NUL in cell)
            checked.append(Rejection(line, "contains a NUL character", plan.columns[index],
                                     cells=tuple(cells)))
            continue
        unit = joined.count(UNIT) == len(cells) - 1
        fingerprint = fingerprinted(encoded) if unit else None
        stored = known.get(line) if known else None
        if stored is None or stored[1] != fingerprint:
            stored = None
            todo.append((line, cells))
        checked.append((line, cells, joined, unit, fingerprint, stored))
    return checked, todo


def fates(plan: Plan, how: Conversions, checked: list[Checked], converted: Iterator[Converted],
          met: KeyFilter | None, seen: dict[Any, int] | None
          ) -> Iterator[Contact | Rejection | str]:
    """Yield, for each row of `checked` (`_checked`), in file order, its Contact, its
    Rejection, SKIPPED or SAME; `converted` gives what a converter made of the rows to
    convert, in that order.

    A row is SAME when the stored contact its key found has the row's own fingerprint and
    no row before it had its key (the KeyFilter `met` holds the keys of the rows before):
    nothing else can have changed its contact. `seen` holds the keys met before, for the
    first_wins and reject duplicates policies.
    """
    match_on = plan.template["match_on"]
    duplicates = plan.template["duplicates"]
    # Only the first_wins and reject policies need to remember the keys already seen.
    seen = None if duplicates == "last_wins" else {} if seen is None else seen
    fields: str | Converted  # SAME, or a converter's
    for row in checked:
        if type(row) is Rejection:
            yield row
            continue
        line, cells, joined, unit, fingerprint, stored = row  # type: ignore[misc]
        # `met` comes with `known` (chunks).
        if stored is not None and not met.meets(stored[0]):  # type: ignore[union-attr]
            key, fields = stored[0], SAME
        else:
            fields = next(converted) if stored is None else by_rows(how, [(line, cells)])[0]
            if type(fields) is Rejection:
                yield fields
                continue
            keys, text, cleared = fields  # type: ignore[misc]
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


def by_rows(how: Conversions, rows: list[tuple[int, list[str]]]) -> list[Converted]:
    """Convert `rows` one by one: the reference of `by_columns`."""
    steps, plain, document, clear = how
    return [_fields(steps, plain, document, line, cells, clear) for line, cells in rows]


def by_columns(how: Conversions, rows: list[tuple[int, list[str]]]) -> list[Converted]:
    """Convert `rows` a column at a time, as `by_rows` converts them one by one.

    Each field's cells are read, trimmed and converted in one pass over the block, its
    repeated values once (`_converted`); each row's document is then joined from its
    fields' JSON. A row is rejected for the first of its fields, in the template's order,
    that rejects it.
    """
    if not rows:
        return []
    lines = [line for line, _ in rows]
    table = [cells for _, cells in rows]
    rejected: dict[int, Rejection] = {}  # row -> its first field's rejection
    keys: list[tuple[str, list[Any]]] = []
    parts: list[list[str | None] | None] = [None] * len(how.document)  # place -> its JSON
    empty: list[tuple[str, list[bool]]] = []  # the fields an empty cell erases, in order
    for name, index, convert, key, required, default, trim, column, place, prefix in how.steps:
        values = list(map(itemgetter(index), table))
        if trim:
            values = list(map(str.strip, values))
        if default is not None:
            values = [value or default for value in values]
        converted, errors = _converted(convert, values)
        for row, error in errors.items():
            if row not in rejected:
                rejected[row] = Rejection(lines[row], str(error), column, values[row],
                                          tuple(table[row]))
        if required:
            for row in [r for r, value in enumerate(converted) if value is None]:
                if row not in rejected:
                    value = values[row]
                    reason = f"required field {name} is empty" if not value else (
                        f"required field {name}: {value!r} is not valid")
                    rejected[row] = Rejection(lines[row], reason, column, value,
                                              tuple(table[row]))
        if key:
            keys.append((name, converted))
        else:  # not a key: its place and prefix are set (Plan.places)
            parts[place] = _json(prefix, converted, json_value)  # type: ignore[index, arg-type]
        if how.clear:
            empty.append((name, [value is None for value in converted]))
    for name, index, place, prefix in how.plain:
        values = list(map(str.strip, map(itemgetter(index), table)))
        parts[place] = _json(prefix, values, encode_basestring)
        if how.clear:
            empty.append((name, [not value for value in values]))
    texts = ["{" + ", ".join(filter(None, row)) + "}"
             for row in zip(*parts, strict=True)] if parts else ["{}"] * len(rows)  # type: ignore[arg-type]
    if len(keys) == 1:  # the match key alone, most often
        (only, key_values), = keys
        keyed = [{} if value is None else {only: value} for value in key_values]
    else:  # a key at a time, each row's keys in the template's order
        keyed = [{} for _ in rows]
        for name, key_values in keys:
            for row_keys, value in zip(keyed, key_values, strict=True):
                if value is not None:
                    row_keys[name] = value
    erased = tuple(name for name, _ in empty)
    cleared = [tuple(compress(erased, flags))
               for flags in zip(*(f for _, f in empty), strict=True)] if empty else [()] * len(rows)
    return [rejected.get(row) or (keyed[row], texts[row], cleared[row])
            for row in range(len(rows))]


def _once(values: list[Any]) -> dict[Any, Any] | None:
    """The distinct values of a column when they repeat (a civility, a yes or no, a city:
    half the cells or more), to convert each once; else None."""
    distinct = dict.fromkeys(values)
    return distinct if len(distinct) * 2 <= len(values) else None


def _json(prefix: str, values: list[Any], encode: Callable[[Any], str]) -> list[str | None]:
    """Each of a field's `values` as its document holds it (its JSON key and colon, then its
    JSON), None for an empty or None one; a column whose values repeat encodes each once."""
    distinct = _once(values)
    if distinct is not None:
        for value in distinct:  # one type a column: no True taken for 1
            distinct[value] = None if value is None or value == "" else prefix + encode(value)
        return list(map(distinct.__getitem__, values))
    return [None if value is None or value == "" else prefix + encode(value) for value in values]


def _converted(convert: Callable[[str], object], values: list[str]
               ) -> tuple[list[Any], dict[int, FieldError]]:
    """Each of `values` converted (None for an empty one), and the FieldError of each row
    whose value does not convert (None in the list); repeated values once (`_once`)."""
    distinct = _once(values)
    if distinct is not None:
        errors: dict[str, FieldError] = {}
        for value in distinct:
            try:
                distinct[value] = convert(value) if value else None
            except FieldError as error:
                errors[value] = error
        converted = [distinct[value] for value in values]
        return converted, ({row: errors[value] for row, value in enumerate(values)
                            if value in errors} if errors else {})
    converted = []
    failed: dict[int, FieldError] = {}
    for row, value in enumerate(values):
        try:
            converted.append(convert(value) if value else None)
        except FieldError as error:
            converted.append(None)
            failed[row] = error
    return converted, failed


def _fields(steps: tuple[_Conversion, ...], plain: tuple[tuple[str, int, int, str], ...],
            document: list[str | None], line: int, cells: list[str], clear: bool
            ) -> tuple[dict[str, Any], str, tuple[str, ...]] | Rejection:
    """The converted keys, document and erased fields of one row, or the Rejection that
    explains why it has none. `plain` are the trimmed text fields; `document` the list
    in which each field's JSON goes to its place (Plan.places), the keys and JSON of their
    document's fields in jsonb's order, which builds it at a third of a dict's cost."""
    keys: dict[str, Any]
    cleared: tuple[str, ...]
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
            else:  # not a key: its place and prefix are set (Plan.places)
                parts[place] = prefix + json_value(converted)  # type: ignore[index, operator]
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
