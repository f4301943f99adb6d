"""The baselines: a file loaded the database's own fastest way, without validation.

Both COPY the file's raw columns into a temporary staging table, then run one
INSERT ... ON CONFLICT (account, email): only the e-mail is normalised (lower(trim())), rows
without one are left out (two would be one conflict), every other cell goes into a jsonb
document as it is, by its template field's name.

- `load`: into the worker's own `contacts` table, in the shape the worker gives it (standard
  keys in their columns, every other field in `fields`), with its three partial unique
  indexes, its timestamps and import id: the database's cost of the worker's table.
- `load_lean`: into LEAN_TABLE, the database's speed of light for a contacts table: the keys
  in typed columns (compared bytewise, COLLATE "C"), the rest in one jsonb, one unique index
  (account, email), and no write where a row changes nothing (`WHERE ... IS DISTINCT FROM`,
  as the worker leaves an unchanged contact alone).

COPY stops at the first row it cannot read (another number of cells than the header, bytes
not in its encoding): `copyable` writes the file without such rows, once and unmeasured.

The other way round, `dump` is an export's baseline: an account's contacts written to a CSV
file by the database's own COPY (SELECT ...) TO STDOUT.
"""

import csv
import os
import time

import psycopg
from psycopg import sql

#: The standard keys a baseline keeps in columns of their own (its template's field names).
KEYS = ("email", "phone")
LEAN_TABLE = "lean_contacts"
CREATE_LEAN = f"""
CREATE TABLE {LEAN_TABLE} (
    account text COLLATE "C" NOT NULL,
    email text COLLATE "C" NOT NULL,
    phone text,
    fields jsonb NOT NULL,
    updated_at timestamptz NOT NULL,
    PRIMARY KEY (account, email)
)
"""
STAGING = "CREATE TEMPORARY TABLE staging ({columns}) ON COMMIT DROP"
COPY = ("COPY staging FROM STDIN (FORMAT csv, DELIMITER ';', HEADER true, "
        "ENCODING {encoding})")
UPSERT = """
INSERT INTO contacts (account, email, phone, fields, unsubscribed, created_at, updated_at,
                      import_id)
SELECT {account}, lower(trim(email)), phone, {document}, false, now(), now(), {import_id}
FROM staging
WHERE trim(email) <> ''
ON CONFLICT (account, email) WHERE email IS NOT NULL DO UPDATE SET
    phone = EXCLUDED.phone, fields = EXCLUDED.fields, updated_at = EXCLUDED.updated_at,
    import_id = EXCLUDED.import_id
"""
LEAN_UPSERT = f"""
INSERT INTO {LEAN_TABLE} AS stored (account, email, phone, fields, updated_at)
SELECT {{account}}, lower(trim(email)), phone, {{document}}, now()
FROM staging
WHERE trim(email) <> ''
ON CONFLICT (account, email) DO UPDATE SET
    phone = EXCLUDED.phone, fields = EXCLUDED.fields, updated_at = EXCLUDED.updated_at
WHERE (stored.phone, stored.fields) IS DISTINCT FROM (EXCLUDED.phone, EXCLUDED.fields)
"""
BLOCK = 1 << 20
DUMP = ("COPY (SELECT {cells} FROM contacts WHERE account = {account}) TO STDOUT "
        "(FORMAT csv, DELIMITER ';', HEADER true)")


def staging_names(template):
    """The staging table's columns: for each of the template's columns, in order, the name of
    its field."""
    fields = {spec["column"]: name for name, spec in template["fields"].items()}
    names = [fields.get(column, f"column_{n}") for n, column in enumerate(template["columns"], 1)]
    missing = set(KEYS) - set(names)
    if missing:
        raise ValueError(f"the baselines need the fields {', '.join(sorted(missing))}")
    return names


