"""The store's side of exports: the contacts of one snapshot, streamed, and the runs' records.

A `changed` export writes the contacts whose `updated_at` is at or after the snapshot of the
export's last successful run. That holds because the snapshot is taken while the account's
lock is held: no import of the account is running then, so every change committed before it
bears an earlier time, and every import after it takes the lock later and bears a later time
(on PostgreSQL both times are the database's own: its transactions' start). A contact changed
while an export runs is in this file or the next one, never lost, never in both.

PostgreSQL writes a CSV export itself (COPY ... TO STDOUT, at the speed of its own COPY); a
JSON Lines export, and SQLite, go through `exports.Lines` from a server-side cursor. Both
stream: the memory taken does not grow with the contacts.
"""

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    case,
    func,
    insert,
    literal,
    select,
    true,
    update,
)
from sqlalchemy.sql.elements import ColumnElement

from schemas import ExportEvent

from ..contact import KEYS
from ..exports import FORMULA_CODES, META, NUMBER_SQL, Lines
from ..record import now, utc
from .engines import transaction
from .locks import AccountLocks
from .tables import contacts, export_runs

#: Contacts read at a time from a server-side cursor.
BATCH = 5000
#: Bytes of PostgreSQL's CSV gathered before a write.
COPY_BYTES = 1 << 20
#: A run that reached one of these is not run again.
ENDED = ("done", "failed")


def _public(row: Any) -> dict[str, Any]:
    run = dict(row._mapping)
    for name in ("planned_for", "started_at", "finished_at", "since", "snapshot"):
        run[name] = run[name] and utc(run[name]).isoformat()
    return run


class ExportRuns(AccountLocks):
    """The export runs of a Store and what they read."""

    engine: Engine

    def export_run(self, run_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(export_runs).where(export_runs.c.id == run_id)).first()
        return None if row is None else _public(row)

    def start_export_run(self, event: ExportEvent, destination: str) -> dict[str, Any] | None:
        """Mark the run of `event` running, one attempt more; None when it already ended."""
        with transaction(self.engine) as connection:
            row = connection.execute(select(export_runs.c.status, export_runs.c.attempts)
                                     .where(export_runs.c.id == event["run_id"])).first()
            if row is not None and row.status in ENDED:
                return None
            values = {"status": "running", "started_at": now(), "destination": destination,
                      "attempts": (row.attempts if row else 0) + 1}
            if row is None:
                connection.execute(insert(export_runs).values(
                    id=event["run_id"], account=event["account"], export=event["export"],
                    trigger=event["trigger"],
                    planned_for=datetime.fromisoformat(event["planned_for"]), **values))
            else:
                connection.execute(update(export_runs)
                                   .where(export_runs.c.id == event["run_id"]).values(**values))
        return self.export_run(event["run_id"])

    def end_export_run(self, run_id: str, status: str, **values: Any) -> dict[str, Any]:
        """Record how an attempt of the run ended: done, retrying or failed."""
        finished = {"finished_at": now()} if status in ENDED else {}
        with transaction(self.engine) as connection:
            connection.execute(update(export_runs).where(export_runs.c.id == run_id)
                               .values(status=status, **finished, **values))
        run = self.export_run(run_id)
        assert run is not None  # started before it ends
        return run

    def export_since(self, account: str, export: str) -> datetime | None:
        """The snapshot of the export's last successful run: where a `changed` run starts."""
        with self.engine.connect() as connection:
            snapshot = connection.execute(
                select(export_runs.c.snapshot)
                .where(export_runs.c.account == account, export_runs.c.export == export,
                       export_runs.c.status == "done")
                .order_by(export_runs.c.snapshot.desc()).limit(1)).scalar()
        return snapshot and utc(snapshot)

    def export_runs(self, account: str | None = None, export: str | None = None,
                    limit: int = 20, last: bool = False) -> list[dict[str, Any]]:
        """The runs, newest first (of an account, of one export); with `last`, each export's
        last run only."""
        query = select(export_runs)
        if account:
            query = query.where(export_runs.c.account == account)
        if export:
            query = query.where(export_runs.c.export == export)
        if last:
            newest = (select(export_runs.c.account, export_runs.c.export,
                             func.max(export_runs.c.started_at).label("started_at"))
                      .group_by(export_runs.c.account, export_runs.c.export).subquery())
            query = query.join(newest, and_(export_runs.c.account == newest.c.account,
                                            export_runs.c.export == newest.c.export,
                                            export_runs.c.started_at == newest.c.started_at))
        query = query.order_by(export_runs.c.started_at.desc()).limit(limit)
        with self.engine.connect() as connection:
            return [_public(row) for row in connection.execute(query)]

    # --- the contacts

    def export_contacts(self, account: str, columns: Sequence[str], only: str,
                        since: datetime | None, lines: Lines,
                        write: Callable[[bytes], object]) -> tuple[int, datetime]:
        """Write the account's contacts (`only`: all, changed since `since`, unsubscribed) as
        `lines` makes them, to `write`; return how many, and the time of the snapshot read.

        Raises AccountBusy when an import of the account is running (a moment later, the
        snapshot holds all of it)."""
        with self._snapshot(account) as (connection, snapshot):
            where = [contacts.c.account == account]
            if only == "unsubscribed":
                where.append(contacts.c.unsubscribed == true())
            elif only == "changed" and since is not None:
                where.append(contacts.c.updated_at >= since)
            if connection.dialect.name == "postgresql" and lines.form == "csv":
                return _copied(connection, columns, where, lines, write), snapshot
            query = (select(*(contacts.c[name] for name in (*KEYS, *META)), contacts.c.fields)
                     .where(*where).order_by(contacts.c.id))
            rows = 0
            result = connection.execution_options(stream_results=True, yield_per=BATCH) \
                .execute(query)
            for batch in result.mappings().partitions():
                write(lines.rows(batch))
                rows += len(batch)
            return rows, snapshot

    @contextmanager
    def _snapshot(self, account: str) -> Iterator[tuple[Connection, datetime]]:
        """A read transaction that sees the account between two imports, and its time."""
        with self.engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                with self.account_lock(account, wait=False):
                    # The first statement takes the snapshot (PostgreSQL, and SQLite's WAL).
                    connection.execute(select(contacts.c.id).limit(1)).all()
                    if connection.dialect.name == "postgresql":
                        snapshot = connection.execute(select(func.now())).scalar_one()
                    else:  # an import's time there is the worker's clock, taken in the lock
                        snapshot = now()
                yield connection, utc(snapshot)


