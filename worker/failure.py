"""What an unexpected error may tell of itself: its class and a short message, never the SQL
of a statement nor the values of a row.

Its text goes into the import record, and from there into the customer's report, `dropimport
status` and notifications. A database error's text holds what must not: SQLAlchemy's adds the
statement (its parameters hidden by `hide_parameters`, the statement not), and PostgreSQL's
DETAIL and CONTEXT quote the row that failed, contact data included.
"""

import sqlite3

import psycopg
from sqlalchemy.exc import DBAPIError

from .report import shortened


def reason(error: BaseException) -> str:
    """`error` told in one short line: `Class: message`.

    A database error is told by the driver's own error (not SQLAlchemy's wrapper, whose text
    adds the statement) and its primary message alone.
    """
    if isinstance(error, DBAPIError) and error.orig is not None:
        error = error.orig
    diagnostic = getattr(error, "diag", None)
    text = getattr(diagnostic, "message_primary", None) or str(error)
    message = next(iter(text.strip().splitlines()), "")
    if isinstance(error, psycopg.Error | sqlite3.Error):
        # PostgreSQL quotes an offending value after a colon (invalid input syntax for type
        # integer: "..."); names of constraints and types come quoted after a space.
        message = message.partition(': "')[0]
    return shortened(f"{type(error).__name__}: {message}" if message else type(error).__name__)


class Redacted(Exception):
    """An error as a log's traceback shows it: its frames, and its `reason` for a message."""


def redacted(error: BaseException) -> Redacted:
    """A stand-in for `error` to log as its exception: the same frames and the same chain of
    causes, each told by its `reason` (a traceback's last line is the error's whole text)."""
    stand_ins: dict[int, Redacted] = {}

    def stand_in(error: BaseException | None) -> Redacted | None:
        if error is None:
            return None
        if id(error) not in stand_ins:
            copy = stand_ins[id(error)] = Redacted(reason(error))
            copy.__traceback__ = error.__traceback__
            copy.__cause__ = stand_in(error.__cause__)
            copy.__context__ = stand_in(error.__context__)
            copy.__suppress_context__ = error.__suppress_context__
        return stand_ins[id(error)]

    copy = stand_in(error)
    assert copy is not None  # the stand-in of an error, not of None
    return copy
