"""The spool's layout: where each import's files are kept, and what the files beside them mean.

    spool/<account>/<import-id>/<file>          the upload, never changed
    spool/<account>/<import-id>/event.json      its file event (file-event.schema.json)
    spool/<account>/<import-id>/.published      RabbitMQ confirmed the event (the agent)
    spool/<account>/<import-id>/.preview        uploaded into dryrun/ (the agent, before the
                                                file: its event says so too)
    spool/<account>/<import-id>/.failed         its message was dead-lettered (the worker):
                                                the import waits for `dropimport imports retry`
    spool/<account>/<import-id>/.rejected.csv   the rejected rows of the import under way
    spool/<account>/<import-id>/.changes.csv    the changes it made (or would make)
    spool/<account>/<import-id>/.held           its changes passed a limit of its template's
                                                `hold`: it waits for an operator (the worker)
    spool/<account>/<import-id>/.approved       an operator approved it: no limit holds it
    archive/<account>/<import-id>/              the folder of an imported file, moved whole
    failed/<account>/<import-id>/               ... of a rejected, failed or cancelled one

An import is queued while its folder is in the spool; it is published once `.published` is
there, dead-lettered while `.failed` is. The agent writes the folder and `.published`, the
worker everything else; both find their way with this module alone.
"""

import os
import secrets
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from . import FileEvent
from .settings import Home

#: The file event, beside the upload.
EVENT_FILE = "event.json"
#: Markers beside the upload; each starts with a dot (see is_pipeline_file).
PUBLISHED = ".published"
FAILED = ".failed"
REJECTED_ROWS = ".rejected.csv"
CHANGES = ".changes.csv"
HELD = ".held"
APPROVED = ".approved"
PREVIEW = ".preview"


def new_import_id(now: datetime | None = None) -> str:
    """A unique id that sorts in arrival order: 20261125-083512-123456-9f3a."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S-%f}-{secrets.token_hex(2)}"


def is_pipeline_file(name: str) -> bool:
    """Whether `name`, in an import's folder, was added by the pipeline rather than uploaded.

    The pipeline adds the event file and names starting with a dot (markers, the temporary
    files of an atomic write); an upload never starts with a dot (the template's `file`
    pattern refuses it), so the agent tells the upload apart without knowing every marker.
    """
    return name == EVENT_FILE or name.startswith(".")


def folder(home: Home, account: str, import_id: str) -> Path:
    """The folder of an import in the spool."""
    return home.spool / account / import_id


def spool_path(home: Home, account: str, import_id: str, file: str) -> str:
    """The event's `spool_path`: where the upload is, relative to the home (any host's)."""
    return str((folder(home, account, import_id) / file).relative_to(home.root))


def spooled_file(home: Home, event: FileEvent) -> Path:
    """The upload that `event` announces."""
    return home.root / event["spool_path"]


def imports(home: Home, account: str | None = None) -> Iterator[tuple[str, str]]:
    """The account and import id of each import in the spool (of `account`, or of all),
    oldest first per account.

    Folders leave the spool while this runs (imported meanwhile): a caller reading one may
    find it gone.
    """
    accounts = [account] if account else sorted(_names(home.spool))
    for name in accounts:
        for import_id in sorted(_names(home.spool / name)):
            yield name, import_id


def _names(path: Path) -> list[str]:
    try:
        return os.listdir(path)
    except FileNotFoundError:
        return []


def is_queued(home: Home, kept: Path) -> bool:
    """Whether the import kept in `kept` is still in the spool, waiting for its import (or,
    dead-lettered, for a retry), rather than concluded in archive/ or failed/."""
    return kept.parent.parent == home.spool


def is_published(kept: Path) -> bool:
    """Whether RabbitMQ confirmed the event of the import kept in `kept`."""
    return (kept / PUBLISHED).exists()


def is_dead_lettered(kept: Path) -> bool:
    """Whether the message of the import kept in `kept` was dead-lettered (see FAILED)."""
    return (kept / FAILED).exists()


def concluded(home: Home, account: str, import_id: str, status: str) -> Path:
    """Where the folder of an import that ended with `status` is kept: archive/ once
    imported (or rolled back since) or previewed, failed/ otherwise (where
    `dropimport imports retry` finds it)."""
    root = home.archive if status in ("imported", "rolled_back", "previewed") else home.failed
    return root / account / import_id


def find(home: Home, import_id: str) -> Path | None:
    """The folder of `import_id` if it can still be imported: in the spool or in failed/."""
    for root in (home.spool, home.failed):
        for path in root.glob(f"*/{import_id}/{EVENT_FILE}"):
            return path.parent
    return None
