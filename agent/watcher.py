"""The watcher: moves each complete file from incoming/ into the spool and publishes it.

    incoming/<import-id>.<account>.<file>
        -> spool/<account>/<import-id>/<file>      (link, unlink: the customer may upload again)
        -> spool/<account>/<import-id>/event.json  (size, sha256: the file event)
        -> published to RabbitMQ (confirmed)       -> spool/<account>/<import-id>/.published

Each step leaves a durable mark, so a crash between two steps loses nothing: the next scan (at
start, then every `rescan_interval` seconds) finishes what was left. A file whose template asks
for a completion marker stays in incoming/ until its marker arrives (see completion.py).

Spooling never waits for RabbitMQ: while it is unreachable, files pile up in the spool (listed as
queued) and publishing is retried with exponential backoff, oldest first. The watchdog handler
only wakes the watcher's thread; nothing slow runs on watchdog's thread.
"""

import contextlib
import hashlib
import json
import logging
import math
import os
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver

from dropimport import logs
from dropimport.accounts import Registry
from dropimport.atomic import write_json
from schemas import FileEvent, SchemaError, spool
from schemas.settings import Home

from . import completion, incoming, metrics

if TYPE_CHECKING:  # not imported at run time: the publisher brings dramatiq in
    from .publisher import Publisher

log = logging.getLogger(__name__)

#: The most of a completion marker that is read: markers are a few lines.
MARKER_BYTES = 64 * 1024


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def backoff(failures: int, first: float, cap: float) -> float:
    """Seconds to wait after the `failures`-th failed attempt in a row: doubling, capped."""
    return min(first * 2 ** (failures - 1), cap)


def file_event(home: Home, arrival: incoming.Arrival,
               expected: dict[str, Any] | None = None) -> FileEvent:
    """The file event of `arrival`, spooled in its folder; `expected` from its marker."""
    path = spool.folder(home, arrival.account, arrival.import_id) / arrival.file
    event: FileEvent = {
        "import_id": arrival.import_id,
        "account": arrival.account,
        "file": arrival.file,
        "spool_path": spool.spool_path(home, arrival.account, arrival.import_id, arrival.file),
        "size": path.stat().st_size,
        "sha256": sha256_of(path),
        "received_at": arrival.received_at.isoformat(),
    }
    if expected:
        event["expected"] = expected
    if arrival.preview:
        event["preview"] = True
    return event


def _context(arrival: incoming.Arrival) -> contextlib.AbstractContextManager[None]:
    """The log context of the work on one arrival."""
    return logs.context(account=arrival.account, import_id=arrival.import_id, file=arrival.file)


class _Wake(FileSystemEventHandler):
    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def on_any_event(self, event: FileSystemEvent) -> None:
        self.event.set()


