"""The hand-over between ingress paths and the watcher: one flat `incoming/` directory.

Every ingress path (FTP today) renames a complete file to
`incoming/<import-id>.<account>.<file>` (`<account>+dryrun` for a file uploaded into dryrun/,
to preview). One flat directory keeps the watcher at a single
inotify watch whatever the number of accounts; the import id, taken when the upload completed,
keeps arrivals in order and lets the same file name arrive again at once.
"""

import os
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from schemas.settings import Home
from schemas.spool import new_import_id

#: After the account in an arrival's name: uploaded into dryrun/, to preview (an account's
#: name holds no `+`).
PREVIEW = "+dryrun"


class Arrival(NamedTuple):
    import_id: str
    account: str
    file: str
    preview: bool = False  # uploaded into dryrun/

    @property
    def name(self) -> str:
        return f"{self.import_id}.{self.account}{PREVIEW if self.preview else ''}.{self.file}"

    @property
    def received_at(self) -> datetime:
        return datetime.strptime(self.import_id[:22], "%Y%m%d-%H%M%S-%f").replace(tzinfo=UTC)


def parse(name: str) -> Arrival | None:
    """The Arrival named `name` in incoming/, or None for anything else (temp files...)."""
    import_id, _, rest = name.partition(".")
    account, _, file = rest.partition(".")
    preview = account.endswith(PREVIEW)
    account = account.removesuffix(PREVIEW)
    if len(import_id) != 27 or not account or not file:
        return None
    return Arrival(import_id, account, file, preview)


def deliver(home: Home, account: str, file: str, path: str | Path, preview: bool = False
            ) -> Arrival:
    """Rename the complete file `path` into incoming/ (atomic: same filesystem), durably:
    once this returns, its bytes and its name in incoming/ survive a crash of the machine,
    so that the client may be told it arrived. `preview`: it was uploaded into dryrun/."""
    arrival = Arrival(new_import_id(), account, file, preview)
    home.incoming.mkdir(parents=True, exist_ok=True)
    _fsync(path)
    os.rename(path, home.incoming / arrival.name)
    _fsync(home.incoming)
    return arrival


def _fsync(path: str | Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
