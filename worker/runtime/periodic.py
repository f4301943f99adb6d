"""The chores a worker process runs every so often, each in a thread of its own (late files,
the journal's purge), while the process runs."""

import logging
import threading
from collections.abc import Callable

from dramatiq import Broker, Middleware, Worker

log = logging.getLogger(__name__)


class Chores(Middleware):
    """Runs each chore added every `interval` seconds (first after `delay`, default the
    interval), in a thread named after it; a failure is logged and the next run comes as
    planned. (One middleware for all: dramatiq warns of two of the same type.)"""

    def __init__(self) -> None:
        self.chores: list[tuple[str, Callable[[], object], float, float]] = []
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def add(self, name: str, task: Callable[[], object], interval: float,
            delay: float | None = None) -> "Chores":
        self.chores.append((name, task, interval, interval if delay is None else delay))
        return self

    def after_worker_boot(self, broker: Broker, worker: Worker) -> None:
        for name, task, interval, delay in self.chores:
            thread = threading.Thread(target=self._run, args=(name, task, interval, delay),
                                      name=name, daemon=True)
            thread.start()
            self._threads.append(thread)

    def before_worker_shutdown(self, broker: Broker, worker: Worker) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def _run(self, name: str, task: Callable[[], object], interval: float, wait: float
             ) -> None:
        while not self._stop.wait(wait):
            wait = interval
            try:
                task()
            except Exception:
                log.exception("%s failed; trying again in %s s", name, interval)
