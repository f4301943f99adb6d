"""The watcher on a real filesystem, and the publisher against the real RabbitMQ."""

import json
import logging
import os
import time
from itertools import pairwise

import pika
import pytest
from watchdog.observers.inotify_move_event_grouper import InotifyMoveEventGrouper

from agent import incoming
from agent.publisher import Publisher
from agent.watcher import Watcher, backoff, sha256_of
from schemas import ACTOR, QUEUE, spool, validate


class RecordingPublisher:
    """Stands in for RabbitMQ: records events; can be made to fail like a broker outage."""

    def __init__(self):
        self.events = []
        self.attempts = []  # when publish was called
        self.down = False

    def __str__(self):
        return "the recording publisher"

    def publish(self, event):
        self.attempts.append(time.monotonic())
        validate("file-event", event)
        if self.down:
            raise ConnectionError("broker unreachable")
        self.events.append(event)


def wait_for(predicate, timeout=10):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def publisher():
    return RecordingPublisher()


@pytest.fixture
def watcher(home, publisher):
    watcher = Watcher(home, publisher, rescan_interval=0.2)
    watcher.start()
    yield watcher
    watcher.stop()


def arrive(home, account, file, data):
    staged = home.root / "staged"
    staged.parent.mkdir(parents=True, exist_ok=True)
    staged.write_bytes(data)
    return incoming.deliver(home, account, file, staged)


def test_an_arrival_is_spooled_and_published(watcher, publisher, home):
    # When a complete file arrives in incoming/
    arrival = arrive(home, "acme", "contacts.csv", b"E-mail\r\njo@x.com\r\n")
    wait_for(lambda: publisher.events)
    # Then it was moved into its own spool folder and its event published
    [event] = publisher.events
    folder = spool.folder(home, "acme", arrival.import_id)
    assert validate("file-event", event) == {
        "import_id": arrival.import_id, "account": "acme", "file": "contacts.csv",
        "spool_path": f"spool/acme/{arrival.import_id}/contacts.csv", "size": 18,
        "sha256": sha256_of(folder / "contacts.csv"),
        "received_at": arrival.received_at.isoformat(),
    }
    assert json.loads((folder / spool.EVENT_FILE).read_text()) == event
    wait_for(lambda: spool.is_published(folder))
    assert list(home.incoming.iterdir()) == []


def test_arrivals_are_published_in_arrival_order(watcher, publisher, home):
    ids = [arrive(home, "acme", "contacts.csv", str(n).encode()).import_id for n in range(5)]
    wait_for(lambda: len(publisher.events) == 5)
    assert [e["import_id"] for e in publisher.events] == ids


def test_an_arrival_right_after_another_wakes_the_watcher(home, publisher, monkeypatch):
    # Given watchdog holding a file renamed out of incoming/ for 30 s rather than 0.5 s
    # (waiting for where it went, with every event behind it), and no rescan for an hour
    monkeypatch.setattr(InotifyMoveEventGrouper, "delay", 30)
    watcher = Watcher(home, publisher, rescan_interval=3600)
    watcher.start()
    try:
        # When a file arrives and is spooled, then another arrives
        arrive(home, "acme", "contacts.csv", b"1")
        wait_for(lambda: len(publisher.events) == 1, timeout=5)
        arrive(home, "acme", "contacts.csv", b"2")
        # Then its arrival wakes the watcher: spooling the first left nothing to hold it up
        wait_for(lambda: len(publisher.events) == 2, timeout=5)
    finally:
        watcher.stop()


def test_what_a_crash_left_is_published_at_start(home, publisher):
    # Given a file arrived while the agent was down, one spooled but never published, and one
    # linked into the spool by a pass that the crash cut short before the unlink
    waiting = arrive(home, "acme", "contacts.csv", b"a")
    folder = spool.folder(home, "acme", "20261125-080000-000000-abcd")
    folder.mkdir(parents=True)
    (folder / "contacts.csv").write_bytes(b"b")
    linked = arrive(home, "acme", "contacts.csv", b"c")
    spool.folder(home, "acme", linked.import_id).mkdir()
    os.link(home.incoming / linked.name,
            spool.folder(home, "acme", linked.import_id) / linked.file)
    # When the watcher starts
    watcher = Watcher(home, publisher, rescan_interval=0.2)
    watcher.start()
    try:
        wait_for(lambda: len(publisher.events) == 3)
    finally:
        watcher.stop()
    # Then all three are published, each once, and nothing is left in incoming/
    published = sorted(e["import_id"] for e in publisher.events)
    assert published == sorted([waiting.import_id, linked.import_id,
                                "20261125-080000-000000-abcd"])
    assert list(home.incoming.iterdir()) == []


