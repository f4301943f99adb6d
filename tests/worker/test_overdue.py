"""Expected files: due times from cron + grace, the late files, one alert per due time."""

import logging
import threading
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from tests.worker.conftest import HEADER, spool
from worker.overdue import LateFiles, duration, late_files, missed
from worker.runtime.periodic import Chores

DAILY = {"cron": "0 6 * * *", "grace": "2h"}


def at(day, hour, minute=0):
    return datetime(2026, 11, day, hour, minute, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("2h", timedelta(hours=2)), ("90m", timedelta(minutes=90)), ("1d", timedelta(days=1)),
    ("1h30m", timedelta(hours=1, minutes=30)), ("0m", timedelta(0)),
])
def test_grace_durations(text, expected):
    assert duration(text) == expected


@pytest.mark.parametrize(("last", "now", "due"), [
    # Received yesterday a little after 06:00: late only once today's grace has passed
    (at(24, 6, 5), at(25, 7, 59), None),
    (at(24, 6, 5), at(25, 8), at(25, 8)),
    (at(24, 6, 5), at(25, 23), at(25, 8)),
    # Received today, early or late within the grace: not late
    (at(25, 4, 30), at(25, 9), None),
    (at(25, 7, 55), at(25, 9), None),
    # Received after today's due time (its alert was raised): tomorrow's is expected
    (at(25, 9), at(25, 23), None),
    (at(25, 9), at(26, 8), at(26, 8)),
    # Three days without a file: the latest due time
    (at(22, 6), at(25, 9), at(25, 8)),
])
def test_the_latest_missed_due_time(last, now, due):
    assert missed(DAILY, last, now) == due


def test_due_times_follow_the_time_zone_and_the_week():
    # 06:00 in Paris is 05:00 UTC in November
    paris = {**DAILY, "timezone": "Europe/Paris"}
    assert missed(paris, at(24, 5), at(25, 7)) == at(25, 7)
    assert missed(paris, at(24, 5), at(25, 6, 59)) is None
    # Weekdays only: on Sunday 27 November 2026... the 27th is a Friday
    weekdays = {"cron": "0 6 * * 1-5", "grace": "1h"}
    assert missed(weekdays, at(27, 6, 10), at(29, 12)) is None  # Friday received, Sunday
    assert missed(weekdays, at(26, 6, 10), at(29, 12)) == at(27, 7)  # Friday missed


@pytest.fixture
def expecting(importer, registry, demo_template):
    """acme expects contacts.csv daily at 06:00 (2h grace) and orders-*.csv hourly."""
    registry.set_template("acme", {**demo_template, "expected": DAILY})
    registry.set_template("acme", {**demo_template, "file": "orders-*.csv",
                                   "expected": {"cron": "0 * * * *", "grace": "30m"}})
    registry.update("acme", created_at="2026-11-20T00:00:00+00:00")
    return importer


def test_late_files_reads_the_imports_and_the_spool(expecting, home):
    store, registry = expecting.store, expecting.registry
    # Given nothing received since the account was created
    assert [(f["file"], f["due"], f["last_received"]) for f in
            late_files(registry, store, at(25, 9))] == [
        ("contacts.csv", at(25, 8), None), ("orders-*.csv", at(25, 8, 30), None)]
    # When both files are received at 08:35 (one imported, one still waiting in the spool)
    expecting.run(spool(home, "acme", HEADER + "jo@x.com;Jo;Doe;Lyon\r\n"))
    spool(home, "acme", HEADER, file="orders-0825.csv")
    # Then neither is late at 09:30 (the orders came within the grace before 09:00), and
    # the 10:00 orders are late at 10:30
    assert late_files(registry, store, at(25, 9, 30)) == []
    assert late_files(registry, store, at(25, 10, 30)) == [
        {"account": "acme", "file": "orders-*.csv", "due": at(25, 10, 30),
         "last_received": datetime(2026, 11, 25, 8, 35, 12, 123456, tzinfo=UTC)}]
    # And globex, which expects nothing, is never late
    assert {f["account"] for f in late_files(registry, store, at(28, 0))} == {"acme"}


class Recorded:
    """Notifications that record the late files they are told of."""

    def __init__(self):
        self.late_files = []

    def late(self, late):
        self.late_files.append(late)


def late_total():
    return REGISTRY.get_sample_value("dropimport_late_files_total") or 0


def test_each_late_file_is_alerted_once_per_due_time(expecting, caplog):
    now = [at(25, 8, 1)]
    notified = Recorded()
    # Given two workers checking with the same store (and the same clock)
    workers = [LateFiles(expecting.registry, expecting.store, notified, lambda: now[0])
               for _ in range(2)]
    before = late_total()
    # When both check, twice
    with caplog.at_level(logging.WARNING, logger="worker.overdue"):
        raised = [late["file"] for worker in workers * 2 for late in worker.check()]
    # Then each late file is raised once: one log line, one count, one notification
    assert raised == ["orders-*.csv", "contacts.csv"]  # by due time: 07:30, 08:00
    assert late_total() - before == 2
    assert [late["file"] for late in notified.late_files] == raised
    lines = [r.getMessage() for r in caplog.records if r.name == "worker.overdue"]
    assert lines[1] == ("late file: contacts.csv of account acme not received by "
                        "2026-11-25T08:00:00+00:00 (last received never)")
    assert len(lines) == 2
    # And the next due time of a file still missing raises a new alert
    now[0] = at(25, 9, 31)
    assert [late["file"] for late in workers[1].check()] == ["orders-*.csv"]
    assert late_total() - before == 3


def test_the_checks_run_in_a_thread_of_the_worker_until_it_stops():
    checked = threading.Event()

    class Checker:
        def check(self):
            checked.set()
            raise RuntimeError("the store is down")  # logged; the thread carries on

    checks = Chores().add("late-file-checks", lambda: Checker().check(), 0.01)
    checks.after_worker_boot(None, None)
    try:
        assert checked.wait(10)
        checked.clear()
        assert checked.wait(10)  # it went on after the failure
    finally:
        checks.before_worker_shutdown(None, None)
    assert not any(thread.is_alive() for thread in checks._threads)
