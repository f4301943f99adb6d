"""The fetcher: pulls the accounts' files from their own servers on schedule (pull mode).

A fetched file takes the path of an FTP upload: downloaded under `staging/`, checked (size as
listed, sha256), then renamed into `incoming/` under its remote name, where the watcher spools
and publishes it like any upload. What was fetched (size, time, sha256 per remote name) and how
the last runs went are kept in `pull/<account>/<source>.json`, written atomically, so that a
restart neither fetches an unchanged file again nor forgets a failing server.

One thread runs every source's schedule, and the export schedules (exports.py); the decisions
are in pull.py, the protocols in remote.py. The clock is injected: tests drive schedules and
waits without sleeping.
"""

import contextlib
import fcntl
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from dropimport import credentials, remote, schedule
from dropimport.accounts import AccountError, Registry, with_defaults
from dropimport.atomic import write_json
from schemas.settings import Home

from . import incoming, pull, staging
from .watcher import sha256_of

if TYPE_CHECKING:  # exports.py imports this module
    from .exports import ExportSchedules

log = logging.getLogger(__name__)

#: Attempts to download one file, resuming after a dropped connection, within one run.
DOWNLOAD_ATTEMPTS = 3
#: The longest the fetcher sleeps before it looks at the accounts again (new sources).
IDLE = timedelta(seconds=60)


class Clock:
    """The real time. Tests pass one of their own, with the same two methods."""

    def now(self) -> datetime:
        return datetime.now(UTC)

    def wait(self, event: threading.Event, seconds: float) -> bool:
        """Wait `seconds`, or until `event` is set; whether it is set."""
        return event.wait(seconds)


class Busy(Exception):
    """Another process (the agent, or `dropimport source fetch`) is fetching this source."""


class Run(NamedTuple):
    """What one run of a source did, by remote file name."""

    fetched: list  # (name, import id)
    unchanged: list  # new size or time, same sha256 as the last fetch: nothing to import
    growing: list  # still being written: fetched at a later run


def refused(error: BaseException) -> bool:
    """Whether trying again cannot help until someone acts: a refused login, an untrusted
    server, a password that cannot be had."""
    return isinstance(error, remote.LoginRefused | remote.Untrusted | credentials.CredentialError)


