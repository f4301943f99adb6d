"""The import records of a Store: started, progressing, finished, requeued, read back."""

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    Insert,
    Select,
    Update,
    delete,
    func,
    insert,
    select,
    update,
)

from dropimport.packaging import forms
from schemas import FileEvent

from ..contact import Rejection
from ..record import COUNTS, FINAL, ImportRecord, no_progress, now, public, utc
from . import journal
from .engines import transaction
from .tables import imports, journals, progress


class ImportRecords:
    """The import records of a Store (its engine, and on SQLite its progress database)."""

    engine: Engine
    #: Where the progress of running imports is written: None for the import records.
    _progress_db: Engine | None

    def start_import(self, event: FileEvent, status: str = "running", reason: str | None = None
                     ) -> ImportRecord | None:
        """Mark the import of `event` running (or `status`, for `reason`); None when it
        already reached a final status."""
        with transaction(self.engine) as connection:
            row = connection.execute(
                select(imports.c.status).where(imports.c.id == event["import_id"])
            ).first()
            if row is not None and row.status in FINAL:
                return None
            values = {
                "account": event["account"],
                "file": event["file"],
                "status": status,
                "received_at": datetime.fromisoformat(event["received_at"]),
                "started_at": now() if status == "running" else None,
                "size": event["size"],
                "sha256": event["sha256"],
                "reason": reason,
                **dict.fromkeys(COUNTS, 0),
                **no_progress(0),
            }
            if row is None:
                connection.execute(insert(imports).values(id=event["import_id"], **values))
            else:
                connection.execute(
                    update(imports).where(imports.c.id == event["import_id"]).values(**values)
                )
        if self._progress_db is not None:
            # A retried import starts from naught. A running import rewrites its row every
            # interval: one untouched for a day is an ended import's.
            with transaction(self._progress_db) as connection:
                connection.execute(delete(progress).where(
                    (progress.c.id == event["import_id"])
                    | (progress.c.progress_at < now() - timedelta(days=1))))
        return self.get_import(event["import_id"])

    def record_progress(self, import_id: str, rows_done: int, rows_per_second: int,
                        seconds_left: int | None) -> None:
        """Note how far the running import `import_id` is, for every reader to see at once.

        In a short transaction of its own, never the import's, which commits only at its end:
        on PostgreSQL in the import record, on SQLite in the progress database.
        """
        values = {"rows_done": rows_done, "rows_per_second": rows_per_second,
                  "seconds_left": seconds_left, "progress_at": now()}
        statement: Update | Insert
        if self._progress_db is None:
            statement = (update(imports).values(values)
                         .where(imports.c.id == import_id, imports.c.status == "running"))
        else:
            statement = insert(progress).prefix_with("OR REPLACE").values(id=import_id, **values)
        with transaction(self._progress_db or self.engine) as connection:
            connection.execute(statement)

    def finish_import(self, connection: Connection, import_id: str, status: str,
                      rejections: Iterable[Rejection] = (), **values: Any) -> None:
        """Record the final status; `values` are further columns (counts, reason...)."""
        connection.execute(
            update(imports)
            .where(imports.c.id == import_id)
            .values(status=status, finished_at=now(),
                    rejections=[r.as_dict() for r in rejections],
                    **no_progress(values.get("rows", imports.c.rows)), **values)
        )

    def forget_import(self, import_id: str) -> None:
        """Forget the record of an import (a preview not to be recorded)."""
        with transaction(self.engine) as connection:
            connection.execute(delete(journals).where(journals.c.id == import_id))
            connection.execute(delete(imports).where(imports.c.id == import_id))

    def requeue_import(self, import_id: str, stopped: bool = False) -> None:
        """Make an import runnable again (`dropimport imports retry`); `stopped`: a running
        import stopped before its end, its transaction rolled back (if still running)."""
        statement = update(imports).where(imports.c.id == import_id)
        if stopped:  # not an end it reached meanwhile
            statement = statement.where(imports.c.status == "running")
        with transaction(self.engine) as connection:
            connection.execute(statement.values(status="queued", started_at=None,
                                                finished_at=None, reason=None,
                                                **no_progress(0)))

    def last_imported(self, account: str, file: str) -> ImportRecord | None:
        """The newest import of `file` of `account` that ended `imported`, or None; `file`
        in any of its forms (`contacts.csv`, `contacts.csv.gz`: packaging.forms)."""
        query = (
            select(imports)
            .where(imports.c.account == account, imports.c.file.in_(forms(file)),
                   imports.c.status == "imported")
            .order_by(imports.c.id.desc())
            .limit(1)
        )
        return next(iter(self._records(query)), None)

    def get_import(self, import_id: str) -> ImportRecord | None:
        return next(iter(self._records(select(imports).where(imports.c.id == import_id))), None)

    def list_imports(self, account: str | None = None, limit: int | None = None
                     ) -> list[ImportRecord]:
        query = select(imports).order_by(imports.c.received_at.desc(), imports.c.id.desc())
        if account:
            query = query.where(imports.c.account == account)
        if limit:
            query = query.limit(limit)
        return self._records(query)

    def _records(self, query: Select) -> list[ImportRecord]:
        """The import records `query` selects, the running ones with their progress."""
        with self.engine.connect() as connection:
            records = [dict(row._mapping) for row in connection.execute(query)]
            applied = journal.summaries(connection, [record["id"] for record in records])
        for record in records:
            record.update(journal.as_record(applied.get(record["id"])))
        running = {record["id"]: record for record in records if record["status"] == "running"}
        if self._progress_db is not None and running:
            with self._progress_db.connect() as connection:
                for row in connection.execute(
                        select(progress).where(progress.c.id.in_(running))):
                    running[row.id].update(row._mapping)
        return [public(record) for record in records]

    def received(self, account: str) -> dict[str, datetime]:
        """When each file of `account` was last received: {file: datetime}."""
        query = (
            select(imports.c.file, func.max(imports.c.received_at))
            .where(imports.c.account == account)
            .group_by(imports.c.file)
        )
        with self.engine.connect() as connection:
            return {file: utc(at) for file, at in connection.execute(query)}

    # --- read-only queries of `dropimport status`

    def imports_in(self, status: str, finished_since: datetime | None = None
                   ) -> list[ImportRecord]:
        """The imports in `status` (finished since `finished_since`, if given), newest first."""
        query = (select(imports).where(imports.c.status == status)
                 .order_by(imports.c.received_at.desc(), imports.c.id.desc()))
        if finished_since is not None:
            query = query.where(imports.c.finished_at >= finished_since)
        return self._records(query)
