"""Each worker process's heartbeat, which `dropimport health worker` reads.

    heartbeats/<host>-<pid>     its time: when that process last saw its consumer connected

A worker process touches its file every few seconds while its consumer of contact-imports is
connected to RabbitMQ. When the worker is gone, stopped or cut off from RabbitMQ, its file
grows old and the probe fails. Several hosts (or containers) may share the home: a probe reads only
the files of its own host, since it answers for the worker beside it.
"""

import logging
import os
import socket
import threading
import time
from pathlib import Path

from dramatiq import Broker, Middleware, Worker

from schemas import QUEUE

log = logging.getLogger(__name__)

#: Seconds between two beats.
INTERVAL = 5
#: A heartbeat older than this (a few beats missed) is a worker's that stopped consuming.
FRESH = 30
#: Older still: the file of a process gone for good, which the next worker to start removes.
ABANDONED = 3600


class Heartbeat(Middleware):
    """Touch this process's file in `folder` while its consumer of `queue_name` is connected."""

    def __init__(self, folder: Path, queue_name: str, interval: float = INTERVAL) -> None:
        self.folder = folder
        self.queue_name = queue_name
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.path: Path | None = None

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        self.folder.mkdir(mode=0o700, exist_ok=True)
        clear_abandoned(self.folder)
        self.path = self.folder / f"{socket.gethostname()}-{os.getpid()}"
        self._thread = threading.Thread(target=self._run, args=(worker,), name="heartbeat",
                                        daemon=True)
        self._thread.start()

    def before_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            assert self.path is not None  # set with the thread
            self.path.unlink(missing_ok=True)

    def _run(self, worker: Worker) -> None:
        assert self.path is not None  # set before the thread starts
        while True:
            try:
                if consuming(worker, self.queue_name):
                    beat(self.path)
            except OSError as error:
                log.warning("cannot write the heartbeat %s: %s", self.path, error)
            if self._stop.wait(self.interval):
                return


def consuming(worker: Worker, queue_name: str) -> bool:
    """Whether the dramatiq `worker`'s consumer of `queue_name` runs, connected to RabbitMQ."""
    thread = worker.consumers.get(queue_name)
    # dramatiq keeps a consumer whose connection dropped until it reconnects.
    connection = getattr(thread and thread.consumer, "connection", None)
    return bool(thread and thread.is_alive() and connection and connection.is_open)


def beat(path: Path) -> None:
    """Set the time of `path`, made if need be, to now."""
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT, 0o600))
    now = time.time()
    # This host's clock, not a file server's: the probe compares it with this host's clock.
    os.utime(path, (now, now))


def clear_abandoned(folder: Path) -> None:
    """Remove the heartbeats no process touched for ABANDONED seconds, of any host."""
    limit = time.time() - ABANDONED
    for path in folder.iterdir():
        try:
            if path.stat().st_mtime < limit:
                path.unlink()
        except FileNotFoundError:
            pass  # removed meanwhile by another worker


def problem(folder: Path, host: str | None = None) -> str | None:
    """Why no worker process of `host` (this one) consumes contact-imports now, or None."""
    host = host or socket.gethostname()
    times: list[float] = []
    for path in folder.iterdir() if folder.exists() else ():
        try:
            if path.name.rpartition("-")[0] == host:
                times.append(path.stat().st_mtime)
        except FileNotFoundError:
            pass  # its worker stopped meanwhile
    if not times:
        return f"no worker process on {host} consumes {QUEUE} (no heartbeat in {folder})"
    age = time.time() - max(times)
    if age > FRESH:
        return (f"no worker process on {host} has consumed {QUEUE} in the last {FRESH} s "
                f"(the newest heartbeat is {age:.0f} s old)")
    return None
