"""One import, from file event to committed contacts, record, report and archived file."""

import logging
import os
import time

from sqlalchemy.exc import OperationalError

from schemas import validate
from schemas.accounts import Registry, write_json

from . import csvfile
from . import template as engine
from .report import RejectedRows, summary
from .store import FINAL, Store

log = logging.getLogger(__name__)

#: Rejected rows kept in the import record and its JSON report; the CSV report has them all.
MAX_REJECTIONS_KEPT = 1000
#: The rejected rows of an import under way, beside its spooled file.
REJECTED_CSV = ".rejected.csv"


class Outcome:
    """What the rows of one file came to, as they are read: rejections and skips."""

    def __init__(self, rejected_rows):
        self.rejected_rows = rejected_rows
        self.rejected = 0
        self.skipped = 0
        self.kept = []

    def reject(self, rejection):
        self.rejected += 1
        if len(self.kept) < MAX_REJECTIONS_KEPT:
            self.kept.append(rejection)
        self.rejected_rows.write(rejection)

    def skip(self):
        self.skipped += 1


def over_limit(limit, rejected, rows):
    """Whether `rejected` of `rows` exceeds a max_rejected of N rows or "P%"."""
    if limit is None:
        return False
    if isinstance(limit, str):
        return rows > 0 and rejected * 100 > float(limit.rstrip("%")) * rows
    return rejected > limit


