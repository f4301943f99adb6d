"""Progress of a long import: a log line and the import record, every interval."""

import contextvars
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy.exc import SQLAlchemyError

from schemas import FileEvent

from .read.rows import Chunk
from .record import ImportRecord

log = logging.getLogger(__name__)

#: Reports of an import that stands still (a slow chunk, a wait for the database) come from a
#: thread at most this often: an interval of 0 (a report after each chunk) never spins it.
MIN_BEAT = 1.0
#: A running import reports at least every interval (`Progress.steady`). Readers take one
#: silent for this many intervals, and at least MIN_SILENCE, for one no worker runs any more.
SILENT_INTERVALS = 3
MIN_SILENCE = timedelta(seconds=10)


class Progress:
    """Reports every `interval` seconds how many rows are done, at what rate, and the time
    left, estimated from the bytes read: in a log line and through `record` (the store's
    `record_progress`), which `dropimport imports show` and `dropimport status` read."""

    def __init__(self, event: FileEvent, record: Callable[[str, int, int, int | None], object],
                 interval: float = 5.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.event = event
        self.record = record
        self.interval = interval
        self.clock = clock
        self.started = self.reported = clock()
        #: How far the import is at its last chunk: rows done, bytes of the file read.
        self.done = self.bytes_read = 0
        self._reporting = threading.Lock()

    def track(self, chunks: Iterable[Chunk]) -> Iterator[Chunk]:
        """Yield the Chunks of `chunks`, reporting progress as they go (a clock read a chunk)."""
        for chunk in chunks:
            yield chunk
            self.done += chunk.rows
            self.bytes_read = chunk.bytes_read
            if self.clock() >= self.reported + self.interval:
                self.report()

    @contextmanager
    def steady(self) -> Iterator[None]:
        """Within the block, a thread of its own reports too whenever an interval (at least
        MIN_BEAT) passes without a report: a slow chunk, a wait for the database's write lock,
        the commit. So a running import's progress is never much older than an interval."""
        period = max(self.interval, MIN_BEAT)
        stopping = threading.Event()

        def beat() -> None:
            while not stopping.wait(period):
                if self.clock() >= self.reported + period:
                    self.report()

        # Its log lines carry the import's context (account, import id, file).
        thread = threading.Thread(target=contextvars.copy_context().run, args=(beat,),
                                  name="progress", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stopping.set()
            thread.join()

    def report(self) -> None:
        with self._reporting:  # the import's thread or `steady`'s, one at a time
            now = self.reported = self.clock()
            done = self.done
            elapsed = max(now - self.started, 1e-9)
            fraction = min(self.bytes_read / max(self.event["size"], 1), 1.0)
            left = elapsed * (1 - fraction) / fraction if fraction else None
            rate, left = round(done / elapsed), None if left is None else round(left)
            log.info(
                "import %s of account %s file %s: %d rows done, %d rows/s, about %s s left",
                self.event["import_id"], self.event["account"], self.event["file"], done, rate,
                left,
            )
            try:
                self.record(self.event["import_id"], done, rate, left)
            except SQLAlchemyError:
                # The import matters, not its progress: it goes on, and tries again next time.
                log.warning("import %s: cannot record its progress", self.event["import_id"],
                            exc_info=True)


def silence(interval: float) -> timedelta:
    """How long a running import may go without a report before readers call it interrupted,
    when imports report every `interval` seconds."""
    return max(timedelta(seconds=SILENT_INTERVALS * interval), MIN_SILENCE)


def as_seen(record: ImportRecord, now: datetime, interval: float) -> ImportRecord:
    """The import `record` (as `store.public` gives it) as readers show it at `now`.

    A running import that has not reported (nor started) for `silence(interval)` is shown
    `interrupted`: its worker stopped without a word (SIGKILL, a crash, a second Ctrl-C).
    Nothing of it was committed, and its message, redelivered by RabbitMQ, imports it again.
    """
    last = record["status"] == "running" and (record["progress_at"] or record["started_at"])
    if not last or now - datetime.fromisoformat(last) < silence(interval):
        return record
    return {**record, "status": "interrupted", "note": (
        f"no progress since {last}: its worker stopped, nothing of it was imported; it is "
        "imported again when RabbitMQ hands its message to a worker")}
