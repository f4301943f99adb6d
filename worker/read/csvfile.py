"""Reading an uploaded CSV file as numbered rows: streaming, constant memory, any size.

The encoding and the delimiter are the template's, or detected from a bounded prefix of the
file when the template says "auto". Bytes that do not decode never stop the reading: they are
carried as lone surrogates (Python's "surrogateescape"), so the row that holds them can be
rejected with its line number while every other row is imported.
"""

import codecs
import csv
import io
import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from itertools import chain
from typing import Any, BinaryIO, TextIO

import charset_normalizer

DELIMITERS = (";", ",", "\t", "|")
#: How much of the file encoding detection looks at (the whole of it for UTF-8 validity).
PREFIX = 1 << 20
#: How much of it charset-normalizer and delimiter detection look at.
SAMPLE = 64 << 10

#: Template spellings -> the name reported and the Python codec used to read.
ENCODINGS = {
    "utf-8": "utf-8-sig",  # a BOM is dropped whatever the template says
    "utf-8-sig": "utf-8-sig",
    "utf-16": "utf-16",
    "cp1252": "cp1252",
    "windows-1252": "cp1252",
    "iso-8859-1": "latin-1",
    "latin-1": "latin-1",
    "iso-8859-15": "iso8859-15",
}
#: charset-normalizer's names of the single-byte encodings we accept -> ours.
_SINGLE_BYTE = {"cp1252": "cp1252", "iso8859_15": "iso-8859-15", "latin_1": "iso-8859-1"}
_UNDECODED = re.compile("[\udc80-\udcff]")

csv.field_size_limit(16 << 20)  # a cell may be long (notes); a runaway quote still stops


@dataclass(frozen=True)
class Dialect:
    """How a file was read: reported in the import record."""

    encoding: str
    delimiter: str


def detect_encoding(prefix: bytes) -> str:
    """The encoding of a file starting with the bytes `prefix`."""
    if prefix.startswith(codecs.BOM_UTF8):
        return "utf-8-sig"
    if prefix.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16"
    try:
        prefix.decode("utf-8")
        return "utf-8"
    except UnicodeDecodeError as error:
        if error.reason == "unexpected end of data" and len(prefix) == PREFIX:
            return "utf-8"  # the prefix cut a character in two
    guess = charset_normalizer.from_bytes(
        prefix[:SAMPLE], cp_isolation=list(_SINGLE_BYTE)
    ).best()
    # Windows-1252 decodes every byte Excel writes in Western Europe: the safe default.
    # No guess looks None up, which is no key: the default (`get` is typed for keys alone).
    return _SINGLE_BYTE.get(guess.encoding if guess else None, "cp1252")  # type: ignore[arg-type]


def detect_delimiter(sample: str) -> str:
    """The delimiter that splits the first lines of `sample` into the most consistent rows."""
    lines = sample.splitlines(keepends=True)[:50]
    if len(lines) > 1 and not sample.endswith(("\n", "\r")):
        lines = lines[:-1]  # the sample may end in the middle of a line
    best, best_score = ";", (0, 0)
    for delimiter in DELIMITERS:
        rows = [trimmed(r) for r in csv.reader(lines, delimiter=delimiter) if any(r)]
        if not rows or len(rows[0]) < 2:
            continue
        width = len(rows[0])
        score = (sum(len(row) == width for row in rows), width)
        if score > best_score:
            best, best_score = delimiter, score
    return best


def trimmed(cells: list[str]) -> list[str]:
    """`cells` without the empty cell a trailing delimiter leaves at the end of a line."""
    return cells[:-1] if len(cells) > 1 and cells[-1] == "" else cells


def undecodable(cells: Iterable[str]) -> bytes | None:
    """The bytes of `cells` that did not decode, or None."""
    joined = "".join(cells)
    if joined.isascii():
        return None
    try:  # a byte that did not decode is a lone surrogate, which UTF-8 refuses: rare, so
        joined.encode()  # the search for it is saved on most rows (a fifth of a regex's cost)
        return None
    except UnicodeEncodeError:
        pass
    found = _UNDECODED.findall(joined)
    return bytes(ord(char) - 0xDC00 for char in found) if found else None


def readable(text: str) -> str:
    """`text` with each byte that did not decode shown as U+FFFD, for reports."""
    return _UNDECODED.sub("\ufffd", text)


#: The most characters a header record may take (blank lines before it included): it is read
#: no further, so that a hostile first line is never held whole.
HEADER_CHARACTERS = 1 << 20
#: Read by the CSV reader after a file's last line: an empty line, a record of no cells of its
#: own, unless the file ends inside a quoted cell, which it then ends (Rows._records).
_END = ("",)


class LongHeader(ValueError):
    """The header record is longer than HEADER_CHARACTERS."""


@dataclass(frozen=True, slots=True)
class Unfinished:
    """A file's last record when no line break ends it: what it holds, to tell a cut."""

    line: int  # where it starts
    cells: int
    quoted: bool  # the file ends inside one of its quoted cells


