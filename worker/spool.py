"""The worker's one way into the spool: the files waiting for import and their events.

The layout itself (folders, the event file, the markers) is schemas/spool.py's.
"""

import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import takewhile
from pathlib import Path
from typing import Any

from dropimport.atomic import write_json
from schemas import FileEvent, validate
from schemas.settings import Home
from schemas.spool import (
    APPROVED,
    EVENT_FILE,
    FAILED,
    HELD,
    PUBLISHED,
    find,
    folder,
    imports,
    new_import_id,
    spool_path,
)


@dataclass(frozen=True)
class Spooled:
    """A file in the spool: its event, and why it failed if its message was dead-lettered."""

    event: FileEvent
    failure: dict[str, Any] | None = None
    held: dict[str, Any] | None = None  # why it waits for an operator (HELD)


def _read(path: Path) -> Any:
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _note(kept: Path, name: str) -> dict[str, Any] | None:
    try:
        return _read(kept / name)
    except (FileNotFoundError, ValueError):
        return None


def spooled(kept: Path, event: FileEvent) -> Spooled:
    """What the spool folder `kept` says of its import: whether it failed, or is held."""
    return Spooled(event, _note(kept, FAILED), _note(kept, HELD))


def pending(home: Home, account: str | None = None) -> Iterator[Spooled]:
    """Every file in the spool (of `account`, or of all), oldest first by account."""
    for name, import_id in imports(home, account):
        kept = folder(home, name, import_id)
        try:
            event = validate("file-event", _read(kept / EVENT_FILE))
        except (OSError, ValueError):
            continue  # archived meanwhile, or half-written: its own message will come
        yield spooled(kept, event)


def _importable(home: Home, account: str) -> Iterator[FileEvent]:
    """The events of the account's spooled files that can be imported, oldest first (not a
    failed one, nor a held one)."""
    for spooled in pending(home, account):
        if spooled.failure is None and spooled.held is None:
            yield spooled.event


def older(home: Home, event: FileEvent) -> Iterator[FileEvent]:
    """The events of the account's files that arrived before `event` and can be imported."""
    return takewhile(lambda other: other["import_id"] < event["import_id"],
                     _importable(home, event["account"]))


def newer(home: Home, event: FileEvent) -> Iterator[FileEvent]:
    """The events of the account's files that arrived after `event` and can be imported."""
    return (other for other in _importable(home, event["account"])
            if other["import_id"] > event["import_id"])


def mark_failed(home: Home, event: FileEvent, reason: str) -> None:
    """Keep, beside the file, why its message was dead-lettered (the store may be down)."""
    write_json(folder(home, event["account"], event["import_id"]) / FAILED,
               {"reason": reason, "failed_at": datetime.now(UTC).isoformat()})


def mark_held(home: Home, event: FileEvent, reason: str) -> None:
    """Keep the file of a held import in the spool, waiting for an operator."""
    write_json(folder(home, event["account"], event["import_id"]) / HELD,
               {"reason": reason, "held_at": datetime.now(UTC).isoformat()})


def approve(home: Home, event: FileEvent, by: str) -> None:
    """Make a held import importable again, with no limit of its template's hold."""
    kept = folder(home, event["account"], event["import_id"])
    write_json(kept / APPROVED, {"by": by, "approved_at": datetime.now(UTC).isoformat()})
    (kept / HELD).unlink(missing_ok=True)


def release(home: Home, event: FileEvent) -> None:
    """A held import rejected: its file no longer waits for an operator."""
    (folder(home, event["account"], event["import_id"]) / HELD).unlink(missing_ok=True)


def approval(home: Home, event: FileEvent) -> dict[str, Any] | None:
    """Who approved the import of `event` and when, if an operator did (no hold limit
    applies to it then)."""
    return _note(folder(home, event["account"], event["import_id"]), APPROVED)


def put(home: Home, account: str, file: str, data: bytes, preview: bool = False) -> FileEvent:
    """Spool `data` as an upload named `file` of `account` (`dropimport imports preview`):
    marked published, so that no agent publishes it: the caller imports it."""
    import_id = new_import_id()
    kept = folder(home, account, import_id)
    kept.mkdir(parents=True)
    (kept / file).write_bytes(data)
    event: FileEvent = {
        "import_id": import_id, "account": account, "file": file,
        "spool_path": spool_path(home, account, import_id, file), "size": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "received_at": datetime.now(UTC).isoformat(),
    }
    if preview:
        event["preview"] = True
    write_json(kept / EVENT_FILE, validate("file-event", event))
    (kept / PUBLISHED).touch()
    return event


def forget(home: Home, record: Mapping[str, Any]) -> None:
    """Remove what an import left on disk: its folder and its reports (a preview not to be
    recorded)."""
    account, import_id = record["account"], record["id"]
    for root in (home.spool, home.archive, home.failed):
        shutil.rmtree(root / account / import_id, ignore_errors=True)
    for report in home.reports(account).glob(f"*.{import_id}.*"):
        report.unlink(missing_ok=True)


def locate(home: Home, import_id: str) -> tuple[FileEvent, Path] | tuple[None, None]:
    """The event of `import_id` in the spool or among the failed files, and its folder."""
    kept = find(home, import_id)
    if kept is None:
        return None, None
    return _read(kept / EVENT_FILE), kept


def requeue(home: Home, event: FileEvent, kept: Path) -> Path:
    """Put the files of a failed import back in the spool, ready to be published again."""
    target = folder(home, event["account"], event["import_id"])
    if kept != target:
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(kept, target)
    (target / FAILED).unlink(missing_ok=True)
    return target
