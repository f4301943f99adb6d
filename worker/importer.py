"""One import, from file event to committed contacts, record, report and archived file."""

import heapq
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Self, cast

from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from dropimport import logs
from dropimport.accounts import Registry
from dropimport.atomic import write_json
from schemas import FileEvent, Template, validate
from schemas import spool as layout  # the spool's layout; `spool` is the worker's I/O over it
from schemas.settings import Home, Settings, default_reader_processes

from . import failure, spool
from .contact import Rejection
from .notify import Notifications, Silent
from .progress import Progress, as_seen
from .read import reader
from .read.csvfile import Dialect
from .read.rows import Chunk
from .read.template import HeaderMismatch
from .record import FINAL, Counts, ImportRecord, now
from .report import RejectedRows, listed, rejected_rows_limit, rejected_rows_report, summary
from .runtime import metrics
from .write.changes import Changes
from .write.store import Store
from .write.writes import LINE, Writes

log = logging.getLogger(__name__)

#: Rows read, checked, looked up and written together: a round trip per key and chunk. Each
#: chunk costs the database some fixed work (statements planned, staging tables emptied):
#: bigger chunks spread it over more rows; much bigger ones would push a first import's
#: peak memory past its target.
CHUNK_ROWS = 8000
#: Rejected rows kept in the import record and its JSON report; the CSV report has more
#: (report.rejected_rows_limit).
MAX_REJECTIONS_KEPT = 1000


class OperationError(Exception):
    """An operator's request that cannot be done; the message says why."""


class Outcome:
    """What the rows of one file came to, as they are read and applied: its Counts, its
    rejections, and the line where the file was cut, if it was."""

    def __init__(self, rejected_rows: RejectedRows) -> None:
        self.rejected_rows = rejected_rows
        self.counts = Counts()
        self.kept: list[Rejection] = []
        self.cut: int | None = None

    def track(self, chunks: Iterable[Chunk]) -> Iterator[Chunk]:
        """Yield the Chunks of `chunks`, noting where the file was cut (the last one says)."""
        for chunk in chunks:
            self.cut = chunk.cut
            yield chunk

    def reject(self, rejection: Rejection) -> None:
        rejection = listed(rejection)  # as both reports keep it
        self.counts.rejected_rows += 1
        if len(self.kept) < MAX_REJECTIONS_KEPT:
            self.kept.append(rejection)
        self.rejected_rows.write(rejection)

    def skip(self) -> None:
        self.counts.skipped += 1


class Conflicts(list[Rejection]):
    """The rows of a chunk rejected because a key belongs to another contact."""

    reject = list.append


def apply(writes: Writes, chunks: Iterable[Chunk], outcome: Outcome, match_on: str,
          mode: str) -> None:
    """Apply the Chunks of a file's rows with `writes`, in file order; count each row in
    `outcome`.

    A row identical to what is stored is not written. Later rows see earlier ones, so for one
    contact the last row of the file wins. `outcome` receives every rejected row, in line
    order, and the skipped ones.
    """
    counts = outcome.counts
    chunks = iter(chunks)
    chunk = next(chunks, None)
    try:
        while chunk is not None:
            coming = next(chunks, None)
            found, applied = writes.stored(chunk.contacts, coming.contacts if coming else None)
            changes = Changes(found, match_on, mode)
            conflicts = Conflicts()
            counts.add(Counter(changes.quick(contact) or changes.apply(contact, conflicts)
                               for contact in applied))  # None: a conflict, rejected
            for rejection in heapq.merge(chunk.rejections, conflicts, key=LINE):
                outcome.reject(rejection)
            for _ in range(chunk.skipped):
                outcome.skip()
            counts.unchanged += chunk.same
            writes.write(changes)
            chunk = coming
        writes.finish(counts)
    finally:
        writes.close()