class Watcher:
    """Watches `home.incoming`, spools what arrives and publishes file events.

    `rescan_interval`: seconds between two scans for what a crash or a dropped inotify event
    left behind. `min_backoff`, `max_backoff`: seconds before the first retry of a failed
    publish, doubling up to the cap while RabbitMQ stays unreachable.
    """

    def __init__(self, home: Home, publisher: "Publisher", rescan_interval: float = 30.0,
                 min_backoff: float = 0.5, max_backoff: float = 30.0) -> None:
        self.home = home
        self.publisher = publisher
        self.registry = Registry(home)
        self.rescan_interval = rescan_interval
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self._unpublished: dict[Path, FileEvent] = {}  # spool folder -> its file event
        # names of the arrivals already logged as waiting for their marker
        self._held: set[str] = set()
        self._failures = 0  # failed publish attempts in a row
        self._failing_since: float | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._observer: BaseObserver | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.home.incoming.mkdir(parents=True, exist_ok=True)
        self.home.spool.mkdir(parents=True, exist_ok=True)
        self._observer = Observer()
        self._observer.schedule(_Wake(self._wake), str(self.home.incoming), recursive=False)
        self._observer.start()
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join()
        if self._thread is not None:
            self._thread.join()

    def _run(self) -> None:
        # The first pass is the re-scan at start: anything left by a crash.
        next_rescan = retry_at = -math.inf
        while not self._stopping.is_set():
            self._wake.clear()  # before the pass: a file arriving during it wakes the next one
            try:
                self.spool_arrivals()
                if time.monotonic() >= next_rescan:
                    self.find_unpublished()
                    next_rescan = time.monotonic() + self.rescan_interval
            except Exception:
                log.exception("watcher pass failed; trying again at the next arrival or rescan")
            if self._unpublished and time.monotonic() >= retry_at:
                retry_at = time.monotonic() + self.publish_unpublished()
            wake_at = min(next_rescan, retry_at if self._unpublished else math.inf)
            self._wake.wait(max(wake_at - time.monotonic(), 0))

    def spool_arrivals(self) -> None:
        """Spool every complete file in incoming/ that is ready, oldest first."""
        arrivals = [incoming.parse(name) for name in sorted(os.listdir(self.home.incoming))]
        sorting = completion.sort_out([a for a in arrivals if a], self._marker_of)
        for arrival, reason in sorting.discarded:
            with _context(arrival):
                log.warning("discarded %s of account %s: %s", arrival.file, arrival.account,
                            reason)
            self._held.discard(arrival.name)
            self._remove(arrival)
        for arrival in sorting.held:
            if arrival.name not in self._held:
                self._held.add(arrival.name)
                with _context(arrival):
                    log.info("holding %s of account %s (import %s) until its completion marker "
                             "arrives", arrival.file, arrival.account, arrival.import_id)
        for arrival, marker in sorting.ready:
            self._held.discard(arrival.name)
            with _context(arrival):
                self.spool(arrival, marker)

    def spool(self, arrival: incoming.Arrival, marker: incoming.Arrival | None = None) -> None:
        """Move `arrival` into its spool folder, write its event, queue it for publishing."""
        expected = self._read_marker(marker) if marker else None
        folder = spool.folder(self.home, arrival.account, arrival.import_id)
        folder.mkdir(parents=True, exist_ok=True)
        if arrival.preview:  # before the file: a preview is never imported as a file
            (folder / spool.PREVIEW).touch()
        # A link, then an unlink, rather than a rename (Maildir delivers the same way): watchdog
        # holds a file renamed out of incoming/ for 0.5 s, waiting for where it went, and every
        # event behind it, so the next upload would wait for what remains of those 0.5 s.
        try:
            os.link(self.home.incoming / arrival.name, folder / arrival.file)
        except FileNotFoundError:
            return  # spooled by an earlier pass
        except FileExistsError:
            pass  # linked by a pass that a crash cut short before the unlink
        self._remove(arrival)
        # A crash here leaves the file spooled without its event: the rescan writes it, without
        # the marker's checks (the marker is then discarded as waiting for nothing).
        event = file_event(self.home, arrival, expected)
        write_json(folder / spool.EVENT_FILE, event)
        if marker:
            self._remove(marker)
        self._unpublished[folder] = event
        log.info(
            "spooled %s of account %s as import %s", arrival.file, arrival.account,
            arrival.import_id,
        )

    def find_unpublished(self) -> None:
        """Queue for publishing every spooled file whose event RabbitMQ never confirmed."""
        for account, import_id in spool.imports(self.home):
            folder = spool.folder(self.home, account, import_id)
            if folder in self._unpublished:
                continue
            try:
                names = os.listdir(folder)
            except FileNotFoundError:
                continue  # imported and archived meanwhile
            uploads = [name for name in names if not spool.is_pipeline_file(name)]
            if spool.PUBLISHED in names or len(uploads) != 1:
                continue
            arrival = incoming.Arrival(import_id, account, uploads[0], spool.PREVIEW in names)
            if spool.EVENT_FILE in names:
                with open(folder / spool.EVENT_FILE, encoding="utf-8") as file:
                    event = json.load(file)
            else:
                event = file_event(self.home, arrival)
                write_json(folder / spool.EVENT_FILE, event)
            self._unpublished[folder] = event

    def publish_unpublished(self) -> float:
        """Publish the waiting events, oldest first; return seconds until the next attempt.

        The first failure stops the round: RabbitMQ is unreachable, so the rest would fail too.
        """
        metrics.UNPUBLISHED.set(len(self._unpublished))
        for folder, event in sorted(self._unpublished.items(), key=lambda i: i[1]["import_id"]):
            try:
                with logs.context(**{key: event.get(key) for key in logs.FIELDS}):
                    self.publisher.publish(event)
            except SchemaError as error:
                # A bug, not an outage: do not let it hold up every other file.
                log.error("import %s not published: %s", event.get("import_id"), error)
                del self._unpublished[folder]
                continue
            except Exception as error:
                return self._failed(error)
            del self._unpublished[folder]
            metrics.PUBLISHED.inc()
            metrics.UNPUBLISHED.set(len(self._unpublished))
            # Gone (imported and archived already) or not writable: at worst it is published
            # again after a restart, and the worker imports an import id once.
            with contextlib.suppress(OSError):
                (folder / spool.PUBLISHED).touch()
        self._recovered()
        return 0

    def _failed(self, error: Exception) -> float:
        self._failures += 1
        delay = backoff(self._failures, self.min_backoff, self.max_backoff)
        if self._failures == 1:
            self._failing_since = time.monotonic()
            log.warning(
                "cannot publish to %s (%s: %s); %d file(s) wait in the spool; retrying every "
                "%.1f s to %.0f s until it is back",
                self.publisher, type(error).__name__, error, len(self._unpublished),
                self.min_backoff, self.max_backoff,
            )
        else:
            log.debug("publishing failed again (%s); next attempt in %.1f s", error, delay)
        return delay

    def _recovered(self) -> None:
        if self._failures:
            assert self._failing_since is not None  # set by the first failure
            log.info(
                "publishing to %s again after %.1f s and %d failed attempts",
                self.publisher, time.monotonic() - self._failing_since, self._failures,
            )
            self._failures = 0

    def _marker_of(self, account: str, file: str) -> str | None:
        template = self.registry.template(account, file)
        return template and template.get("completion", {}).get("marker")

    def _read_marker(self, marker: incoming.Arrival) -> dict[str, Any]:
        with open(self.home.incoming / marker.name, encoding="utf-8", errors="replace") as file:
            expected, ignored = completion.announced(file.read(MARKER_BYTES))
        if ignored:
            log.warning(
                "completion marker %s of account %s: ignored malformed %s",
                marker.file, marker.account, ignored,
            )
        return expected

    def _remove(self, arrival: incoming.Arrival) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.remove(self.home.incoming / arrival.name)
