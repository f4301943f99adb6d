"""The export schedules: which run the agent publishes, when, and once, driven by the test's own
time and a publisher that records (or refuses) what it is given."""

import json
import logging
from datetime import UTC, datetime, timedelta

import pika
import pytest

from agent.exports import ExportSchedules
from agent.fetcher import IDLE, Fetcher, exclusive
from agent.publisher import Publisher
from schemas import EXPORT_ACTOR, EXPORT_QUEUE
from tests.agent.test_fetcher import FakeClock

SIX = datetime(2026, 11, 25, 6, 0, tzinfo=UTC)
DAILY = {"schedule": "0 6 * * *", "to": "hosted"}


class FakePublisher:
    """Records the export runs published; raises `down` while it is set."""

    def __init__(self):
        self.events = []
        self.down = None

    def publish_export(self, event):
        if self.down:
            raise self.down
        self.events.append(event)

    def __str__(self):
        return "the test's broker"


@pytest.fixture
def publisher():
    return FakePublisher()


@pytest.fixture
def acme(registry):
    registry.create("acme", "acme", "acme-pw")
    return registry


@pytest.fixture
def planner(home, publisher):
    return ExportSchedules(home, publisher)


def run_ids(publisher):
    return [event["run_id"] for event in publisher.events]


def test_a_new_export_first_runs_at_its_next_scheduled_time(acme, planner, publisher):
    # Given an export added at 05:00, daily at 06:00
    acme.set_export("acme", "daily", DAILY)
    five = SIX - timedelta(hours=1)

    # When the agent first sees it, nothing is published: yesterday's 06:00 is not due
    assert planner.run_due(five) == five + IDLE
    assert publisher.events == []
    assert planner.last_planned("acme", "daily") == SIX - timedelta(days=1)
    # And the planner asks to be called at 06:00 once within the last IDLE before it
    assert planner.run_due(SIX - timedelta(seconds=30)) == SIX

    # When 06:00 comes, one run is published, named by its planned time
    assert planner.run_due(SIX) == SIX + IDLE
    assert publisher.events == [{
        "run_id": "acme.daily.20261125T060000Z", "account": "acme", "export": "daily",
        "trigger": "schedule", "planned_for": "2026-11-25T06:00:00+00:00"}]
    assert planner.last_planned("acme", "daily") == SIX

    # And a second pass at the same time, or later that day, publishes nothing more
    planner.run_due(SIX)
    planner.run_due(SIX + timedelta(hours=3))
    assert len(publisher.events) == 1


def test_slots_missed_while_the_agent_was_down_run_once_the_latest(acme, planner, publisher):
    acme.set_export("acme", "daily", DAILY)
    planner.run_due(SIX - timedelta(minutes=1))
    # When the agent comes back three days later (three 06:00 missed), at 09:00
    back = SIX + timedelta(days=3, hours=3)
    ExportSchedules(acme.home, publisher).run_due(back)
    # Then the latest missed run alone is published
    assert run_ids(publisher) == ["acme.daily.20261128T060000Z"]


def test_a_schedule_runs_in_its_time_zone(acme, planner, publisher):
    # 06:00 in Paris is 05:00 UTC in November (07:00 the day of summer time's start)
    acme.set_export("acme", "daily", {**DAILY, "timezone": "Europe/Paris"})
    planner.run_due(datetime(2026, 11, 25, 0, 0, tzinfo=UTC))
    paris_six = datetime(2026, 11, 25, 5, 0, tzinfo=UTC)
    assert planner.run_due(paris_six - timedelta(seconds=1)) == paris_six
    assert publisher.events == []
    planner.run_due(paris_six)
    [event] = publisher.events
    assert event["planned_for"] == "2026-11-25T05:00:00+00:00"
    assert event["run_id"] == "acme.daily.20261125T050000Z"


def test_a_run_that_cannot_be_published_is_published_later_under_its_time(
        acme, planner, publisher, caplog):
    acme.set_export("acme", "daily", DAILY)
    planner.run_due(SIX - timedelta(minutes=1))
    # Given RabbitMQ down at 06:00
    publisher.down = ConnectionError("connection refused")
    with caplog.at_level(logging.WARNING, logger="agent.exports"):
        wake = planner.run_due(SIX)
        # Then nothing is saved, and the planner asks to be called again soon
        assert planner.last_planned("acme", "daily") == SIX - timedelta(days=1)
        assert SIX < wake <= SIX + timedelta(seconds=5)
        # And while it stays down, the outage is logged once, the retries wait longer
        later = planner.run_due(wake)
        assert wake < later <= wake + timedelta(seconds=10)
    assert [r.levelname for r in caplog.records if r.levelno >= logging.WARNING] == ["WARNING"]
    assert "connection refused" in caplog.text
    # When it is back, the 06:00 run is published, under its own time
    publisher.down = None
    planner.run_due(SIX + timedelta(minutes=7))
    assert [e["planned_for"] for e in publisher.events] == ["2026-11-25T06:00:00+00:00"]
    assert planner.last_planned("acme", "daily") == SIX


