"""One import, from file event to committed contacts, record, report and archived file."""

import heapq
import logging
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import closing
from datetime import timedelta
from pathlib import Path
from typing import Any, Self, cast

from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from dropimport import credentials, logs, packaging
from dropimport.accounts import Registry, with_defaults
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
from .read.rows import Chunk, presence
from .read.template import HeaderMismatch, plan_for
from .read.unpack import Unpacking, Unreadable, unpacking
from .record import FINAL, Counts, ImportRecord, now
from .report import (
    RejectedRows,
    changes_report,
    listed,
    rejected_rows_limit,
    rejected_rows_report,
    summary,
    write_changes,
)
from .runtime import metrics
from .write import journal
from .write.changes import Changes
from .write.store import Store
from .write.writes import LINE, Writes

log = logging.getLogger(__name__)

#: Rows read, checked, looked up and written together: a round trip per key and chunk. Each
#: chunk costs the database some fixed work (statements planned, staging tables emptied):
#: bigger chunks spread it over more rows; much bigger ones would push a first import's
#: peak memory past its target.
CHUNK_ROWS = 8000
#: How many times its size a compressed or encrypted file is taken to hold, to choose where it
#: is read (reader.SEPARATE_PROCESS_BYTES).
PACKED_EXPANSION = 10
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
          mode: str, present: Callable[[Chunk], list[Any]] | None = None) -> None:
    """Apply the Chunks of a file's rows with `writes`, in file order; count each row in
    `outcome`. A mirror import's writes are told the match key values each chunk holds
    (`present`: rows.presence).

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
            if present is not None:
                writes.saw(present(chunk))
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


#: The limits of a template's `hold`: the summary's figure each bounds, and how it is told.
HOLD_LIMITS = {
    "max_created": ("created", "created"),
    "max_updated": ("updated", "updated"),
    "max_unsubscribed": ("unsubscribed", "unsubscribed"),
    "max_erased": ("erased", "left with a value erased"),
    "max_absent": ("absent", "absent from the file"),
}


def held(hold: Mapping[str, int | str], summary: Mapping[str, Any], contacts: int
         ) -> str | None:
    """Why an import whose changes came to `summary` is held: the first limit of `hold` it
    passes, with the figure; None when it passes none. `contacts`: the account's contacts
    before it, which a share is of (a share never holds an import into an empty account)."""
    for name, (figure, told) in HOLD_LIMITS.items():
        limit, number = hold.get(name), summary[figure]
        if limit is None:
            continue
        if isinstance(limit, str):
            if contacts and number * 100 > float(limit.rstrip("%")) * contacts:
                share = f"{number * 100 / contacts:.1f}".removesuffix(".0")
                return (f"{share}% of contacts would be {told}, more than hold.{name} {limit} "
                        f"({number} of {contacts}); approve or reject it")
        elif number > limit:
            return (f"{number} contacts would be {told}, more than hold.{name} {limit}; "
                    "approve or reject it")
    return None


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
                 reader_processes: int | None = None, journal_days: int = 30,
                 secret_key: str | None = None) -> None:
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
        #: Days an applied import's journal is kept (its diff, its rollback); 0: not kept.
        self.journal_days = journal_days
        #: DROPIMPORT_SECRET_KEY: it decrypts the accounts' OpenPGP secret keys.
        self.secret_key = secret_key

    @classmethod
    def from_settings(cls, settings: Settings) -> Self:
        return cls(settings.home, Store(settings.database_url),
                   reader_processes=settings.reader_processes,
                   journal_days=settings.journal_days, secret_key=settings.secret_key)

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
        waiting = None if event.get("preview") else self._held_before(event)
        if waiting is not None:  # approved or rejected, it runs this one after it (spool.newer)
            log.info("import %s waits for held import %s", import_id, waiting)
            return self.store.start_import(event, "queued", f"waiting for held import {waiting}")
        record = self.store.start_import(event)
        if record is None:
            log.info("import %s already finished; nothing to do", import_id)
            return self.conclude(self.store.get_import(import_id))
        started = time.monotonic()
        metrics.started(event)
        try:
            last = self.store.last_imported(event["account"], event["file"])
            template = self.registry.template(event["account"], event["file"])
            # A file its template now refuses (a clear one where encryption became required)
            # is judged by import_file, however identical.
            if (last and last["sha256"] == event["sha256"] and not event.get("preview")
                    and template and packaging.refusal(template, event["file"]) is None):
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

    def _held_before(self, event: FileEvent) -> str | None:
        """The held import of the same account and template as `event`, older, if any: the
        file of `event` waits behind it (approving it must not apply an older file over a
        newer one)."""
        template = self.registry.template(event["account"], event["file"])
        for spooled in spool.pending(self.home, event["account"]):
            other = spooled.event
            if other["import_id"] >= event["import_id"]:
                break
            if spooled.held is not None and template is not None:
                theirs = self.registry.template(event["account"], other["file"])
                if theirs is not None and theirs["file"] == template["file"]:
                    return other["import_id"]
        return None

    def approve(self, import_id: str, by: str) -> FileEvent:
        """Approve a held import: it is queued again, to be applied with no hold limit
        (against the contacts as they are then); return its event to publish."""
        event, _ = self._held(import_id)
        with self.store.account_lock(event["account"]):
            spool.approve(self.home, event, by)
            self.store.requeue_import(import_id)
        log.info("held import %s approved by %s", import_id, by)
        return event

    def reject(self, import_id: str, by: str) -> list[FileEvent]:
        """Reject a held import: it ends rejected, its file in failed/; return the events of
        the account's files that waited behind it, to publish again."""
        event, record = self._held(import_id)
        with self.store.account_lock(event["account"]):
            spool.release(self.home, event)
            self._finish(import_id, "rejected", reason=(
                f"rejected by an operator ({by}); it was held: {record['reason']}"),
                **dict.fromkeys(("created", "updated", "unchanged", "skipped"), 0))
            self.conclude(self.store.get_import(import_id))
        log.info("held import %s rejected by %s", import_id, by)
        return list(spool.newer(self.home, event))

    def _held(self, import_id: str) -> tuple[FileEvent, ImportRecord]:
        event, _ = spool.locate(self.home, import_id)
        record = self.store.get_import(import_id)
        if record is None:
            raise OperationError(f"no import {import_id!r}")
        if record["status"] != "held" or event is None:
            raise OperationError(f"import {import_id} is {record['status']}, not held")
        return event, record

    def preview(self, account: str, path: Path, name: str | None = None,
                record: bool = False) -> ImportRecord:
        """Preview the local file `path` for `account` (as `name`, default its own): read,
        check and compare it with the stored contacts as its import would, change nothing.
        Recorded (a `previewed` import, its reports) only if `record`."""
        data = path.read_bytes()
        event = spool.put(self.home, account, name or path.name, data, preview=True)
        notifications = self.notifications
        if not record:  # nobody hears of what is not recorded (the CLI's own Importer)
            self.notifications = Silent()
        try:
            with self.store.account_lock(account):
                result = self._run_in_context(event)
        finally:
            self.notifications = notifications
        assert result is not None  # started above
        if not record:
            self.store.forget_import(result["id"])
            spool.forget(self.home, result)
        return result

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
        if record and record["status"] == "held":
            raise OperationError(f"import {import_id} is held: approve or reject it")
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
            if record and record["status"] == "held":
                raise OperationError(f"import {import_id} is held: approve or reject it")
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
        refused = packaging.refusal(template, file)
        if refused is not None:  # a door refuses it; a pulled file gets here
            return self._finish(import_id, "rejected", reason=refused)
        path = layout.spooled_file(self.home, event)
        if not path.exists():
            raise FileNotFoundError(f"the spooled file {event['spool_path']} is missing")
        # A packed file is judged by what comes out of it, as CSV text compresses about tenfold.
        expanded = event["size"] * (PACKED_EXPANSION if packaging.packing(file).packed else 1)
        separate = expanded >= self.separate_process_bytes
        # A mirror file's rows all say which contacts it holds: none is skipped as "same".
        store = ((self.store.shared_url, account)
                 if self.store.shared_url and template["mode"] != "mirror" else None)
        found: dict[str, str] = {}
        try:
            with reader.reading(path, template, self.chunk_rows, separate, store,
                                self.reader_processes, self._unpacking(account, file)) as items:
                # The Dialect, the columns (None: no rows), then only Chunks (reader.produce).
                dialect = next(items)
                assert isinstance(dialect, Dialect)
                found = {"encoding": dialect.encoding, "delimiter": dialect.delimiter}
                columns = next(items)
                assert columns is None or isinstance(columns, tuple)
                self._apply(event, template, dialect, columns, cast(Iterator[Chunk], items),
                            found, last)
        except HeaderMismatch as error:
            self._finish(import_id, "rejected", reason=f"{file} {error}", **found)
        except UnicodeDecodeError as error:
            # Only a multi-byte encoding cut in the middle of a character gets here.
            self._finish(import_id, "rejected", reason=(
                f"{file}: not valid {found['encoding']} ({error.reason}); "
                "is the file complete?"), **found)
        except Unreadable as error:  # a packed file: its whole transaction rolled back
            self._finish(import_id, "rejected", reason=f"{file}: {error}", **found)

    def _unpacking(self, account: str, file: str) -> Unpacking | None:
        """How to unpack the upload `file` of `account`, or None for a plain one."""
        packed = packaging.packing(file)
        if not packed.packed:
            return None
        document = with_defaults(self.registry.get(account))
        secret = document.get("openpgp", {}).get("secret_key")
        if packed.encrypted and secret:
            try:
                secret = credentials.reveal(secret, self.secret_key)
            except credentials.CredentialError as error:
                raise Unreadable(f"the account's OpenPGP key cannot be used: {error}") from None
        return unpacking(packed, document, secret if packed.encrypted else None)

    def _apply(self, event: FileEvent, template: Template, dialect: Dialect,
               columns: tuple[str, ...] | None, chunks: Iterator[Chunk], found: dict[str, str],
               last: ImportRecord | None) -> None:
        """Apply the file's chunks in one transaction, record the outcome.

        `columns` are the file's (None when it has no rows), `chunks` its rows' fates. A
        preview, and an import held for passing a limit of the template's `hold`, are
        computed whole, then rolled back: only their record, summary and reports remain.
        """
        import_id, account = event["import_id"], event["account"]
        folder = layout.spooled_file(self.home, event).parent
        progress = Progress(event, self.store.record_progress, self.progress_interval)
        # What is inside a packed file may be up to max_ratio times its size.
        inside = event["size"] * (with_defaults(self.registry.get(account))["max_ratio"]
                                  if packaging.packing(event["file"]).packed else 1)
        writer = RejectedRows(folder / layout.REJECTED_ROWS, columns or (), dialect.delimiter,
                              rejected_rows_limit(inside))
        outcome = Outcome(writer)
        counts = outcome.counts
        approval = spool.approval(self.home, event)
        hold = {} if approval else template["hold"]
        try:
            with progress.steady(), self.store.transaction() as connection:
                applied = None
                before = journal.contacts_of(connection, account) if any(
                    isinstance(limit, str) for limit in hold.values()) else 0
                if columns is not None:
                    writes = self.store.writes(connection, account, import_id,
                                               template["match_on"], template["mode"])
                    mirror = template["mode"] == "mirror"
                    present = presence(plan_for(template, [*columns, ""], dialect.encoding)
                                       ) if mirror else None
                    apply(writes, progress.track(outcome.track(chunks)), outcome,
                          template["match_on"], "upsert" if mirror else template["mode"],
                          present)
                    if mirror:
                        writes.absent(template["absent"] == "delete")
                    applied = journal.Applied(connection, import_id, account, writes.first_id)
                status, values = verdict(template, counts.as_record(), last,
                                         event.get("expected"), outcome.cut)
                if status == "rejected":
                    raise Refused(values)
                summary = applied.summary() if applied else journal.NOTHING
                if applied:
                    with closing(applied.changes(template["match_on"])) as changes:
                        write_changes(folder / layout.CHANGES, changes)
                if event.get("preview"):
                    raise Undone("previewed", summary, {"note": (
                        "a preview (dryrun/): what the file would change; nothing changed")})
                reason = held(hold, summary, before)
                if reason is not None:
                    raise Undone("held", summary, {"reason": f"{event['file']}: {reason}"})
                if applied:
                    applied.record(summary, "kept" if self.journal_days > 0 else "off")
                if approval:
                    values.setdefault("note", f"held, then approved by {approval['by']}")
                self._finish(import_id, status, connection, rejections=outcome.kept,
                             **counts.as_record(), **found, **values)
        except Refused as refused:
            refused.values["reason"] = f"{event['file']}: {refused.values['reason']}"
            self._finish(import_id, "rejected", rejections=outcome.kept,
                         **counts.refused(), **found, **refused.values)
        except Undone as undone:  # its changes rolled back: what they were is recorded
            with self.store.transaction() as connection:
                journal.record(connection, import_id, account, undone.summary, undone.status)
                self._finish(import_id, undone.status, connection, rejections=outcome.kept,
                             **counts.as_record(), **found, **undone.values)
            if undone.status == "held":
                spool.mark_held(self.home, event, undone.values["reason"])
        finally:
            writer.close()

    def conclude(self, record: ImportRecord | None,
                 keep_in_spool: bool = False) -> ImportRecord | None:
        """Move the file out of the spool (a held one stays), write the customer's reports
        (idempotent)."""
        if record is None or record["status"] not in (*FINAL, "held"):
            return record
        keep_in_spool = keep_in_spool or record["status"] == "held"
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
        changes_name = changes_report(file, import_id)
        if (kept / layout.CHANGES).exists():
            os.replace(kept / layout.CHANGES, reports / changes_name)
        template = self.registry.template(account, file)
        write_json(reports / f"{file}.{import_id}.json", summary(
            record, template, rejected_name,
            changes_name if (reports / changes_name).exists() else None))
        self.notifications.concluded(record)
        return record

    def roll_back(self, import_id: str, by: str, force: bool = False,
                  dry_run: bool = False) -> journal.Rollback:
        """Undo an applied import (journal.roll_back), holding its account; record it,
        rewrite its JSON report and notify it."""
        record = self.store.get_import(import_id)
        if record is None:
            raise OperationError(f"no import {import_id!r}")
        try:
            with self.store.account_lock(record["account"]):
                outcome = self.store.roll_back(import_id, by, force, dry_run)
        except journal.JournalError as error:
            raise OperationError(str(error)) from None
        if not dry_run:
            log.info("import %s of account %s rolled back by %s: %d contacts deleted, %d "
                     "restored, %d left as they are", import_id, record["account"], by,
                     outcome.deleted, outcome.restored, outcome.left)
            self.conclude(self.store.get_import(import_id))
        return outcome

    def purge_journal(self) -> int:
        """Drop the journals older than `journal_days` (all, when 0); return how many."""
        purged = self.store.purge_journal(now() - timedelta(days=self.journal_days))
        if purged:
            log.info("journal of %d imports purged (DROPIMPORT_JOURNAL_DAYS=%d)", purged,
                     self.journal_days)
        return purged


class Undone(Exception):
    """The file's changes were computed, then rolled back: a preview, or a held import.

    `status` is the import's (previewed, held), `summary` what the changes came to,
    `values` the record's note or reason.
    """

    def __init__(self, status: str, summary: dict[str, Any], values: dict[str, str]) -> None:
        self.status, self.summary, self.values = status, summary, values


class Refused(Exception):
    """The rows were read but the file as a whole is refused: roll back, then record why.

    `values` holds the reason for the import record.
    """

    def __init__(self, values: dict[str, str]) -> None:
        self.values = values


