"""One import, from file event to committed contacts, record, report and archived file."""

import logging
import os
import time

from sqlalchemy.exc import OperationalError

from schemas import validate
from schemas.accounts import Registry, write_json

from . import csvfile
from . import template as engine
from .store import FINAL, Store

log = logging.getLogger(__name__)

#: Rejected rows kept in the import record (and its report); the count is always exact.
MAX_REJECTIONS_KEPT = 1000


class Rejected(Exception):
    """The whole file is refused; nothing is imported. The message is the reason."""


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
        except Rejected as error:
            self._finish(import_id, "rejected", reason=str(error))
        except OperationalError:
            raise  # the database is unreachable: let dramatiq retry later
        except Exception as error:
            log.exception("import %s of %s failed", import_id, event["file"])
            self._finish(import_id, "failed", reason=f"{type(error).__name__}: {error}")
        record = self.conclude(self.store.get_import(import_id))
        log.info(
            "import %s of account %s file %s: %s, %d rows (%d created, %d updated, "
            "%d unchanged, %d rejected) in %.2f s",
            import_id, record["account"], record["file"], record["status"], record["rows"],
            record["created"], record["updated"], record["unchanged"], record["rejected_rows"],
            time.monotonic() - started,
        )
        return record

    def _finish(self, import_id, status, **outcome):
        with self.store.transaction() as connection:
            self.store.finish_import(connection, import_id, status, **outcome)

    def import_file(self, event):
        """Read, check and apply the file in one transaction; raise Rejected to refuse it."""
        account, file = event["account"], event["file"]
        template = self.registry.template(account, file)
        if template is None:
            expected = ", ".join(t["file"] for t in self.registry.templates(account)) or "none"
            raise Rejected(f"no template for {file!r} (this account's templates: {expected})")
        fmt = template.get("format", {})
        encoding = fmt.get("encoding", "utf-8")
        path = self.home.root / event["spool_path"]
        try:
            with csvfile.open_text(path, encoding) as text:
                self._apply(event, template, csvfile.rows(text, fmt.get("delimiter", ";")))
        except UnicodeDecodeError as error:
            line = csvfile.undecodable_line(path, encoding)
            raise Rejected(
                f"{file} line {line}: bytes {error.object[error.start:error.end]!r} are not "
                f"valid {encoding}; save the file as {encoding} or record its encoding in "
                "the template"
            ) from None
        except FileNotFoundError:
            raise Rejected(f"{file}: the spooled file {event['spool_path']} is missing") from None

    def _apply(self, event, template, rows):
        header_line, header = next(rows, (1, None))
        if header is None:
            raise Rejected(f"{event['file']}: the file is empty (no header line)")
        problem = engine.header_problem(template, header)
        if problem:
            raise Rejected(f"{event['file']} line {header_line}: {problem}")
        rejections = []
        with self.store.transaction() as connection:
            self.store.lock_account(connection, event["account"])
            counts = self.store.upsert(
                connection, event["account"], event["import_id"],
                engine.contacts(template, rows, rejections),
            )
            counts["rejected_rows"] = len(rejections)
            counts["rows"] = sum(counts.values())
            self.store.finish_import(
                connection, event["import_id"], "imported", counts=counts,
                rejections=rejections[:MAX_REJECTIONS_KEPT],
            )

    def conclude(self, record):
        """Move the spooled file out of the spool and write the customer's report (idempotent)."""
        if record is None or record["status"] not in FINAL:
            return record
        account, import_id = record["account"], record["id"]
        spooled = self.home.spool / account / import_id
        if spooled.exists():
            kept = self.home.archive if record["status"] == "imported" else self.home.failed
            (kept / account).mkdir(parents=True, exist_ok=True)
            os.replace(spooled, kept / account / import_id)
        write_json(self.home.reports(account) / f"{record['file']}.{import_id}.json", record)
        return record