def verdict(template: Template, counts: Mapping[str, int], last: ImportRecord | None = None,
            expected: dict[str, Any] | None = None,
            cut: int | None = None) -> tuple[str, dict[str, str]]:
    """The status of a file whose rows came to `counts`, with its reason or note.

    `last` is the previous import of the same file, `expected` what a completion marker
    announced, `cut` the line where the file ends in the middle of its last record.
    """
    rows, rejected = counts["rows"], counts["rejected_rows"]
    if cut is not None:
        return "rejected", {"reason": (
            f"the file ends in the middle of line {cut}: the upload looks incomplete; "
            "nothing imported")}
    if rows == 0:
        if template["empty_file"] == "reject":
            return "rejected", {"reason": "the file has no data rows (empty_file: reject)"}
        return "imported", {"note": "the file has no data rows"}
    if expected and expected.get("rows") is not None and expected["rows"] != rows:
        return "rejected", {"reason": (
            f"the file has {rows} rows, its completion marker announced {expected['rows']}: "
            "is the upload complete?")}
    limit = template["errors"].get("max_rejected")
    if over_limit(limit, rejected, rows):
        return "rejected", {"reason": (
            f"{rejected} of {rows} rows rejected, more than max_rejected {limit}: "
            "nothing imported; see the rejected rows report")}
    shrink = template["max_shrink"]
    if (shrink != "off" and last
            and rows < last["rows"] * (1 - float(shrink.rstrip("%")) / 100)):
        return "rejected", {"reason": (
            f"the file has {rows} rows, {100 - rows * 100 // last['rows']}% fewer than the "
            f"{last['rows']} of import {last['id']} (max_shrink {shrink}): nothing imported; "
            "if the drop is expected, raise max_shrink and upload the file again")}
    return "imported", {}


def over_limit(limit: int | str | None, rejected: int, rows: int) -> bool:
    """Whether `rejected` of `rows` exceeds a max_rejected of N rows or "P%"."""
    if limit is None:
        return False
    if isinstance(limit, str):
        return rows > 0 and rejected * 100 > float(limit.rstrip("%")) * rows
    return rejected > limit


