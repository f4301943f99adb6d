"""The hand-over between ingress paths and the watcher: one flat `incoming/` directory.

Every ingress path (FTP today) renames a complete file to
`incoming/<import-id>.<account>.<file>`. One flat directory keeps the watcher at a single
inotify watch whatever the number of accounts; the import id, taken when the upload completed,
keeps arrivals in order and lets the same file name arrive again at once.
"""

import os
import secrets
from datetime import UTC, datetime
from pathlib import Path
from typing import NamedTuple

from schemas.settings import Home


class Arrival(NamedTuple):
    import_id: str
    account: str
    file: str

    @property
    def name(self) -> str:
        return f"{self.import_id}.{self.account}.{self.file}"

    @property
    def received_at(self) -> datetime:
        return datetime.strptime(self.import_id[:22], "%Y%m%d-%H%M%S-%f").replace(tzinfo=UTC)


def new_import_id(now: datetime | None = None) -> str:
    """A unique id that sorts in arrival order: 20261125-083512-123456-9f3a."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%d-%H%M%S-%f}-{secrets.token_hex(2)}"


def parse(name: str) -> Arrival | None:
    """The Arrival named `name` in incoming/, or None for anything else (temp files...)."""
    import_id, _, rest = name.partition(".")
    account, _, file = rest.partition(".")
    if len(import_id) != 27 or not account or not file:
        return None
    return Arrival(import_id, account, file)


def deliver(home: Home, account: str, file: str, path: str | Path) -> Arrival:
    """Rename the complete file `path` into incoming/ (atomic: same filesystem), durably:
    once this returns, its bytes and its name in incoming/ survive a crash of the machine,
    so that the client may be told it arrived."""
    arrival = Arrival(new_import_id(), account, file)
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
