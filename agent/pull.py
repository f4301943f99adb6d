"""Pull mode's decisions, without I/O: which remote files to fetch, when to run, when to alert.

A source is one file (or glob) on a customer's own FTP, FTPS or SFTP server, fetched on a cron
schedule. The fetcher (fetcher.py) does the talking and the file operations; everything it
decides is decided here, from listings, the state of what was fetched and the time. Sources'
URLs are read by dropimport/remote.py, their schedules by dropimport/schedule.py: exports
(worker/) share both.
"""

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from dropimport.accounts import file_matches
from schemas import spool as layout

from .watcher import backoff

if TYPE_CHECKING:  # not imported at run time: remote.py brings asyncssh in
    from dropimport.remote import RemoteFile

def matching(listing: Mapping[str, "RemoteFile"], pattern: str) -> list["RemoteFile"]:
    """The files of a listing whose name the source's `file` names, by name: never one the
    spool keeps for the files it adds beside an upload, which a glob such as `*` matches."""
    return sorted((f for f in listing.values()
                   if file_matches(pattern, f.name) and not layout.is_pipeline_file(f.name)),
                  key=lambda f: f.name)


def is_new(file: "RemoteFile", fetched: Mapping[str, Mapping[str, Any]]) -> bool:
    """Whether `file` was never fetched, or changed (size or time) since it was."""
    seen = fetched.get(file.name)
    return seen is None or (seen["size"], seen["mtime"]) != (file.size, file.mtime)


def to_fetch(files: Iterable["RemoteFile"],
             fetched: Mapping[str, Mapping[str, Any]]) -> list["RemoteFile"]:
    """The files that are new or changed since they were last fetched."""
    return [f for f in files if is_new(f, fetched)]


def stable(wanted: Sequence["RemoteFile"],
           later: Mapping[str, "RemoteFile"]) -> tuple[list["RemoteFile"], list["RemoteFile"]]:
    """Split `wanted` into the files `later` (a listing some seconds after) shows unchanged,
    and those still being written (or gone)."""
    ready = [f for f in wanted if later.get(f.name) == f]
    return ready, [f for f in wanted if later.get(f.name) != f]


def retry_at(failures: int, now: datetime, scheduled: datetime, first: float, cap: float,
             refused: bool = False) -> datetime:
    """When to try again after the `failures`-th failed run in a row.

    An outage is retried with a doubling delay (`first` seconds, at most `cap`), never past the
    next scheduled run; a refused login or an untrusted server waits for that run, since
    trying again cannot help and a customer's server may lock the account out.
    """
    if refused:
        return scheduled
    return min(now + timedelta(seconds=backoff(failures, first, cap)), scheduled)


def alert_due(failures: int, alert_after: int, alerted: bool | None,
              refused: bool = False) -> bool:
    """Whether to raise the alert now: once per run of failures, at the `alert_after`-th in a
    row, or at once when the login was refused or the server not trusted."""
    return not alerted and (refused or failures >= alert_after)
