"""The template engine, pure: a header and rows in, contacts and rejections out."""

from typing import NamedTuple

from .fields import TYPES, FieldError


class Rejection(NamedTuple):
    """A row left out of the import, with where and why."""

    line: int
    reason: str
    column: str | None = None

    def as_dict(self):
        return {"line": self.line, "column": self.column, "reason": self.reason}


def header_problem(template, header):
    """Why `header` does not match the template's recorded columns, or None if it does."""
    expected = template["columns"]
    if header == expected:
        return None
    missing = [name for name in expected if name not in header]
    unexpected = [name for name in header if name not in expected]
    parts = []
    if missing:
        parts.append("missing " + ", ".join(map(repr, missing)))
    if unexpected:
        parts.append("unexpected " + ", ".join(map(repr, unexpected)))
    if not parts:
        parts.append(f"same columns in another order: expected {expected}, found {header}")
    return "header differs from the template: " + "; ".join(parts)


def contacts(template, rows, rejections):
    """Yield (key, fields) for each valid row of `rows`; append a Rejection for each other.

    `rows` yields (line, cells) after the header; empty cells are left out of `fields` so
    that they never erase a stored value.
    """
    columns = template["columns"]
    match_on = template.get("match_on", "email")
    plan = [
        (name, columns.index(field["column"]), field["column"],
         TYPES[field.get("type", "text")], field.get("required", False) or name == match_on)
        for name, field in template["fields"].items()
    ]
    for line, cells in rows:
        if len(cells) != len(columns):
            rejections.append(
                Rejection(line, f"expected {len(columns)} cells, found {len(cells)}")
            )
            continue
        fields, rejection = {}, None
        for name, index, column, convert, required in plan:
            cell = cells[index]
            try:
                if cell.strip():
                    fields[name] = convert(cell)
                elif required:
                    raise FieldError(f"required field {name} is empty")
            except FieldError as error:
                rejection = Rejection(line, str(error), column)
                break
        if rejection:
            rejections.append(rejection)
            continue
        yield fields.pop(match_on), fields
