"""The export schedules: the agent publishes a run of each account's export when it is due.

A worker runs it (queue `contact-exports`). The run is named by its planned time
(schemas.export_event), and what was published last is kept in `export-schedules/<account>/
<export>.json` (`last_planned`), written atomically under a lock: a restart publishes a run
missed while the agent was down (the latest one only), and two agents sharing a home publish
each run once. The fetcher's thread calls `run_due`; the time is the caller's.
"""

import json
import logging
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from dropimport import schedule
from dropimport.accounts import AccountError, Registry
from dropimport.atomic import write_json
from schemas import export_event
from schemas.settings import Home

from .fetcher import IDLE, exclusive
from .watcher import backoff

if TYPE_CHECKING:  # not imported at run time: the publisher brings dramatiq in
    from .publisher import Publisher

log = logging.getLogger(__name__)

#: Seconds before publishing again while RabbitMQ is down: doubling from the first to the cap.
MIN_BACKOFF = 5.0
MAX_BACKOFF = 30.0


class _Unpublished(Exception):
    """The publisher could not publish a run (RabbitMQ down): it is published at a later pass."""


class ExportSchedules:
    """Publishes the run of every account's export under `home` whose scheduled time came."""

    def __init__(self, home: Home, publisher: "Publisher") -> None:
        self.home = home
        self.registry = Registry(home)
        self.publisher = publisher
        # Passes in a row that could not publish: one warning per outage, and the backoff.
        self._failures = 0

    def last_planned(self, account: str, export: str) -> datetime | None:
        """The planned time of the last run of `export` published (or skipped as done), or None
        for an export never seen."""
        try:
            with open(self.home.export_schedule(account, export), encoding="utf-8") as file:
                last = json.load(file).get("last_planned")
        except FileNotFoundError:
            return None
        return None if last is None else datetime.fromisoformat(last)

    def run_due(self, now: datetime) -> datetime:
        """Publish the run of each export whose scheduled time is past (at most one per export:
        the latest); return when this must be called again."""
        wake = now + IDLE
        outage: _Unpublished | None = None
        for document in self.registry.list():
            account = document["name"]
            for name in document.get("exports", {}):
                try:
                    export = self.registry.export(account, name)  # AccountError: just removed
                    schedule.check_schedule(export["schedule"], export["timezone"])
                    wake = min(wake, schedule.next_run(export, now))
                    self._publish_due(account, name, schedule.previous_run(export, now))
                except _Unpublished as error:
                    outage = outage or error
                except (AccountError, OSError, ValueError) as error:
                    log.error("export %s of account %s cannot run: %s", name, account, error)
        if outage is not None:
            if not self._failures:
                log.warning("export runs cannot be published, they wait for %s: %s",
                            self.publisher, outage)
            self._failures += 1
            retry = backoff(self._failures, MIN_BACKOFF, MAX_BACKOFF)
            return min(wake, now + timedelta(seconds=retry))
        if self._failures:
            log.info("export runs are published again after %d failed pass(es)", self._failures)
            self._failures = 0
        return wake

    def _publish_due(self, account: str, name: str, slot: datetime) -> None:
        """Publish the run of `slot` unless it (or a later one) was: a first sight only takes
        `slot` as done, the export runs from its next scheduled time."""
        last = self.last_planned(account, name)
        if last is not None and last >= slot:
            return  # the usual pass: nothing due, no lock taken
        lock = self.home.export_schedule(account, name).with_suffix(".lock")
        with exclusive(lock) as held:
            if not held:
                return  # another agent publishes it
            last = self.last_planned(account, name)  # it may have, just before the lock
            if last is not None and last >= slot:
                return
            if last is None:
                log.info("export %s of account %s is planned: it runs at its next scheduled "
                         "time", name, account)
            else:
                event = export_event(account, name, slot)
                try:
                    self.publisher.publish_export(event)
                except Exception as error:
                    raise _Unpublished(f"{type(error).__name__}: {error}") from error
            write_json(self.home.export_schedule(account, name),
                       {"last_planned": slot.isoformat(timespec="seconds")})