def _copied(connection: Connection, columns: Sequence[str], where: list[ColumnElement[bool]],
            lines: Lines, write: Callable[[bytes], object]) -> int:
    """PostgreSQL writes the CSV lines itself (COPY TO STDOUT), cells as `exports.cell`
    writes them; return how many."""
    # Each value is read once, in a subquery kept as it is (OFFSET 0): flattened, each jsonb
    # lookup would be made again for each of the two or three times its cell names it.
    values = (select(*(_sql_value(name).label(f"c{i}") for i, name in enumerate(columns)))
              .where(*where).order_by(contacts.c.id).offset(0).subquery())
    query = select(*(values.c[f"c{i}"] if name in META else _neutralised(values.c[f"c{i}"])
                     for i, name in enumerate(columns)))
    sql = str(query.compile(connection, compile_kwargs={"literal_binds": True}))
    delimiter = lines.delimiter.replace("\\", "\\\\").replace("\t", "\\t")
    driver = connection.connection.driver_connection
    assert driver is not None  # a connection in use holds its driver's
    pending: list[bytes] = []
    size = 0
    with driver.cursor() as cursor:  # type: ignore[attr-defined]
        with cursor.copy(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, DELIMITER E'{delimiter}')"
                         ) as copy:
            for data in copy:
                pending.append(bytes(data))
                size += len(data)
                if size >= COPY_BYTES:
                    write(lines.transcoded(b"".join(pending)))
                    pending, size = [], 0
        write(lines.transcoded(b"".join(pending)))
        return int(cursor.rowcount)  # COPY's own count: a cell may hold a line break


def _sql_value(name: str) -> ColumnElement[Any]:
    """The text of one exported value. An empty text is NULL: COPY writes NULL as nothing and
    an empty string as "", Python's csv both as nothing."""
    if name == "unsubscribed":
        return func.text(contacts.c.unsubscribed)  # true or false
    if name in META:
        return func.to_char(func.timezone("UTC", contacts.c[name]),
                            literal('YYYY-MM-DD"T"HH24:MI:SS"Z"'))
    return func.nullif(contacts.c[name] if name in KEYS
                       else contacts.c.fields.op("->>")(literal(name)), "")


def _neutralised(value: ColumnElement[Any]) -> ColumnElement[Any]:
    """`value` as `exports.cell` writes it: its first character compared first (most cells
    start with none of FORMULA_START: no regular expression is run for them)."""
    return case((and_(func.ascii(value).in_(FORMULA_CODES), value.op("!~")(NUMBER_SQL)),
                 literal("'") + value), else_=value)
