"""An import's record as users see it, pure: its statuses, its counts, its progress."""

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, TypedDict, overload

#: The statuses an import ends in (an imported one may be rolled back later; a preview
#: changed nothing).
FINAL = ("previewed", "imported", "rejected", "failed", "rolled_back")
#: Every status of an import record, in the order an import goes through them. A held import
#: waits for an operator: approved, it is queued again; rejected, it ends rejected.
STATUSES = ("queued", "running", "held", *FINAL)


@dataclass
class Counts:
    """What the rows of a file came to; `rows` is their sum."""

    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    rejected_rows: int = 0

    @property
    def rows(self) -> int:
        return self.created + self.updated + self.unchanged + self.skipped + self.rejected_rows

    def __iadd__(self, other: "Counts") -> "Counts":
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self

    def add(self, counted: Mapping[str | None, int]) -> None:
        """Add the rows `counted` by their count's name; those counted None are not."""
        for name, rows in counted.items():
            if name is not None:
                setattr(self, name, getattr(self, name) + rows)

    def as_record(self) -> dict[str, int]:
        """The counts as the import record's columns."""
        return {"rows": self.rows, **asdict(self)}

    def refused(self) -> dict[str, int]:
        """The counts of a file refused as a whole: its rows and rejected rows, nothing
        created, updated, unchanged or skipped."""
        return {**asdict(Counts()), "rows": self.rows, "rejected_rows": self.rejected_rows}


#: The count columns of an import record.
COUNTS = ("rows", *Counts.__dataclass_fields__)


#: How far a running import is; at its end, rows_done is its rows and the rest are cleared.
PROGRESS = ("rows_done", "rows_per_second", "seconds_left", "progress_at")


class ImportRecord(TypedDict):
    """An import record as `public` gives it: JSON-ready, times in ISO 8601."""

    id: str
    account: str
    file: str
    status: str
    received_at: str
    started_at: str | None
    finished_at: str | None
    rows: int
    created: int
    updated: int
    unchanged: int
    skipped: int
    rejected_rows: int
    reason: str | None
    note: str | None
    encoding: str | None
    delimiter: str | None
    size: int | None
    sha256: str | None
    rejections: list[dict[str, Any]]
    rows_done: int
    rows_per_second: int | None
    seconds_left: int | None
    progress_at: str | None
    absent: int  # contacts absent from a mirror file (unsubscribed or deleted)
    changes: dict[str, Any] | None  # what an applied import changed (worker/write/journal.py)
    journal: str | None  # kept, off, purged, rolled_back; None: it applied nothing
    rolled_back_at: str | None
    rolled_back_by: str | None
    rollback: dict[str, Any] | None  # what its rollback did


def now() -> datetime:
    return datetime.now(UTC)


@overload
def utc(value: datetime) -> datetime: ...
@overload
def utc(value: None) -> None: ...
def utc(value: datetime | None) -> datetime | None:
    # SQLite hands datetimes back naive; every time stored here is UTC.
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value


def no_progress(rows_done: object) -> dict[str, object]:
    """The progress columns of an import not running: its rows done, nothing else."""
    return {**dict.fromkeys(PROGRESS), "rows_done": rows_done}


def public(row: Any) -> ImportRecord:
    """An import record as users see it (CLI, reports): JSON-ready."""
    record = dict(row)
    for key in ("received_at", "started_at", "finished_at", "progress_at", "rolled_back_at"):
        value = utc(record.get(key))
        record[key] = value.isoformat(timespec="milliseconds") if value else None
    record["rejections"] = record.get("rejections") or []
    return record  # type: ignore[return-value]
