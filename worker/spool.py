"""The worker's one way into the spool: the files waiting for import and their events.

The layout itself (folders, the event file, the markers) is schemas/spool.py's.
"""

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import takewhile
from pathlib import Path
from typing import Any

from dropimport.atomic import write_json
from schemas import FileEvent, validate
from schemas.settings import Home
from schemas.spool import EVENT_FILE, FAILED, find, folder, imports


@dataclass(frozen=True)
class Spooled:
    """A file in the spool: its event, and why it failed if its message was dead-lettered."""

    event: FileEvent
    failure: dict[str, Any] | None = None


def _read(path: Path) -> Any:
    with open(path, encoding="utf-8") as file:
        return json.load(file)


def _note(kept: Path, name: str) -> dict[str, Any] | None:
    try:
        return _read(kept / name)
    except (FileNotFoundError, ValueError):
        return None


def spooled(kept: Path, event: FileEvent) -> Spooled:
    """What the spool folder `kept` says of its import: whether it failed."""
    return Spooled(event, _note(kept, FAILED))


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
    """The events of the account's spooled files that can be imported, oldest first."""
    for spooled in pending(home, account):
        if spooled.failure is None:
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