def test_backoff_doubles_up_to_its_cap():
    assert [backoff(n, 0.5, 30) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_a_failed_publish_is_retried_with_backoff_long_before_the_rescan(home, publisher, caplog):
    caplog.set_level(logging.INFO, logger="agent.watcher")
    watcher = Watcher(home, publisher, rescan_interval=60, min_backoff=0.05, max_backoff=0.2)
    watcher.start()
    try:
        # Given the broker is down when a file arrives
        publisher.down = True
        arrival = arrive(home, "acme", "contacts.csv", b"a")
        folder = spool.folder(home, "acme", arrival.import_id)
        # Then the file is spooled with its event all the same, and publishing is retried, ever
        # less often, up to the cap, with no rescan due for a minute
        wait_for(lambda: len(publisher.attempts) >= 5)
        assert (folder / spool.EVENT_FILE).exists()
        intervals = [b - a for a, b in pairwise(publisher.attempts)]
        assert intervals[0] >= 0.05
        assert intervals[2] >= 0.19
        assert max(intervals) < 1
        assert not spool.is_published(folder)
        # When it comes back, the next retry publishes the file, once
        publisher.down = False
        wait_for(lambda: spool.is_published(folder))
        time.sleep(0.3)
    finally:
        watcher.stop()
    assert [e["import_id"] for e in publisher.events] == [arrival.import_id]
    # And the outage took one line to report, and one to report its end
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
    failed = [m for m in messages if m.startswith("cannot publish to the recording publisher")]
    back = [m for m in messages if m.startswith("publishing to the recording publisher again")]
    assert (len(failed), len(back)) == (1, 1)
    assert "ConnectionError: broker unreachable" in failed[0]


def test_a_malformed_event_does_not_hold_up_the_others(watcher, publisher, home, caplog):
    # An account name the schema refuses: a bug upstream, never an outage
    bad = arrive(home, "Not-An-Account", "contacts.csv", b"a")
    good = arrive(home, "acme", "contacts.csv", b"b")
    wait_for(lambda: publisher.events)
    assert [e["import_id"] for e in publisher.events] == [good.import_id]
    assert f"import {bad.import_id} not published: account" in caplog.text


@pytest.fixture
def acme_marked(registry, demo_template):
    """Account acme, whose contacts.csv is complete only once contacts.csv.done arrived."""
    registry.create("acme", "acme", "acme-pw")
    registry.set_template("acme", {**demo_template, "completion": {"marker": ".done"}})


def test_a_file_is_held_until_its_marker_arrives(acme_marked, watcher, publisher, home):
    # Given contacts.csv arrived, then a file without a marker
    data = arrive(home, "acme", "contacts.csv", b"E-mail\r\njo@x.com\r\n")
    other = arrive(home, "acme", "other.csv", b"x")
    wait_for(lambda: publisher.events)
    # Then only the other file is published; contacts.csv waits in incoming/
    assert [e["file"] for e in publisher.events] == ["other.csv"]
    assert [p.name for p in home.incoming.iterdir()] == [data.name]
    # When its marker arrives with the checks to make
    digest = sha256_of(home.incoming / data.name)
    arrive(home, "acme", "contacts.csv.done", f"rows=1\nsha256={digest}\n".encode())
    wait_for(lambda: len(publisher.events) == 2)
    # Then contacts.csv is published with them, and the marker is gone
    event = publisher.events[1]
    assert event["import_id"] == data.import_id
    assert event["expected"] == {"rows": 1, "sha256": digest}
    assert event["import_id"] < other.import_id
    assert list(home.incoming.iterdir()) == []
    folder = spool.folder(home, "acme", data.import_id)
    assert json.loads((folder / spool.EVENT_FILE).read_text()) == event


def test_a_marker_with_nothing_waiting_is_discarded(acme_marked, watcher, publisher, home, caplog):
    caplog.set_level(logging.INFO, logger="agent.watcher")
    arrive(home, "acme", "contacts.csv.done", b"rows=1\n")
    wait_for(lambda: "discarded contacts.csv.done of account acme" in caplog.text)
    assert list(home.incoming.iterdir()) == []
    assert publisher.events == []


def test_publisher_sends_a_confirmed_dramatiq_message(broker_url):
    event = {
        "import_id": "20261125-083512-123456-9f3a", "account": "acme", "file": "contacts.csv",
        "spool_path": "spool/acme/20261125-083512-123456-9f3a/contacts.csv", "size": 3,
        "sha256": "0" * 64, "received_at": "2026-11-25T08:35:12.123456+00:00",
    }
    publisher = Publisher(broker_url)
    try:
        publisher.publish(event)
    finally:
        publisher.close()
    # The message waits in the durable `contact-imports` queue with the event in clear JSON
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        method, properties, body = channel.basic_get(QUEUE, auto_ack=True)
        assert method is not None, "no message in the queue"
        message = json.loads(body)
        assert (message["queue_name"], message["actor_name"]) == (QUEUE, ACTOR)
        assert message["args"] == [event]
        assert properties.delivery_mode == 2  # persistent
    finally:
        connection.close()