@contextlib.contextmanager
def exclusive(path: Path) -> Iterator[bool]:
    """Lock `path` (made if missing) for this process unless another holds it: whether it is
    held. The lock goes with the process: a crashed agent never leaves it taken."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
        else:
            yield True


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


class _Session:
    """The connection of one run; reconnects after a drop."""

    def __init__(self, connect: Callable[[dict[str, Any], str], remote.Remote],
                 source: dict[str, Any], password: str) -> None:
        self._connect = lambda: connect(source, password)
        self.remote = self._connect()

    def reconnect(self) -> None:
        with contextlib.suppress(Exception):
            self.remote.close()
        # Only close() may see this None (when connecting fails), and it checks for it.
        self.remote = None  # type: ignore[assignment]
        self.remote = self._connect()

    def close(self) -> None:
        if self.remote is not None:
            self.remote.close()


class Fetcher:
    """Fetches the sources of every account under `home`; `start()` runs their schedules.

    `secret_key`: DROPIMPORT_SECRET_KEY, to decrypt passwords. `min_backoff`, `max_backoff`:
    seconds before the first retry of a failed run, doubling up to the cap, never past the next
    scheduled run. `connect(source, password)` opens a Remote (tests may wrap it). `schedules`:
    the export schedules, run by the same thread at each pass.
    """

    def __init__(self, home: Home, secret_key: str | None = None, clock: Clock | None = None,
                 connect: Callable[[dict[str, Any], str], remote.Remote] = remote.connect,
                 environ: Mapping[str, str] | None = None, min_backoff: float = 30.0,
                 max_backoff: float = 900.0,
                 schedules: "ExportSchedules | None" = None) -> None:
        self.home = home
        self.registry = Registry(home)
        self.secret_key = secret_key
        self.clock = clock or Clock()
        self.connect = connect
        self.environ = environ
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.schedules = schedules
        # (account, source) -> ((schedule, time zone), when it runs next)
        self._due: dict[tuple[str, str], tuple[tuple[str, str], datetime]] = {}
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one run -------------------------------------------------------------------------------

    def state(self, account: str, name: str) -> dict[str, Any]:
        """What source `name` of `account` fetched, and how its last runs went."""
        try:
            with open(self.home.pull_state(account, name), encoding="utf-8") as file:
                return json.load(file)
        except FileNotFoundError:
            return {"files": {}, "failures": 0}

    def _save(self, account: str, name: str, state: dict[str, Any]) -> None:
        write_json(self.home.pull_state(account, name), state)

    @contextlib.contextmanager
    def _lock(self, account: str, name: str) -> Iterator[None]:
        with exclusive(self.home.pull_state(account, name).with_suffix(".lock")) as held:
            if not held:
                raise Busy(f"source {name} of account {account} is being fetched")
            yield

    def _open(self, source: dict[str, Any]) -> _Session:
        password = credentials.reveal(source["secret"], self.secret_key, self.environ)
        return _Session(self.connect, source, password)

    def test(self, account: str, name: str) -> list[tuple[remote.RemoteFile, bool]]:
        """Connect and list: [(file, would be fetched?)] for the files the source names."""
        source = self.registry.source(account, name)
        fetched = self.state(account, name)["files"]
        session = self._open(source)
        try:
            files = pull.matching(session.remote.listing(), source["file"])
        finally:
            session.close()
        return [(file, pull.is_new(file, fetched)) for file in files]

    def fetch(self, account: str, name: str, scheduled: bool = False) -> Run:
        """Fetch the new or changed files of a source now, and hand them to the watcher.

        Raises remote.RemoteError (and its kinds), credentials.CredentialError or OSError when
        the run fails, after recording the failure (and alerting, see pull.alert_due); Busy
        when another process is fetching the same source. `scheduled`: a run of the schedule.
        """
        source = self.registry.source(account, name)
        limit = with_defaults(self.registry.get(account))["max_file_size"]
        with self._lock(account, name):
            state = self.state(account, name)
            state["last_attempt"] = _iso(self.clock.now())
            if scheduled:
                state["last_run"] = state["last_attempt"]
            try:
                run = self._fetch(account, name, source, state, limit)
            except Exception as error:
                self._failed(account, name, source, state, error)
                raise
            if state.get("failures"):
                log.info("source %s of account %s works again after %d failed run(s)",
                         name, account, state["failures"])
            state.update(failures=0, alerted=False, refused=False, last_error=None,
                         last_success=_iso(self.clock.now()))
            self._save(account, name, state)
            return run

    def _fetch(self, account: str, name: str, source: dict[str, Any], state: dict[str, Any],
               limit: int) -> Run:
        session = self._open(source)
        try:
            files = pull.matching(session.remote.listing(), source["file"])
            wanted = pull.to_fetch(files, state["files"])
            if too_large := [f for f in wanted if f.size > limit]:
                raise remote.RemoteError(
                    f"{too_large[0].name} is {too_large[0].size} bytes, more than the account's "
                    f"max_file_size ({limit}): not fetched")
            growing: list[remote.RemoteFile]
            ready, growing = wanted, []
            if wanted and source["stable_seconds"]:
                # A file still being written changes between two listings some seconds apart.
                if self.clock.wait(self._stopping, source["stable_seconds"]):
                    return Run([], [], [f.name for f in wanted])  # stopping: at the next start
                ready, growing = pull.stable(wanted, session.remote.listing())
            for file in growing:
                log.info("%s of source %s (account %s) is still being written; fetched later",
                         file.name, name, account)
            # Forget the files no longer there: the state stays as small as the listing.
            listed = {file.name for file in files}
            state["files"] = {k: v for k, v in state["files"].items() if k in listed}
            fetched: list[tuple[str, str | None]] = []
            unchanged: list[tuple[str, str | None]] = []
            for file in ready:
                import_id = self._fetch_file(session, account, name, source, file, state)
                (fetched if import_id else unchanged).append((file.name, import_id))
        finally:
            session.close()
        return Run(fetched, [n for n, _ in unchanged], [f.name for f in growing])

    def _fetch_file(self, session: _Session, account: str, name: str, source: dict[str, Any],
                    file: remote.RemoteFile, state: dict[str, Any]) -> str | None:
        """Download `file`, hand it over if its content is new; its import id, or None."""
        part = staging.own(self.home).part(f"{account}.pull-{name}")
        try:
            self._download(session, file, part)
            sha256 = sha256_of(part)
            seen = state["files"].get(file.name)
            import_id = None
            if seen and seen["sha256"] == sha256:
                log.info("%s of source %s (account %s) has a new time but the same content; "
                         "not imported again", file.name, name, account)
            else:
                import_id = incoming.deliver(self.home, account, file.name, part).import_id
                log.info("fetched %s (%d bytes) from source %s of account %s: import %s",
                         file.name, file.size, name, account, import_id)
        finally:
            with contextlib.suppress(FileNotFoundError):
                part.unlink()
        state["files"][file.name] = {
            "size": file.size, "mtime": file.mtime, "sha256": sha256,
            "fetched_at": _iso(self.clock.now()),
            "import_id": import_id or (seen and seen.get("import_id")),
        }
        # Saved before the remote file is touched: a crash then never fetches it twice.
        self._save(account, name, state)
        self._after_download(session, account, name, source, file)
        return import_id

    def _download(self, session: _Session, file: remote.RemoteFile, part: Path) -> None:
        """Download `file` into `part` completely, resuming after a drop, or raise."""
        for attempt in range(1, DOWNLOAD_ATTEMPTS + 1):
            try:
                session.remote.download(file.name, part)
            except remote.RemoteError as error:
                problem = str(error)
            else:
                size = part.stat().st_size
                if size == file.size:
                    return
                problem = f"received {size} of {file.size} bytes"
                if size > file.size:
                    part.unlink()  # changed under us: start again
            if attempt == DOWNLOAD_ATTEMPTS:
                break
            log.warning("download of %s cut (%s); attempt %d of %d resumes at byte %d",
                        file.name, problem, attempt + 1, DOWNLOAD_ATTEMPTS,
                        part.stat().st_size if part.exists() else 0)
            session.reconnect()
            if session.remote.listing().get(file.name) != file:
                raise remote.RemoteError(f"{file.name} changed during its download; "
                                         "fetched at the next run")
        raise remote.RemoteError(
            f"{file.name}: download incomplete after {DOWNLOAD_ATTEMPTS} attempts ({problem})")

    def _after_download(self, session: _Session, account: str, name: str,
                        source: dict[str, Any], file: remote.RemoteFile) -> None:
        action = source["after_download"]
        try:
            if action == "delete":
                session.remote.delete(file.name)
            elif action == "move":
                session.remote.move(file.name, source["move_to"])
        except remote.RemoteError as error:
            # The file was fetched: a failure here costs nothing but a leftover remote file.
            log.warning("could not %s %s of source %s (account %s) after its download: %s",
                        action, file.name, name, account, error)

    def _failed(self, account: str, name: str, source: dict[str, Any], state: dict[str, Any],
                error: Exception) -> None:
        state["failures"] = state.get("failures", 0) + 1
        state["last_error"] = str(error)
        state["refused"] = refused(error)
        if pull.alert_due(state["failures"], source["alert_after"], state.get("alerted"),
                          refused(error)):
            state["alerted"] = True
            log.error("ALERT source %s of account %s: %d failed run(s) in a row; last: %s",
                      name, account, state["failures"], error)
        else:
            log.warning("source %s of account %s failed (%d in a row): %s",
                        name, account, state["failures"], error)
        self._save(account, name, state)

    # -- the schedules -------------------------------------------------------------------------

    def run_due(self) -> datetime:
        """Run every source (and export schedule) whose time has come; return when the next
        one is due."""
        now = self.clock.now()
        wake = now + IDLE
        if self.schedules is not None:
            # First: publishing takes a moment, a source's run may take minutes.
            wake = min(wake, self.schedules.run_due(now))
        due = {}
        for document in self.registry.list():
            account = document["name"]
            for name in document.get("sources", {}):
                key = (account, name)
                try:
                    source = self.registry.source(account, name)
                    plan = (source["schedule"], source["timezone"])
                    planned, when = self._due.get(key) or (None, None)
                    if planned != plan:
                        when = self._first_run(account, name, source, now)
                    assert when is not None  # a source not planned yet was planned just above
                    if when <= now:
                        when = self._scheduled_run(account, name, source, now)
                except (AccountError, schedule.ScheduleError) as error:
                    log.error("source %s of account %s cannot run: %s", name, account, error)
                    continue
                due[key] = (plan, when)
                wake = min(wake, when)
        self._due = due
        return wake

    def _first_run(self, account: str, name: str, source: dict[str, Any],
                   now: datetime) -> datetime:
        """When a source runs first after the agent starts: at once if a run was missed while
        it was down, or if the last run failed (unless a retry cannot help); else on schedule."""
        state = self.state(account, name)
        last = state.get("last_run")
        if last is None:
            return schedule.next_run(source, now)
        if state.get("failures") and not state.get("refused"):
            return now
        return max(schedule.next_run(source, datetime.fromisoformat(last)), now)

    def _scheduled_run(self, account: str, name: str, source: dict[str, Any],
                       now: datetime) -> datetime:
        scheduled = schedule.next_run(source, now)
        try:
            run = self.fetch(account, name, scheduled=True)
        except Busy:
            return min(now + timedelta(seconds=self.min_backoff), scheduled)
        except Exception as error:
            if not isinstance(error, remote.RemoteError | credentials.CredentialError | OSError):
                log.exception("source %s of account %s failed unexpectedly", name, account)
            failures = self.state(account, name)["failures"]
            return pull.retry_at(failures, now, scheduled, self.min_backoff, self.max_backoff,
                                 refused(error))
        if run.growing:
            return min(now + timedelta(seconds=self.min_backoff), scheduled)
        return scheduled

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fetcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                wake = self.run_due()
            except Exception:
                log.exception("fetcher pass failed; trying again in %s", IDLE)
                wake = self.clock.now() + IDLE
            self.clock.wait(self._stopping, max((wake - self.clock.now()).total_seconds(), 0))


def describe(fetcher: Fetcher, account: str, name: str) -> dict[str, Any]:
    """A source as `source list` shows it: URL, schedule, last runs; never its password."""
    source = fetcher.registry.source(account, name)
    state = fetcher.state(account, name)
    return {
        "account": account, "source": name, "url": remote.url_of(source),
        "schedule": source["schedule"], "timezone": source["timezone"],
        "password": credentials.shown(source["secret"]),
        "after_download": source["after_download"],
        "last_success": state.get("last_success"), "failures": state.get("failures", 0),
        "last_error": state.get("last_error"), "files": sorted(state["files"]),
    }