def test_two_agents_publish_each_run_once(acme, home, publisher):
    acme.set_export("acme", "daily", DAILY)
    first, second = ExportSchedules(home, publisher), ExportSchedules(home, publisher)
    for planner in (first, second):
        planner.run_due(SIX - timedelta(minutes=1))
    for planner in (first, second):
        planner.run_due(SIX)
    assert run_ids(publisher) == ["acme.daily.20261125T060000Z"]


def test_a_run_published_by_another_agent_just_before_the_lock_is_not_published_again(
        acme, home, publisher, monkeypatch):
    acme.set_export("acme", "daily", DAILY)
    first, second = ExportSchedules(home, publisher), ExportSchedules(home, publisher)
    first.run_due(SIX - timedelta(minutes=1))

    # Given the first agent publishing 06:00 between the second's look at the state and its lock
    def first_agent_then_lock(path):
        monkeypatch.setattr("agent.exports.exclusive", exclusive)
        first.run_due(SIX)
        return exclusive(path)

    monkeypatch.setattr("agent.exports.exclusive", first_agent_then_lock)
    second.run_due(SIX)
    assert run_ids(publisher) == ["acme.daily.20261125T060000Z"]


def test_a_run_another_agent_is_publishing_is_left_to_it(acme, home, planner, publisher):
    acme.set_export("acme", "daily", DAILY)
    planner.run_due(SIX - timedelta(minutes=1))
    # While another agent holds the export's lock, this one publishes nothing
    with exclusive(home.export_schedule("acme", "daily").with_suffix(".lock")) as held:
        assert held
        planner.run_due(SIX)
    assert publisher.events == []
    # (had the other one died before publishing, the next pass would)
    planner.run_due(SIX + timedelta(seconds=30))
    assert run_ids(publisher) == ["acme.daily.20261125T060000Z"]


def test_a_broken_export_does_not_stop_the_others(acme, planner, publisher, caplog,
                                                  monkeypatch):
    # Given a bad schedule, an unknown time zone, and an account removed during the pass
    acme.set_export("acme", "broken", {**DAILY, "schedule": "at six o'clock"})
    acme.set_export("acme", "nowhere", {**DAILY, "timezone": "Mars/Olympus"})
    acme.set_export("acme", "daily", DAILY)
    acme.create("globex", "globex", "globex-pw")
    acme.set_export("globex", "daily", DAILY)
    listed = acme.list()
    (acme.root / "globex.json").unlink()  # the account removed
    monkeypatch.setattr(planner.registry, "list", lambda: listed)
    # Then the good export runs all the same
    planner.run_due(SIX - timedelta(minutes=1))
    planner.run_due(SIX)
    assert run_ids(publisher) == ["acme.daily.20261125T060000Z"]
    # And each broken one is named in an error
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert any("export broken of account acme" in e and "bad schedule" in e for e in errors)
    assert any("export nowhere of account acme" in e and "unknown time zone" in e
               for e in errors)
    assert any("export daily of account globex" in e for e in errors)


def test_the_fetcher_s_thread_runs_the_export_schedules(acme, home, planner, publisher):
    # Given an export seen at 05:59 by the fetcher's pass, with no pull source at all
    acme.set_export("acme", "daily", DAILY)
    clock = FakeClock(SIX - timedelta(minutes=1))
    fetcher = Fetcher(home, clock=clock, schedules=planner)
    # Then the fetcher sleeps until 06:00, not its usual IDLE
    assert fetcher.run_due() == SIX
    # And its pass at 06:00 publishes the run
    clock.moment = SIX
    fetcher.run_due()
    assert run_ids(publisher) == ["acme.daily.20261125T060000Z"]


def test_a_run_is_a_confirmed_message_of_the_exports_queue(acme, home, broker_url):
    acme.set_export("acme", "daily", DAILY)
    publisher = Publisher(broker_url)
    try:
        planner = ExportSchedules(home, publisher)
        planner.run_due(SIX - timedelta(minutes=1))
        planner.run_due(SIX)
    finally:
        publisher.close()
    # The run waits in the durable `contact-exports` queue for the worker's actor
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        method, properties, body = connection.channel().basic_get(EXPORT_QUEUE, auto_ack=True)
        assert method is not None, "no message in the queue"
        message = json.loads(body)
        assert (message["queue_name"], message["actor_name"]) == (EXPORT_QUEUE, EXPORT_ACTOR)
        [event] = message["args"]
        assert event["run_id"] == "acme.daily.20261125T060000Z"
        assert properties.delivery_mode == 2  # persistent
    finally:
        connection.close()
