"""The watcher: moves each complete file from incoming/ into the spool and publishes it.

    incoming/<import-id>.<account>.<file>
        -> spool/<account>/<import-id>/<file>      (rename: the customer may upload again at once)
        -> spool/<account>/<import-id>/event.json  (size, sha256: the file event)
        -> published to RabbitMQ (confirmed)       -> spool/<account>/<import-id>/.published

Each step leaves a durable mark, so a crash between two steps loses nothing: the next scan (at
start, then every `rescan_interval` seconds) finishes what was left. The watchdog handler only
wakes the publishing thread; nothing slow runs on watchdog's thread.
"""

import hashlib
import json
import logging
import math
import os
import threading
import time

from watchdog.events import FileSystemEventHandler
from watchdog.observers import Observer

from schemas import EVENT_FILE as EVENT
from schemas.accounts import write_json

from . import incoming

log = logging.getLogger(__name__)

PUBLISHED = ".published"


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class _Wake(FileSystemEventHandler):
    def __init__(self, event):
        self.event = event

    def on_any_event(self, event):
        self.event.set()


class Watcher:
    """Watches `home.incoming`, spools what arrives and publishes file events."""

    def __init__(self, home, publisher, rescan_interval=30.0):
        self.home = home
        self.publisher = publisher
        self.rescan_interval = rescan_interval
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._observer = None
        self._thread = None

    def start(self):
        self.home.incoming.mkdir(parents=True, exist_ok=True)
        self.home.spool.mkdir(parents=True, exist_ok=True)
        self._observer = Observer()
        self._observer.schedule(_Wake(self._wake), str(self.home.incoming), recursive=False)
        self._observer.start()
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)
        self._thread.start()

    def stop(self):
        self._stopping.set()
        self._wake.set()
        if self._observer is not None:
            self._observer.stop()
            self._observer.join()
        if self._thread is not None:
            self._thread.join()

    def _run(self):
        # The first pass is the re-scan at start: inboxes and spool, anything left by a crash.
        last_rescan = -math.inf
        while not self._stopping.is_set():
            try:
                self.spool_arrivals()
                if time.monotonic() - last_rescan >= self.rescan_interval:
                    last_rescan = time.monotonic()
                    self.publish_pending()
            except Exception:
                log.exception("watcher pass failed; retrying in %.0f s", self.rescan_interval)
            self._wake.wait(self.rescan_interval)
            self._wake.clear()

    def spool_arrivals(self):
        """Spool and publish every complete file in incoming/, oldest first."""
        for name in sorted(os.listdir(self.home.incoming)):
            arrival = incoming.parse(name)
            if arrival is None:
                continue
            folder = self.home.spool / arrival.account / arrival.import_id
            folder.mkdir(parents=True, exist_ok=True)
            try:
                os.rename(self.home.incoming / name, folder / arrival.file)
            except FileNotFoundError:
                continue  # already spooled by an earlier pass
            log.info(
                "spooled %s of account %s as import %s",
                arrival.file, arrival.account, arrival.import_id,
            )
            self.publish(folder, arrival)

    def publish_pending(self):
        """Publish every spooled file whose event was never confirmed by RabbitMQ."""
        for account in sorted(os.listdir(self.home.spool)):
            for import_id in sorted(os.listdir(self.home.spool / account)):
                folder = self.home.spool / account / import_id
                try:
                    names = os.listdir(folder)
                except FileNotFoundError:
                    continue  # imported and archived meanwhile
                files = [name for name in names if name != EVENT and not name.startswith(".")]
                if PUBLISHED in names:
                    continue
                if len(files) == 1:
                    self.publish(folder, incoming.Arrival(import_id, account, files[0]))

    def publish(self, folder, arrival):
        """Write the file event next to the spooled file, publish it, mark it published."""
        event_path = folder / EVENT
        if event_path.exists():
            with open(event_path, encoding="utf-8") as file:
                event = json.load(file)
        else:
            path = folder / arrival.file
            event = {
                "import_id": arrival.import_id,
                "account": arrival.account,
                "file": arrival.file,
                "spool_path": str(path.relative_to(self.home.root)),
                "size": path.stat().st_size,
                "sha256": sha256_of(path),
                "received_at": arrival.received_at.isoformat(),
            }
            write_json(event_path, event)
        self.publisher.publish(event)
        (folder / PUBLISHED).touch()
