"""Reading real-world CSV files: encodings, delimiters, line endings, quoting."""

import csv
import io

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.read import csvfile

ROWS = [["E-mail", "Prénom", "Nom", "Ville"],
        ["chloe@example.com", "Chloé", "Lefèvre", "Besançon"],
        ["zoe@example.com", "Zoë", "Œuvray", "Saint-Étienne"]]


def write(tmp_path, rows, encoding, delimiter=";", lineterminator="\r\n", bom=b""):
    text = io.StringIO()
    csv.writer(text, delimiter=delimiter, lineterminator=lineterminator).writerows(rows)
    path = tmp_path / "contacts.csv"
    path.write_bytes(bom + text.getvalue().encode(encoding))
    return path


def read(path, encoding="auto", delimiter="auto"):
    with csvfile.reading(path, encoding, delimiter) as (dialect, rows):
        return dialect, list(rows)


@pytest.mark.parametrize(("encoding", "bom", "detected"), [
    ("utf-8", b"", "utf-8"),
    ("utf-8", b"\xef\xbb\xbf", "utf-8-sig"),  # Excel "CSV UTF-8"
    ("utf-16", b"", "utf-16"),  # Excel "Unicode text": Python writes the BOM
    ("cp1252", b"", "cp1252"),  # Excel FR "CSV (separator: semicolon)"
    ("latin-1", b"", "cp1252"),  # ISO-8859-1 text reads identically as Windows-1252
])
def test_encoding_is_detected(tmp_path, encoding, bom, detected):
    rows = [[cell.replace("Œ", "O") for cell in row] for row in ROWS]  # Œ is not in latin-1
    path = write(tmp_path, rows, encoding, bom=bom)
    dialect, read_rows = read(path)
    assert dialect.encoding == detected
    assert [cells for _, cells in read_rows] == rows


def test_euro_sign_in_windows_1252(tmp_path):
    rows = [["E-mail", "Montant"], ["a@b.fr", "12 €"], ["c@d.fr", "“5” œuvres"]]
    dialect, read_rows = read(write(tmp_path, rows, "cp1252"))
    assert dialect.encoding == "cp1252"
    assert [cells for _, cells in read_rows] == rows


def test_explicit_encoding_is_honoured(tmp_path):
    path = write(tmp_path, ROWS, "iso-8859-15")
    dialect, rows = read(path, encoding="iso-8859-15")
    assert dialect.encoding == "iso-8859-15"
    assert rows[1][1][1] == "Chloé"


@pytest.mark.parametrize("delimiter", [";", ",", "\t", "|"])
def test_delimiter_is_detected(tmp_path, delimiter):
    rows = [*ROWS, ["x@y.fr", "Jean, dit; Jo", "Nom|Autre", "Ville\tX"]]
    dialect, read_rows = read(write(tmp_path, rows, "utf-8", delimiter=delimiter))
    assert dialect.delimiter == delimiter
    assert [cells for _, cells in read_rows] == rows


@pytest.mark.parametrize("ending", ["\n", "\r\n", "\r"])
def test_line_endings_and_quoted_newlines(tmp_path, ending):
    rows = [["E-mail", "Note"], ["a@b.fr", f"two{ending}lines"], ["c@d.fr", 'say "hi"; ok']]
    _dialect, read_rows = read(write(tmp_path, rows, "utf-8", lineterminator=ending))
    assert read_rows == [(1, rows[0]), (2, rows[1]), (4, rows[2])]


