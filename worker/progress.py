"""Progress of a long import: a log line and the import record, every interval."""

import logging
import time

from sqlalchemy.exc import SQLAlchemyError

log = logging.getLogger(__name__)


class Progress:
    """Reports every `interval` seconds how many rows are done, at what rate, and the time
    left, estimated from the bytes read: in a log line and through `record` (the store's
    `record_progress`), which `dropimport imports show` and `dropimport status` read."""

    def __init__(self, event, record, interval=5.0, clock=time.monotonic):
        self.event = event
        self.record = record
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self.next_report = self.started + interval

    def track(self, chunks):
        """Yield the Chunks of `chunks`, reporting progress as they go (a clock read a chunk)."""
        done = 0
        for chunk in chunks:
            yield chunk
            done += chunk.rows
            if self.clock() >= self.next_report:
                self.report(done, chunk.bytes_read)

    def report(self, done, bytes_read):
        now = self.clock()
        self.next_report = now + self.interval
        elapsed = max(now - self.started, 1e-9)
        fraction = min(bytes_read / max(self.event["size"], 1), 1.0)
        left = elapsed * (1 - fraction) / fraction if fraction else None
        rate, left = round(done / elapsed), None if left is None else round(left)
        log.info(
            "import %s of account %s file %s: %d rows done, %d rows/s, about %s s left",
            self.event["import_id"], self.event["account"], self.event["file"], done, rate, left,
        )
        try:
            self.record(self.event["import_id"], done, rate, left)
        except SQLAlchemyError:
            # The import matters, not its progress: it goes on, and tries again next interval.
            log.warning("import %s: cannot record its progress", self.event["import_id"],
                        exc_info=True)
