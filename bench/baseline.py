"""The baseline: a file loaded the database's own fastest way, without validation.

COPY of the raw columns into a temporary staging table, then one INSERT ... ON CONFLICT into
the worker's `contacts` table, in the shape the worker gives it (standard keys in their columns,
every other field in `fields`). Only the e-mail is normalised (lower(trim())): this is the raw
cost of the database that the worker is compared with.
"""

import psycopg

#: The file's columns, in order, by the template's field names (bench/template.json).
STAGING = """
CREATE TEMPORARY TABLE staging (
    email text, first_name text, last_name text, phone text, city text, zip text,
    birth_date text, optin text, source text, comment text
) ON COMMIT DROP
"""
COPY = "COPY staging FROM STDIN (FORMAT csv, DELIMITER ';', HEADER true, ENCODING 'UTF8')"
UPSERT = """
INSERT INTO contacts (account, email, phone, fields, unsubscribed, created_at, updated_at,
                      import_id)
SELECT %(account)s, lower(trim(email)), phone,
       jsonb_strip_nulls(jsonb_build_object(
           'first_name', first_name, 'last_name', last_name, 'city', city, 'zip', zip,
           'birth_date', birth_date, 'optin', optin, 'source', source, 'comment', comment)),
       false, now(), now(), %(import_id)s
FROM staging
ON CONFLICT (account, email) WHERE email IS NOT NULL DO UPDATE SET
    phone = EXCLUDED.phone, fields = EXCLUDED.fields, updated_at = EXCLUDED.updated_at,
    import_id = EXCLUDED.import_id
"""
BLOCK = 1 << 20


def load(url, account, path, import_id="baseline"):
    """Load the file at `path` into the contacts of `account`, in one transaction.

    Return the number of rows inserted or updated.
    """
    with psycopg.connect(url) as connection, connection.cursor() as cursor:
        cursor.execute(STAGING)
        with cursor.copy(COPY) as copy, open(path, "rb") as file:
            while block := file.read(BLOCK):
                copy.write(block)
        cursor.execute(UPSERT, {"account": account, "import_id": import_id})
        return cursor.rowcount