def _document(names):
    """The jsonb of a staging row's fields but the keys, nulls left out."""
    return sql.SQL("jsonb_strip_nulls(jsonb_build_object({}))").format(sql.SQL(", ").join(
        sql.SQL("{}, {}").format(sql.Literal(name), sql.Identifier(name))
        for name in names if name not in KEYS))


def _run(url, names, path, encoding, upsert):
    """COPY the file at `path` into staging, run `upsert`; the rows it inserted or updated."""
    staging = sql.SQL(STAGING).format(columns=sql.SQL(", ").join(
        sql.SQL("{} text").format(sql.Identifier(name)) for name in names))
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(staging)
        with (cursor.copy(sql.SQL(COPY).format(encoding=sql.Literal(encoding))) as copy,
              open(path, "rb") as file):
            while block := file.read(BLOCK):
                copy.write(block)
        cursor.execute(upsert)
        return cursor.rowcount


def load(url, account, path, names, encoding="UTF8", import_id="baseline"):
    """Load the file at `path` (its columns: `names`, see staging_names; `encoding`, as
    PostgreSQL names it) into the contacts of `account`, in one transaction.

    Return the number of rows inserted or updated.
    """
    upsert = sql.SQL(UPSERT).format(account=sql.Literal(account), document=_document(names),
                                    import_id=sql.Literal(import_id))
    return _run(url, names, path, encoding, upsert)


def load_lean(url, account, path, names, encoding="UTF8"):
    """Load the file at `path` into LEAN_TABLE, as `load` does into `contacts`.

    Return the number of rows inserted or updated (not those that changed nothing).
    """
    upsert = sql.SQL(LEAN_UPSERT).format(account=sql.Literal(account), document=_document(names))
    return _run(url, names, path, encoding, upsert)


def dump(url, account, columns, stored, path):
    """Write the contacts of `account` to a CSV file at `path` the database's own way: COPY
    (SELECT ...) TO STDOUT, streamed to the file by psycopg, the file then flushed to disk (as
    an export's is, before it is handed over). Its `columns` are an export's: those in
    `stored` are the table's own, the others read from `fields`. In no order, no cell
    neutralised: what the database costs.

    Return (rows written, seconds of the final fsync).
    """
    cells = sql.SQL(", ").join(
        sql.Identifier(name) if name in stored else sql.SQL("fields->>{}").format(sql.Literal(name))
        for name in columns)
    query = sql.SQL(DUMP).format(cells=cells, account=sql.Literal(account))
    with (psycopg.connect(url) as connection, connection.cursor() as cursor,
          open(path, "wb") as file):
        with cursor.copy(query) as copy:
            for data in copy:
                file.write(data)
        file.flush()
        started = time.perf_counter()
        os.fsync(file.fileno())
        return cursor.rowcount, time.perf_counter() - started


def copyable(source, target, encoding):
    """Write to `target` the file at `source` (in the Python codec `encoding`) without the rows
    COPY cannot read: another number of cells than the header, bytes that are no character of
    the encoding. Blank lines go too (no row for the worker either).

    Return (rows kept, rows left out).
    """
    written = "utf-8" if encoding == "utf-8-sig" else encoding  # no BOM: COPY needs none
    kept = dropped = 0
    with (open(source, encoding=encoding, errors="surrogateescape", newline="") as file,
          open(target, "w", encoding=written, newline="") as out):
        reader = csv.reader(file, delimiter=";", strict=False)
        writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
        header = next(reader)
        writer.writerow(header)
        for cells in reader:
            if not any(cells):
                continue
            if len(cells) == len(header) + 1 and cells[-1] == "":
                cells = cells[:-1]  # a trailing delimiter, which the worker tolerates too
            if len(cells) != len(header) or not _encodable(cells, written):
                dropped += 1
                continue
            writer.writerow(cells)
            kept += 1
    return kept, dropped


def _encodable(cells, encoding):
    try:
        "".join(cells).encode(encoding)
    except UnicodeEncodeError:  # a lone surrogate: a byte that was no character
        return False
    return True