class Importer:
    """Imports spooled files into the contacts store with their account's template."""

    def __init__(self, home, store):
        self.home = home
        self.registry = Registry(home)
        self.store = store

    @classmethod
    def from_settings(cls, settings):
        return cls(settings.home, Store(settings.database_url))

    def run(self, event):
        """Import the file of `event` once; a repeated event for a finished import is a no-op."""
        validate("file-event", event)
        import_id = event["import_id"]
        record = self.store.start_import(event)
        if record is None:
            log.info("import %s already finished; nothing to do", import_id)
            return self.conclude(self.store.get_import(import_id))
        started = time.monotonic()
        try:
            self.import_file(event)
        except OperationalError:
            raise  # the database is unreachable: let dramatiq retry later
        except Exception as error:
            log.exception("import %s of %s failed", import_id, event["file"])
            self._finish(import_id, "failed", reason=f"{type(error).__name__}: {error}")
        record = self.conclude(self.store.get_import(import_id))
        log.info(
            "import %s of account %s file %s: %s, %d rows (%d created, %d updated, "
            "%d unchanged, %d skipped, %d rejected) in %.2f s",
            import_id, record["account"], record["file"], record["status"], record["rows"],
            record["created"], record["updated"], record["unchanged"], record["skipped"],
            record["rejected_rows"], time.monotonic() - started,
        )
        return record

    def _finish(self, import_id, status, connection=None, **values):
        if connection is None:
            with self.store.transaction() as connection:
                return self._finish(import_id, status, connection, **values)
        return self.store.finish_import(connection, import_id, status, **values)

    def import_file(self, event):
        """Read, check and apply the file; the record says how it ended."""
        account, file, import_id = event["account"], event["file"], event["import_id"]
        template = self.registry.template(account, file)
        if template is None:
            expected = ", ".join(t["file"] for t in self.registry.templates(account)) or "none"
            return self._finish(import_id, "rejected", reason=(
                f"no template for {file!r} (this account's templates: {expected})"))
        fmt = template.get("format", {})
        path = self.home.root / event["spool_path"]
        if not path.exists():
            raise FileNotFoundError(f"the spooled file {event['spool_path']} is missing")
        with csvfile.reading(path, fmt.get("encoding", "auto"),
                             fmt.get("delimiter", "auto")) as (dialect, rows):
            found = {"encoding": dialect.encoding, "delimiter": dialect.delimiter}
            try:
                self._apply(event, template, dialect, rows, found)
            except engine.HeaderMismatch as error:
                self._finish(import_id, "rejected", reason=f"{file} {error}", **found)
            except UnicodeDecodeError as error:
                # Only a multi-byte encoding cut in the middle of a character gets here.
                self._finish(import_id, "rejected", reason=(
                    f"{file}: not valid {dialect.encoding} ({error.reason}); "
                    "is the file complete?"), **found)

    def _apply(self, event, template, dialect, rows, found):
        """Plan from the header, apply every row in one transaction, record the outcome."""
        first = next(rows, None)
        if template.get("header") is False:
            plan = engine.plan(template, None, dialect.encoding)
            if first is not None:
                rows = _chain(first, rows)
        elif first is None:
            plan = None
        else:
            try:
                plan = engine.plan(template, first[1], dialect.encoding)
            except engine.HeaderMismatch as error:
                raise engine.HeaderMismatch(f"line {first[0]}: {error}") from None
        spooled = self.home.root / event["spool_path"]
        writer = RejectedRows(spooled.parent / REJECTED_CSV,
                              plan.columns if plan else (), dialect.delimiter)
        outcome = Outcome(writer)
        try:
            with self.store.transaction() as connection:
                self.store.lock_account(connection, event["account"])
                counts = dict.fromkeys(("created", "updated", "unchanged", "skipped"), 0)
                if plan is not None:
                    counts = self.store.apply(
                        connection, event["account"], event["import_id"],
                        engine.contacts(plan, rows, outcome), outcome,
                        template.get("match_on", "email"), template.get("mode", "upsert"),
                    )
                counts["skipped"] += outcome.skipped
                counts["rejected_rows"] = outcome.rejected
                counts["rows"] = sum(counts.values())
                status, values = self._verdict(template, counts)
                if status == "rejected":
                    raise Refused(values)
                self._finish(event["import_id"], status, connection,
                             rejections=outcome.kept, **counts, **found, **values)
        except Refused as refused:
            refused.values["reason"] = f"{event['file']}: {refused.values['reason']}"
            nothing = dict.fromkeys(("created", "updated", "unchanged", "skipped"), 0)
            self._finish(event["import_id"], "rejected", rejections=outcome.kept,
                         **(counts | nothing), **found, **refused.values)
        finally:
            writer.close()

    @staticmethod
    def _verdict(template, counts):
        """The status of a file whose rows came to `counts`, with its reason or note."""
        if counts["rows"] == 0:
            if template.get("empty_file", "reject") == "reject":
                return "rejected", {"reason": "the file has no data rows (empty_file: reject)"}
            return "imported", {"note": "the file has no data rows"}
        limit = template.get("errors", {}).get("max_rejected")
        if over_limit(limit, counts["rejected_rows"], counts["rows"]):
            return "rejected", {"reason": (
                f"{counts['rejected_rows']} of {counts['rows']} rows rejected, more than "
                f"max_rejected {limit}: nothing imported; see the rejected rows report")}
        return "imported", {}

    def conclude(self, record):
        """Move the file out of the spool, write the customer's reports (idempotent)."""
        if record is None or record["status"] not in FINAL:
            return record
        account, import_id, file = record["account"], record["id"], record["file"]
        spooled = self.home.spool / account / import_id
        kept = (self.home.archive if record["status"] == "imported" else self.home.failed)
        folder = kept / account / import_id
        if spooled.exists():
            folder.parent.mkdir(parents=True, exist_ok=True)
            os.replace(spooled, folder)
        reports = self.home.reports(account)
        rejected_name = None
        if record["status"] != "failed" and record["rejected_rows"]:
            rejected_name = f"{file}.{import_id}.rejected.csv"
            if (folder / REJECTED_CSV).exists():
                os.replace(folder / REJECTED_CSV, reports / rejected_name)
        template = self.registry.template(account, file)
        write_json(reports / f"{file}.{import_id}.json", summary(record, template, rejected_name))
        return record


class Refused(Exception):
    """The rows were read but the file as a whole is refused: roll back, then record why.

    `values` holds the reason for the import record.
    """

    def __init__(self, values):
        self.values = values


def _chain(first, rows):
    yield first
    yield from rows