def test_blank_lines_are_skipped_and_numbering_kept(tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_bytes(b"E-mail;Nom\r\n\r\na@b.fr;A\r\n;\r\n\r\n\r\n")
    assert read(path)[1] == [(1, ["E-mail", "Nom"]), (3, ["a@b.fr", "A"])]


def test_undecodable_bytes_are_carried_not_fatal(tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_bytes("E-mail;Nom\r\na@b.fr;Zoé\r\n".encode() + b"c@d.fr;Zo\xe9\r\n")
    _dialect, rows = read(path, encoding="utf-8")
    assert csvfile.undecodable(rows[1][1]) is None
    assert csvfile.undecodable(rows[2][1]) == b"\xe9"
    assert csvfile.readable(rows[2][1][1]) == "Zo\ufffd"


def test_a_single_column_file(tmp_path):
    path = tmp_path / "contacts.csv"
    path.write_bytes(b"E-mail\na@b.fr\nc@d.fr\n")
    _dialect, rows = read(path)
    assert [cells for _, cells in rows] == [["E-mail"], ["a@b.fr"], ["c@d.fr"]]


# Each encoding with the characters it can write. "\r" alone is left out: the csv module does
# not quote it when lines end with "\n", so the file it writes is ambiguous for any reader.
ENCODINGS = {"utf-8": None, "utf-8-sig": None, "utf-16": None, "cp1252": "cp1252",
             "iso-8859-1": "latin-1", "iso-8859-15": "iso8859-15"}


@st.composite
def tables(draw):
    encoding = draw(st.sampled_from(sorted(ENCODINGS)))
    codec = ENCODINGS[encoding]
    alphabet = st.characters(codec=codec, exclude_characters="\x00\r") if codec else \
        st.characters(exclude_characters="\x00\r", exclude_categories=["Cs"])
    cell = st.text(alphabet=alphabet, max_size=12)
    body = draw(st.lists(st.lists(cell, min_size=3, max_size=3), min_size=1, max_size=8))
    return encoding, body


@settings(max_examples=80, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    table=tables(),
    delimiter=st.sampled_from([";", ",", "\t", "|"]),
    ending=st.sampled_from(["\n", "\r\n"]),
)
def test_any_table_written_by_python_reads_back_identical(tmp_path, table, delimiter, ending):
    # Given any table with a plain header, written by the csv module in a supported encoding
    # and dialect
    encoding, body = table
    rows = [["E-mail", "Prénom", "Nom"], *body]
    path = write(tmp_path, rows, ENCODINGS[encoding] or encoding, delimiter, ending)
    # When it is read with the encoding given, the delimiter detected
    name = "utf-8" if encoding == "utf-8-sig" else encoding
    dialect, read_rows = read(path, encoding=name)
    # Then every non-blank row comes back identical, cell for cell
    assert dialect.delimiter == delimiter
    assert [cells for _, cells in read_rows] == [r for r in rows if any(r)]


def read_to_the_end(path, encoding="auto"):
    """The header, the rows after it and how the file ends (csvfile.Unfinished or None)."""
    with csvfile.reading(path, encoding, ";") as (_, rows):
        header = rows.header()
        return header, list(rows), rows.unfinished


@pytest.mark.parametrize(("end", "unfinished"), [
    ("a@b.fr;A\r\n", None),
    ("a@b.fr;A\n\r\n", None),
    ("a@b.fr;A\r", None),
    ('a@b.fr;"A"\r\n', None),
    ("a@b.fr;A", csvfile.Unfinished(2, 2, quoted=False)),  # complete, or cut: the template says
    ('a@b.fr;"A"', csvfile.Unfinished(2, 2, quoted=False)),
    ("a@b.fr", csvfile.Unfinished(2, 1, quoted=False)),
    ("a@b.fr;", csvfile.Unfinished(2, 2, quoted=False)),
    ('a@b.fr;"two\r\nli', csvfile.Unfinished(2, 2, quoted=True)),
    ('a@b.fr;"two\r\n', csvfile.Unfinished(2, 2, quoted=True)),  # a line break, but quoted
    ('a@b.fr;"say ""hi""', csvfile.Unfinished(2, 2, quoted=True)),
    ('a@b.fr;"A"\r\nc@d.fr;"', csvfile.Unfinished(3, 2, quoted=True)),
])
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "cp1252"])
def test_the_last_record_says_when_no_line_break_ends_it(tmp_path, end, unfinished, encoding):
    # Given a file whose last record is followed by a line break, or not
    path = tmp_path / "contacts.csv"
    path.write_bytes(("E-mail;Nom\r\n" + end).encode(encoding))
    # When it is read to its end
    header, rows, found = read_to_the_end(path, encoding)
    # Then every record is read as before, and the last one is told when it is unfinished
    assert header == (1, ["E-mail", "Nom"])
    assert rows[0][0] == 2
    assert found == unfinished


def test_a_file_of_no_record_or_a_header_alone_is_not_unfinished(tmp_path):
    path = tmp_path / "contacts.csv"
    for data in (b"", b"\r\n\r\n", b"E-mail;Nom\r\n"):
        path.write_bytes(data)
        assert read_to_the_end(path)[2] is None


def test_a_long_header_is_refused_without_being_read_whole(tmp_path):
    # Given a file whose first line is 50 MB of cells
    path = tmp_path / "contacts.csv"
    path.write_bytes(b"c;" * (25 << 20) + b"\r\na@b.fr;A\r\n")
    with csvfile.reading(path, "utf-8", ";") as (_, rows):
        # When its header is read, then it is refused, naming the limit
        with pytest.raises(csvfile.LongHeader, match=r"^line 1: the header is longer than "
                                                      r"1,048,576 characters"):
            rows.header()
        # And the reading stopped at the limit
        assert rows.bytes_read() < 2 * csvfile.HEADER_CHARACTERS


def test_a_header_up_to_the_limit_is_read_and_the_rows_after_it_are_not_limited(tmp_path):
    # Given a header of a quoted cell over two lines, just under the limit, then a long row
    name = "x" * (csvfile.HEADER_CHARACTERS - 40)
    long_cell = "y" * (2 * csvfile.HEADER_CHARACTERS)
    path = tmp_path / "contacts.csv"
    path.write_text(f'\r\nE-mail;"{name}\r\nNom"\r\na@b.fr;{long_cell}\r\nc@d.fr;C', "utf-8")
    # When it is read, then the header and every row come whole, with their lines
    header, rows, unfinished = read_to_the_end(path, "utf-8")
    assert header == (2, ["E-mail", f"{name}\r\nNom"])
    assert rows == [(4, ["a@b.fr", long_cell]), (5, ["c@d.fr", "C"])]
    assert unfinished == csvfile.Unfinished(5, 2, quoted=False)
