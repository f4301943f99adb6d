"""The watcher on a real filesystem, and the publisher against the real RabbitMQ."""

import json
import time

import pika
import pytest

from agent import incoming
from agent.publisher import Publisher
from agent.watcher import Watcher, sha256_of
from schemas import ACTOR, QUEUE, validate


class RecordingPublisher:
    """Stands in for RabbitMQ: records events; can be made to fail like a broker outage."""

    def __init__(self):
        self.events = []
        self.down = False

    def publish(self, event):
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
    folder = home.spool / "acme" / arrival.import_id
    assert validate("file-event", event) == {
        "import_id": arrival.import_id, "account": "acme", "file": "contacts.csv",
        "spool_path": f"spool/acme/{arrival.import_id}/contacts.csv", "size": 18,
        "sha256": sha256_of(folder / "contacts.csv"),
        "received_at": arrival.received_at.isoformat(),
    }
    assert json.loads((folder / "event.json").read_text()) == event
    wait_for(lambda: (folder / ".published").exists())
    assert list(home.incoming.iterdir()) == []


def test_arrivals_are_published_in_arrival_order(watcher, publisher, home):
    ids = [arrive(home, "acme", "contacts.csv", str(n).encode()).import_id for n in range(5)]
    wait_for(lambda: len(publisher.events) == 5)
    assert [e["import_id"] for e in publisher.events] == ids


def test_what_a_crash_left_is_published_at_start(home, publisher):
    # Given a file arrived while the agent was down, and one spooled but never published
    waiting = arrive(home, "acme", "contacts.csv", b"a")
    folder = home.spool / "acme" / "20261125-080000-000000-abcd"
    folder.mkdir(parents=True)
    (folder / "contacts.csv").write_bytes(b"b")
    # When the watcher starts
    watcher = Watcher(home, publisher, rescan_interval=0.2)
    watcher.start()
    try:
        wait_for(lambda: len(publisher.events) == 2)
    finally:
        watcher.stop()
    # Then both are published, each once
    published = sorted(e["import_id"] for e in publisher.events)
    assert published == sorted([waiting.import_id, "20261125-080000-000000-abcd"])


def test_a_failed_publish_is_retried_by_the_rescan(watcher, publisher, home):
    # Given the broker is down when a file arrives
    publisher.down = True
    arrival = arrive(home, "acme", "contacts.csv", b"a")
    folder = home.spool / "acme" / arrival.import_id
    wait_for(lambda: (folder / "event.json").exists())
    time.sleep(0.3)
    assert publisher.events == []
    assert not (folder / ".published").exists()
    # When it comes back, the periodic rescan publishes the file, once
    publisher.down = False
    wait_for(lambda: (folder / ".published").exists())
    time.sleep(0.5)
    assert [e["import_id"] for e in publisher.events] == [arrival.import_id]


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
