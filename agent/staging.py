"""Uploads in progress: each agent process writes them in a folder of its own under staging/.

    staging/<host>-<pid>/<account>.<random>.part        an FTP upload being received
    staging/<host>-<pid>/<account>.pull-<source>.<random>.part    a pull-mode download
    staging/<host>-<pid>/.lock                          held locked by that process

Several agents may share one home (behind a load balancer, on a shared volume): each holds
its folder's lock for as long as it runs (an fcntl lock, which the kernel releases when the
process dies, and which NFS shares between hosts). An agent starting clears the folders whose
lock it can take — their process is gone, and what they hold are uploads it never
acknowledged — and never touches a running agent's folder.
"""

import contextlib
import fcntl
import logging
import os
import secrets
import socket
import threading
from pathlib import Path

from schemas.settings import Home

log = logging.getLogger(__name__)

#: The lock file of a process's folder; not an upload.
LOCK = ".lock"

_own: dict[object, "Staging"] = {}  # home root -> this process's Staging
_own_lock = threading.Lock()


class Staging:
    """This process's folder under staging/, locked while the process lives."""

    def __init__(self, root: Path, name: str) -> None:
        self.path = root / name
        while True:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.lockf(self._lock, fcntl.LOCK_EX)
            with contextlib.suppress(FileNotFoundError):
                if os.fstat(self._lock).st_ino == os.stat(self.path / LOCK).st_ino:
                    return
            # Another agent cleared the folder between its creation and the lock: again.
            os.close(self._lock)

    def part(self, prefix: str) -> Path:
        """A new path for an upload in progress, named after `prefix` (its account...)."""
        return self.path / f"{prefix}.{secrets.token_hex(8)}.part"


def own(home: Home) -> Staging:
    """The Staging of this process in `home`, made on first use."""
    with _own_lock:
        if home.root not in _own:
            _own[home.root] = Staging(home.staging, f"{socket.gethostname()}-{os.getpid()}")
        return _own[home.root]


def uploads(home: Home) -> list[Path]:
    """The files of every upload in progress in `home`, of every agent."""
    if not home.staging.exists():
        return []
    return sorted(p for p in home.staging.rglob("*") if p.is_file() and p.name != LOCK)


def clear_abandoned(home: Home) -> None:
    """Delete what agents that are gone left in staging/: uploads their end cut short."""
    if not home.staging.exists():
        return
    mine = _own.get(home.root)
    for entry in sorted(home.staging.iterdir()):
        if mine is not None and entry == mine.path:
            continue
        if not entry.is_dir():  # a file of the layout before folders of their own
            _remove(entry, "the agent")
            continue
        try:
            descriptor = os.open(entry / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            continue  # cleared meanwhile by another agent
        try:
            fcntl.lockf(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(descriptor)
            continue  # its agent runs
        try:
            for path in sorted(entry.iterdir()):
                if path.name != LOCK:
                    _remove(path, f"agent {entry.name}")
            (entry / LOCK).unlink()
            entry.rmdir()
        except OSError as error:  # written to meanwhile: left for the next start
            log.warning("could not clear %s: %s", entry, error)
        finally:
            os.close(descriptor)


def _remove(path: Path, whose: str) -> None:
    log.warning("removing %s: an upload cut short when %s stopped", path.name, whose)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
