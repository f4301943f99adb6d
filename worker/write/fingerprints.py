"""The fingerprints of an account's stored contacts, as committed, for the reading process."""

import sqlite3
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import orjson
import psycopg
from sqlalchemy import make_url

from .postgres import array_literal, probes
from .writes import holds_keys


@contextmanager
def fingerprints(url: str, account: str, key: str
                 ) -> Iterator[Callable[[Iterable[Any]], dict[Any, int]] | None]:
    """Yield a function: values of the match `key` -> {value: the fingerprint of the contact
    of `account` holding it}, as committed (a connection of its own, for the reading of a
    file while its import's transaction is open); or None when no contact of `account`
    holds a key value (a first import): none can be found. `url` is a
    DROPIMPORT_DATABASE_URL.
    """
    connection: sqlite3.Connection | psycopg.Connection[Any]
    values_of: Callable[[Iterable[Any]], bytes | str]  # the values as one parameter
    if make_url(url).get_backend_name() == "sqlite":
        database = make_url(url).database
        assert database is not None  # a store another process reads is a file (Store.shared_url)
        connection = sqlite3.connect(database, timeout=60, isolation_level=None,
                                     check_same_thread=False)  # one thread at a time
        parameter, values_of = "?", lambda values: orjson.dumps(list(values))
        sql = (f"SELECT {key}, fingerprint FROM contacts WHERE {key} IN "
               "(SELECT value FROM json_each(?)) AND account = ? AND fingerprint IS NOT NULL")
    else:
        connection = psycopg.connect(url, autocommit=True, prepare_threshold=None)
        parameter, values_of = "%s", lambda values: array_literal(sorted(values))
        sql = probes(key, f"{key}, fingerprint", " AND fingerprint IS NOT NULL")
    try:
        if not holds_keys(connection, account, parameter):
            yield None
            return
        yield lambda values: dict(
            connection.execute(sql, [values_of(values), account]).fetchall())
    finally:
        connection.close()
