"""The status report, built from gathered facts (the e2e tests gather them for real)."""

from datetime import UTC, datetime

from worker.status import build, management_url, render

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def failed(import_id, finished_at):
    return {"id": import_id, "account": "acme", "file": "contacts.csv", "status": "failed",
            "received_at": "2026-11-24T08:00:00+00:00", "finished_at": finished_at,
            "reason": "cancelled by an operator"}


def test_failures_of_the_last_24_hours_and_late_files_are_shown():
    # Given failures from yesterday morning, this morning, and one whose store was down
    records = [failed("old", "2026-11-24T11:59:00+00:00"),
               failed("recent", "2026-11-25T08:00:00+00:00"), failed("dead-lettered", None)]
    late = [{"account": "globex", "file": "orders.csv",
             "due": datetime(2026, 11, 25, 6, 0, tzinfo=UTC), "last_received": None}]
    # When the status is built
    status = build("RabbitMQ unreachable", records, late, NOW)
    # Then the failures of the last 24 h are listed, and the late file with its due time
    assert [r["id"] for r in status["failed"]] == ["recent", "dead-lettered"]
    assert status["late"] == [{"account": "globex", "file": "orders.csv",
                               "due": "2026-11-25T06:00:00+00:00", "last_received": None}]
    text = render(status)
    assert "QUEUES (0)\n  none\n  unknown: RabbitMQ unreachable" in text
    assert "LATE FILES (1)" in text
    assert "  globex   orders.csv  2026-11-25T06:00:00+00:00  -" in text


def test_queues_not_declared_yet_are_named_so():
    status = build(("passive declare", {"contact-imports": {
        "ready": 3, "unacked": None, "consumers": 2}}), [], [], NOW)
    lines = render(status).splitlines()
    assert lines[2].split() == ["contact-imports", "3", "-", "2"]
    assert lines[3].split() == ["contact-imports.DQ", "(not", "declared", "yet)", "-", "-", "-"]


def test_the_management_api_is_found_beside_the_broker():
    broker = "amqp://app:secret@rabbit.internal:5672/prod"
    assert management_url(broker) == "http://app:secret@rabbit.internal:15672"
    assert management_url(broker, "https://mq.example.com/") == \
        "https://app:secret@mq.example.com"
    assert management_url(broker, "http://monitor:pw@mq:15672") == "http://monitor:pw@mq:15672"
    assert management_url(broker, "off") is None
