"""Pull mode's decisions, without I/O: which remote files to fetch, when to run, when to alert.

A source is one file (or glob) on a customer's own FTP, FTPS or SFTP server, fetched on a cron
schedule. The fetcher (fetcher.py) does the talking and the file operations; everything it
decides is decided here, from listings, the state of what was fetched and the time.
"""

import posixpath
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

from dropimport.accounts import file_matches
from schemas import spool as layout

from .watcher import backoff

if TYPE_CHECKING:  # not imported at run time: remote.py brings asyncssh in
    from .remote import RemoteFile

DEFAULT_PORTS = {"ftp": 21, "ftps": 21, "sftp": 22}


class SourceError(ValueError):
    """A source's URL or schedule is not usable; the message says why, in one line."""


def parse_url(url: str) -> dict[str, Any]:
    """The protocol, host, port, user, directory and file of a source URL.

    `ftps://USER@HOST:PORT/DIR/contacts.csv`; the last part may be a glob (`export-*.csv`);
    `/~/` at the start of the path is the login's home directory. No password in the URL.
    """
    parts = urlsplit(url)
    protocol = parts.scheme.lower()
    if protocol not in DEFAULT_PORTS:
        raise SourceError(f"bad URL {url!r}: it must start with ftp://, ftps:// or sftp://")
    if parts.password is not None:
        raise SourceError(
            "the URL must not hold the password: give it with --password-stdin or --secret"
        )
    if not parts.username or not parts.hostname:
        raise SourceError(f"bad URL {url!r}: write it like {protocol}://USER@HOST/DIR/FILE")
    try:
        port = parts.port or DEFAULT_PORTS[protocol]
    except ValueError:
        raise SourceError(f"bad URL {url!r}: the port is not a number") from None
    directory, file = posixpath.split(unquote(parts.path))
    if not file:
        raise SourceError(f"bad URL {url!r}: it must end with the file name, or a glob")
    if directory == "/~" or directory.startswith("/~/"):
        directory = directory[1:]
    return {"protocol": protocol, "host": parts.hostname, "port": port,
            "user": unquote(parts.username), "directory": directory, "file": file}


def url_of(source: Mapping[str, Any]) -> str:
    """The URL of a source as an operator reads it (the password is never part of it)."""
    path = "/" + posixpath.join(source["directory"], source["file"]).lstrip("/")
    host = f"[{source['host']}]" if ":" in source["host"] else source["host"]
    return f"{source['protocol']}://{quote(source['user'], safe='')}@{host}:{source['port']}{path}"


def zone(timezone: str) -> ZoneInfo:
    try:
        return ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise SourceError(f"unknown time zone {timezone!r}: use a name like Europe/Paris") \
            from None


def check_schedule(schedule: str, timezone: str = "UTC") -> None:
    """Raise SourceError unless `schedule` is a cron expression croniter reads."""
    zone(timezone)
    if not croniter.is_valid(schedule):
        raise SourceError(
            f"bad schedule {schedule!r}: write a cron expression such as '0 6 * * *' "
            "(minute hour day-of-month month day-of-week)"
        )


def next_run(source: Mapping[str, Any], after: datetime) -> datetime:
    """The first scheduled time of `source` strictly after `after` (an aware datetime)."""
    local = after.astimezone(zone(source.get("timezone", "UTC")))
    return croniter(source["schedule"], local).get_next(type(after)).astimezone(after.tzinfo)


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