class Importer:
    """Imports spooled files into the contacts store with their account's template."""

    def __init__(self, home: Home, store: Store, progress_interval: float = 5.0,
                 separate_process_bytes: int = reader.SEPARATE_PROCESS_BYTES,
                 chunk_rows: int = CHUNK_ROWS,
                 notifications: Notifications | Silent | None = None,
                 reader_processes: int | None = None) -> None:
        self.home = home
        self.registry = Registry(home)
        self.store = store
        self.progress_interval = progress_interval
        #: Files from this size on are read and checked in a process of their own.
        self.separate_process_bytes = separate_process_bytes
        self.chunk_rows = chunk_rows
        #: Processes converting the rows of a file read in a process of its own.
        self.reader_processes = reader_processes or default_reader_processes()
        # Who hears of an import's end (worker/notify.py): only enqueued from here.
        self.notifications = notifications or Silent()

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(settings.home, Store(settings.database_url),
                   reader_processes=settings.reader_processes)

    def run(self, event: FileEvent, wait: bool = True) -> ImportRecord | None:
        """Import the file of `event` once; a repeated event for a finished import is a no-op.

        The files of one account are imported one at a time, in arrival order: holding the
        account, the worker first imports any older file of it still in the spool, then,
        after this one, the newer files that came meanwhile. With `wait` false, raise
        AccountBusy at once if another import holds the account.
        """
        validate("file-event", event)
        with self.store.account_lock(event["account"], wait):
            for older in spool.older(self.home, event):
                self._run_in_context(older)
            record = self._run_in_context(event)
            # Their messages were handed back to wait for the account (worker/runtime/actors.py):
            # done now, they find nothing left to do when they come back.
            try:
                for newer in spool.newer(self.home, event):
                    self._run_in_context(newer)
            except Exception:  # not this file's failure: the newer file's message retries it
                log.exception("a newer file of account %s is left to its own message",
                              event["account"])
            return record

    def _run_in_context(self, event: FileEvent) -> ImportRecord | None:
        fields: Mapping[str, Any] = event  # read by the names of logs.FIELDS
        with logs.context(**{key: fields[key] for key in logs.FIELDS}):
            return self._run_one(event)

    def _run_one(self, event: FileEvent) -> ImportRecord | None:
        import_id = event["import_id"]
        record = self.store.start_import(event)
        if record is None:
            log.info("import %s already finished; nothing to do", import_id)
            return self.conclude(self.store.get_import(import_id))
        started = time.monotonic()
        metrics.started(event)
        try:
            last = self.store.last_imported(event["account"], event["file"])
            if last and last["sha256"] == event["sha256"]:
                self._identical(event, last)
            else:
                self.import_file(event, last)
        except OperationalError:
            self._stopped(import_id)
            raise  # the database is unreachable: let dramatiq retry later
        except Exception as error:
            # Told by its class and a short message: never its SQL, nor a row's values.
            reason = failure.reason(error)
            log.error("import %s of %s failed: %s", import_id, event["file"], reason,
                      exc_info=failure.redacted(error))
            self._finish(import_id, "failed", reason=reason)
        except BaseException:  # stopped: a graceful shutdown (dramatiq's Shutdown), time limit
            self._stopped(import_id)
            raise
        finally:
            metrics.stopped()
        record = self.conclude(self.store.get_import(import_id))
        assert record is not None  # started above
        seconds = time.monotonic() - started
        metrics.concluded(record, seconds)
        log.info(
            "import %s of account %s file %s: %s, %d rows (%d created, %d updated, "
            "%d unchanged, %d skipped, %d rejected) in %.2f s, %d rows/s",
            import_id, record["account"], record["file"], record["status"], record["rows"],
            record["created"], record["updated"], record["unchanged"], record["skipped"],
            record["rejected_rows"], seconds, record["rows"] / max(seconds, 1e-3),
        )
        return record

    def _stopped(self, import_id: str) -> None:
        """Record queued again an import stopped before its end: its transaction rolled back,
        its message comes back. Best effort: the store may be what failed; its readers then
        show the import interrupted once its progress is old (progress.as_seen)."""
        try:
            self.store.requeue_import(import_id, stopped=True)
        except SQLAlchemyError as error:
            log.warning("import %s stopped, cannot record it queued again: %s", import_id,
                        failure.reason(error))

    def _finish(self, import_id: str, status: str, connection: Connection | None = None, /,
                **values: Any) -> None:
        if connection is None:
            with self.store.transaction() as connection:
                return self._finish(import_id, status, connection, **values)
        return self.store.finish_import(connection, import_id, status, **values)

    def requeue(self, import_id: str, force: bool = False) -> FileEvent:
        """Make a failed or rejected import ready to run again; return its event to publish.

        An import older than the last one imported of its file would put older data back:
        only when `force`d.
        """
        event, kept = spool.locate(self.home, import_id)
        record = self.store.get_import(import_id)
        failed = kept is not None and layout.is_dead_lettered(kept)
        if record and not failed and as_seen(
                record, now(), self.progress_interval)["status"] == "interrupted":
            raise OperationError(
                f"import {import_id} was interrupted (its worker stopped): nothing to retry, "
                "RabbitMQ hands its message to the next worker, which imports it again")
        if record and record["status"] in ("running", "imported") and not failed:
            raise OperationError(
                f"import {import_id} is {record['status']}: only a failed or rejected "
                "import can be retried (upload the file again to import it again)")
        if event is None or kept is None:
            raise OperationError(f"import {import_id} has no kept file to import again")
        last = self.store.last_imported(event["account"], event["file"])
        if last and last["id"] > import_id and not force:
            raise OperationError(
                f"import {last['id']} of {event['file']} is newer; --force to apply this "
                "older file over it")
        with self.store.account_lock(event["account"]):
            spool.requeue(self.home, event, kept)
            if record:
                self.store.requeue_import(import_id)
        return event

    def cancel(self, import_id: str) -> None:
        """Cancel a queued import: recorded failed, its file kept in failed/."""
        event, kept = spool.locate(self.home, import_id)
        if event is None or kept is None or not layout.is_queued(self.home, kept):
            raise OperationError(f"import {import_id} is not queued")
        with self.store.account_lock(event["account"]):
            record = self.store.get_import(import_id)
            if record and record["status"] in FINAL:
                raise OperationError(f"import {import_id} is already {record['status']}")
            self.record_failure(event, "cancelled by an operator")
            self.conclude(self.store.get_import(import_id))

    def record_failure(self, event: FileEvent, reason: str) -> None:
        """Record an import failed for `reason` (its file stays in the spool for a retry)."""
        if self.store.get_import(event["import_id"]) is None:
            self.store.start_import(event)
        self._finish(event["import_id"], "failed", reason=reason)
        self.conclude(self.store.get_import(event["import_id"]), keep_in_spool=True)

    def _identical(self, event: FileEvent, last: ImportRecord) -> None:
        """Record a file identical to the last one imported, without reading it again.

        It rejects the rows its twin rejected: its record and reports list them as the twin's
        did, the rejected rows report copied while the customer has not deleted it.
        """
        twin = self.home.reports(event["account"]) / rejected_rows_report(event["file"], last["id"])
        beside = layout.spooled_file(self.home, event).parent
        if last["rejected_rows"] and twin.exists():
            shutil.copyfile(twin, beside / layout.REJECTED_ROWS)
        self._finish(
            event["import_id"], "imported", rows=last["rows"],
            unchanged=last["rows"] - last["rejected_rows"], rejected_rows=last["rejected_rows"],
            rejections=[Rejection(**rejection) for rejection in last["rejections"]],
            encoding=last["encoding"], delimiter=last["delimiter"],
            note=f"identical to import {last['id']}: nothing to change",
        )

    def import_file(self, event: FileEvent, last: ImportRecord | None = None) -> None:
        """Read, check and apply the file; the record says how it ended."""
        account, file, import_id = event["account"], event["file"], event["import_id"]
        template = self.registry.template(account, file)
        if template is None:
            expected = ", ".join(t["file"] for t in self.registry.templates(account)) or "none"
            return self._finish(import_id, "rejected", reason=(
                f"no template for {file!r} (this account's templates: {expected})"))
        announced = event.get("expected", {}).get("sha256")
        if announced and announced != event["sha256"]:
            return self._finish(import_id, "rejected", reason=(
                f"{file}: its sha256 {event['sha256']} is not the {announced} its completion "
                "marker announced: is the upload complete?"))
        path = layout.spooled_file(self.home, event)
        if not path.exists():
            raise FileNotFoundError(f"the spooled file {event['spool_path']} is missing")
        separate = event["size"] >= self.separate_process_bytes
        store = (self.store.shared_url, account) if self.store.shared_url else None
        with reader.reading(path, template, self.chunk_rows, separate, store,
                            self.reader_processes) as items:
            # The Dialect, the columns (None: no rows), then only Chunks (reader.produce).
            dialect = next(items)
            assert isinstance(dialect, Dialect)
            found = {"encoding": dialect.encoding, "delimiter": dialect.delimiter}
            try:
                columns = next(items)
                assert columns is None or isinstance(columns, tuple)
                self._apply(event, template, dialect, columns, cast(Iterator[Chunk], items),
                            found, last)
            except HeaderMismatch as error:
                self._finish(import_id, "rejected", reason=f"{file} {error}", **found)
            except UnicodeDecodeError as error:
                # Only a multi-byte encoding cut in the middle of a character gets here.
                self._finish(import_id, "rejected", reason=(
                    f"{file}: not valid {dialect.encoding} ({error.reason}); "
                    "is the file complete?"), **found)

    def _apply(self, event: FileEvent, template: Template, dialect: Dialect,
               columns: tuple[str, ...] | None, chunks: Iterator[Chunk], found: dict[str, str],
               last: ImportRecord | None) -> None:
        """Apply the file's chunks in one transaction, record the outcome.

        `columns` are the file's (None when it has no rows), `chunks` its rows' fates.
        """
        progress = Progress(event, self.store.record_progress, self.progress_interval)
        writer = RejectedRows(layout.spooled_file(self.home, event).parent / layout.REJECTED_ROWS,
                              columns or (), dialect.delimiter, rejected_rows_limit(event["size"]))
        outcome = Outcome(writer)
        counts = outcome.counts
        try:
            with progress.steady(), self.store.transaction() as connection:
                if columns is not None:
                    writes = self.store.writes(connection, event["account"], event["import_id"],
                                               template["match_on"], template["mode"])
                    apply(writes, progress.track(outcome.track(chunks)), outcome,
                          template["match_on"], template["mode"])
                status, values = verdict(template, counts.as_record(), last,
                                         event.get("expected"), outcome.cut)
                if status == "rejected":
                    raise Refused(values)
                self._finish(event["import_id"], status, connection, rejections=outcome.kept,
                             **counts.as_record(), **found, **values)
        except Refused as refused:
            refused.values["reason"] = f"{event['file']}: {refused.values['reason']}"
            self._finish(event["import_id"], "rejected", rejections=outcome.kept,
                         **counts.refused(), **found, **refused.values)
        finally:
            writer.close()

    def conclude(self, record: ImportRecord | None,
                 keep_in_spool: bool = False) -> ImportRecord | None:
        """Move the file out of the spool, write the customer's reports (idempotent)."""
        if record is None or record["status"] not in FINAL:
            return record
        account, import_id, file = record["account"], record["id"], record["file"]
        spooled = layout.folder(self.home, account, import_id)
        kept = (spooled if keep_in_spool
                else layout.concluded(self.home, account, import_id, record["status"]))
        if spooled.exists() and not keep_in_spool:
            kept.parent.mkdir(parents=True, exist_ok=True)
            os.replace(spooled, kept)
        reports = self.home.reports(account)
        rejected_name = None
        if record["status"] != "failed" and record["rejected_rows"]:
            rejected_name = rejected_rows_report(file, import_id)
            if (kept / layout.REJECTED_ROWS).exists():
                os.replace(kept / layout.REJECTED_ROWS, reports / rejected_name)
            elif not (reports / rejected_name).exists():  # none was written: no rows listed
                rejected_name = None
        template = self.registry.template(account, file)
        write_json(reports / f"{file}.{import_id}.json", summary(record, template, rejected_name))
        self.notifications.concluded(record)
        return record


class Refused(Exception):
    """The rows were read but the file as a whole is refused: roll back, then record why.

    `values` holds the reason for the import record.
    """

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values