class Rows:
    """The (line, cells) of each non-blank record of an open file, and how far into its bytes
    the reading is.

    `line` is the physical line where the record starts (1-based), so that a quoted cell
    spanning several lines is still reported where the customer sees it begin. Once every
    record is read, `unfinished` is the last one when no line break ends it, else None.
    """

    def __init__(self, raw: BinaryIO, text: TextIO, delimiter: str, codec: str) -> None:
        self._raw, self._text, self._codec = raw, text, codec
        self._heading = False  # while `header` reads: its lines are counted
        self._reader = csv.reader(chain(self._header_lines(), text, _END),
                                  delimiter=delimiter, strict=False)
        self._rows = self._records()
        self.unfinished: Unfinished | None = None

    def __iter__(self) -> Iterator[tuple[int, list[str]]]:
        return self._rows  # the generator itself: no call of __next__ a row

    def __next__(self) -> tuple[int, list[str]]:
        return next(self._rows)

    def header(self) -> tuple[int, list[str]] | None:
        """The first row, read from HEADER_CHARACTERS at most (else LongHeader); None for a
        file of no rows. Call it before any other row is read."""
        self._heading = True
        try:
            return next(self._rows, None)
        finally:
            self._heading = False

    def bytes_read(self) -> int:
        return self._raw.tell()

    def consumed(self) -> int:
        """How far into the upload the reading is: past bytes_read's for a packed one."""
        consumed = getattr(self._raw, "consumed", None)
        return consumed() if consumed else self._raw.tell()

    def _header_lines(self) -> Iterator[str]:
        """The file's lines while `header` reads, no more than HEADER_CHARACTERS in all."""
        left = HEADER_CHARACTERS
        while self._heading:
            line = self._text.readline(left + 1)
            left -= len(line)
            if left < 0:
                raise LongHeader(f"line {self._reader.line_num + 1}: the header is longer "
                                 f"than {HEADER_CHARACTERS:,} characters, more than a "
                                 "template's may be")
            if not line:
                return
            yield line

    def _records(self) -> Iterator[tuple[int, list[str]]]:
        reader, start = self._reader, 1
        # The last two records read, (line, cells): the file's own last one is known only
        # once _END is read after it. Two names set a record, the whole cost of knowing.
        last: tuple[int, list[str]]
        before: tuple[int, list[str]]
        last = before = (0, [])
        for cells in reader:
            row = start, cells
            if any(cells):
                yield row
            before, last = last, row
            start = reader.line_num + 1
        # The reader's last record is _END's, [], unless the file ends inside a quoted cell.
        quoted = bool(last[1])
        line, cells = last if quoted else before
        if line and (quoted or not self._ends_a_line()):
            self.unfinished = Unfinished(line, len(cells), quoted)

    def _ends_a_line(self) -> bool:
        """Whether the file's last character is a line break (it has been read to its end)."""
        raw = self._raw
        if raw.seekable():
            raw.seek(max(raw.seek(0, io.SEEK_END) - 2, 0))
            tail = raw.read()
        else:  # an unpacked stream (unpack.Counted) keeps its last bytes
            tail = raw.tail  # type: ignore[attr-defined]
        if self._codec == "utf-16":  # a code unit of either byte order
            return tail in (b"\n\0", b"\r\0", b"\0\n", b"\0\r")
        return tail.endswith((b"\n", b"\r"))  # an ASCII byte in every other encoding we read


@contextmanager
def reading(path: str | os.PathLike[str], encoding: str = "auto", delimiter: str = "auto",
            opened: Callable[[], AbstractContextManager[BinaryIO]] | None = None
            ) -> Iterator[tuple[Dialect, Rows]]:
    """Open `path` (or what `opened` yields: the unpacked bytes of a packed upload, read
    once); yield its Dialect and its Rows."""
    with opened() if opened else open(path, "rb") as raw:
        prefix = raw.read(PREFIX)
        while opened and len(prefix) < PREFIX and (more := raw.read(PREFIX - len(prefix))):
            prefix += more  # a stream's read may return less
        name = detect_encoding(prefix) if encoding == "auto" else encoding
        codec = ENCODINGS.get(name, name)
        if delimiter == "auto":
            delimiter = detect_delimiter(prefix[:SAMPLE].decode(codec, errors="replace"))
        body: BinaryIO
        if raw.seekable():
            raw.seek(0)
            body = raw
        else:  # read once: the prefix again, then the rest
            body = io.BufferedReader(_Prefixed(prefix, raw))  # type: ignore[arg-type]
        text = io.TextIOWrapper(body, encoding=codec, errors="surrogateescape", newline="")
        yield Dialect(name, delimiter), Rows(raw, text, delimiter, codec)


class _Prefixed(io.RawIOBase):
    """`prefix`, then the rest of `raw`."""

    def __init__(self, prefix: bytes, raw: BinaryIO) -> None:
        self._prefix, self._raw = memoryview(prefix), raw

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._prefix:
            count = min(len(buffer), len(self._prefix))
            buffer[:count] = self._prefix[:count]
            self._prefix = self._prefix[count:]
            return count
        return self._raw.readinto(buffer)  # type: ignore[attr-defined]
