"""The store as the commands read it: opened in one clear line, import records completed by
the spool's view and shown as readers see them."""

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import cast

from sqlalchemy.exc import OperationalError

from dropimport.cli import fail
from schemas.settings import Settings, redact

from .. import spool
from ..progress import as_seen
from ..record import COUNTS, ImportRecord, no_progress
from ..record import STATUSES as RECORD_STATUSES
from ..write.engines import store_problem
from ..write.journal import RECORDED
from ..write.store import Store

#: The statuses of import records, and `interrupted`: how readers show a running import whose
#: worker stopped without a word (progress.as_seen).
STATUSES = (*RECORD_STATUSES[:2], "interrupted", *RECORD_STATUSES[2:])


def open_store(settings: Settings) -> Store:
    """The contacts store, or one clear line when it cannot be reached."""
    try:
        return Store(settings.database_url)
    except OperationalError as error:
        fail(unreachable(settings.database_url, error))


def unreachable(url: str, error: Exception) -> str:
    """The line saying why the contacts store at `url` could not be opened (`error`)."""
    return f"cannot reach the contacts store at {redact(url)}: {store_problem(error)[0]}"


def spooled_record(spooled: spool.Spooled, record: ImportRecord | None = None) -> ImportRecord:
    """The record of an import as the spool shows it: queued, or failed by a dead letter."""
    event = spooled.event
    # Spread from COUNTS and no_progress: mypy cannot tell that they complete an ImportRecord.
    record = record or cast(ImportRecord, {
        "id": event["import_id"], "account": event["account"], "file": event["file"],
        "status": "queued", "received_at": event["received_at"], "started_at": None,
        "finished_at": None, **dict.fromkeys(COUNTS, 0), "reason": None, "note": None,
        "encoding": None, "delimiter": None, "size": event["size"],
        "sha256": event["sha256"], "rejections": [], **no_progress(0),
        **dict.fromkeys(RECORDED), "absent": 0,
    })
    if spooled.failure:
        record = {**record, "status": "failed", "reason": spooled.failure["reason"]}
    return record


def all_imports(settings: Settings, store: Store,
                account: str | None = None) -> list[ImportRecord]:
    """Every import, newest first: the store's records, completed by the spool's view."""
    return with_spool(settings, store.list_imports(account), account)


def with_spool(settings: Settings, records: Iterable[ImportRecord],
               account: str | None = None) -> list[ImportRecord]:
    """`records` completed by the spool's view (queued, dead-lettered), as readers see them
    (`seen`), newest first."""
    by_id = {record["id"]: record for record in records}
    for spooled in spool.pending(settings.home, account):
        import_id = spooled.event["import_id"]
        by_id[import_id] = spooled_record(spooled, by_id.get(import_id))
    return sorted((seen(settings, record) for record in by_id.values()),
                  key=lambda r: (r["received_at"], r["id"]), reverse=True)


def seen(settings: Settings, record: ImportRecord) -> ImportRecord:
    """`record` as readers show it now: a running import whose progress is too old for the
    workers' progress interval is `interrupted` (progress.as_seen)."""
    return as_seen(record, datetime.now(UTC), settings.progress_ms / 1000)
