"""Progress of a long import: a log line and a small file beside the spooled file."""

import logging
import time
from datetime import UTC, datetime

from schemas.accounts import write_json

log = logging.getLogger(__name__)

PROGRESS = ".progress"


class Progress:
    """Reports every `interval` seconds how many rows are done, at what rate, and the time
    left, estimated from the bytes read; `dropimport imports show` displays it."""

    def __init__(self, folder, event, interval=5.0, clock=time.monotonic):
        self.path = folder / PROGRESS
        self.event = event
        self.interval = interval
        self.clock = clock
        self.started = clock()
        self.next_report = self.started + interval

    def track(self, chunks):
        """Yield the Chunks of `chunks`, reporting progress as they go."""
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
        state = {
            "rows_done": done,
            "rows_per_second": round(done / elapsed),
            "seconds_left": None if left is None else round(left),
            "updated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        write_json(self.path, state)
        log.info(
            "import %s of account %s file %s: %d rows done, %d rows/s, about %s s left",
            self.event["import_id"], self.event["account"], self.event["file"], done,
            state["rows_per_second"], state["seconds_left"],
        )
