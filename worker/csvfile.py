"""Reading an uploaded CSV file as numbered rows, streaming, in constant memory."""

import codecs
import csv


def rows(text, delimiter):
    """Yield (line, cells) for each non-blank record of the text stream `text`.

    `line` is the physical line where the record starts (1-based), so that a quoted cell
    spanning several lines is still reported where the customer sees it begin.
    """
    reader = csv.reader(text, delimiter=delimiter, strict=False)
    start = 1
    for cells in reader:
        if cells and any(cells):
            yield start, cells
        start = reader.line_num + 1


def open_text(path, encoding):
    """Open `path` for the csv module; a UTF-8 BOM is dropped whatever the template says."""
    if encoding.replace("_", "-").lower() in ("utf-8", "utf8"):
        encoding = "utf-8-sig"
    return open(path, encoding=encoding, newline="")


def undecodable_line(path, encoding):
    """The number of the first line of `path` that does not decode, or None."""
    decoder = codecs.getincrementaldecoder(encoding)()
    with open(path, "rb") as file:
        for number, line in enumerate(file, 1):
            try:
                decoder.decode(line)
            except UnicodeDecodeError:
                return number
    return None
