"""The status report, built from gathered facts (the e2e tests gather them for real)."""

from datetime import UTC, datetime

from worker.status import QUEUES, build, management_url, render

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
    status = build(("passive declare", {}), records, late, NOW)
    # Then the failures of the last 24 h are listed, and the late file with its due time
    assert [r["id"] for r in status["failed"]] == ["recent", "dead-lettered"]
    assert status["late"] == [{"account": "globex", "file": "orders.csv",
                               "due": "2026-11-25T06:00:00+00:00", "last_received": None}]
    assert status["unknown"] == {}
    text = render(status)
    assert "LATE FILES (1)" in text
    assert "  globex   orders.csv  2026-11-25T06:00:00+00:00  -" in text


def test_the_nine_queues_are_shown_imports_notifications_then_exports():
    # Given the depths of the nine queues
    names = ["contact-imports", "contact-imports.DQ", "contact-imports.XQ",
             "contact-imports.notifications", "contact-imports.notifications.DQ",
             "contact-imports.notifications.XQ", "contact-exports", "contact-exports.DQ",
             "contact-exports.XQ"]
    depths = {name: {"ready": ready, "unacked": 0, "consumers": 2}
              for ready, name in enumerate(names)}
    # When the status is built and rendered
    status = build(("management API", depths), [], [], NOW)
    lines = render(status).splitlines()
    # Then each queue has its line, in that order
    assert list(QUEUES) == names
    assert [q["name"] for q in status["queues"]["queues"]] == names
    assert lines[0] == "QUEUES (9)"
    assert [line.split() for line in lines[2:11]] == [
        [name, str(ready), "0", "2"] for ready, name in enumerate(names)]
    assert lines[11] == "  from the management API"


def test_what_could_not_be_read_is_named_never_shown_empty():
    # Given a broker with no such vhost, and a store that cannot be read
    no_vhost = "management API at http://mq:15672: HTTP 404 Not Found: no vhost 'prod'"
    no_store = "cannot reach the contacts store at postgresql://db/contacts: refused"
    # When the status is built from what could be read: the late files
    late = [{"account": "globex", "file": "orders.csv",
             "due": datetime(2026, 11, 25, 6, 0, tzinfo=UTC), "last_received": None}]
    status = build(no_vhost, no_store, late, NOW)
    # Then it names what is unknown and why, and keeps the rest
    assert status["unknown"] == {"queues": no_vhost, "imports": no_store}
    assert status["queues"] == {"source": None, "queues": []}
    assert (status["running"], status["failed"]) == ([], [])
    assert len(status["late"]) == 1
    # And the tables say "unknown" with the reason where they would have said "none"
    text = render(status)
    assert f"QUEUES\n  unknown: {no_vhost}\n\n" in text
    assert f"RUNNING IMPORTS\n  unknown: {no_store}\n\n" in text
    assert f"FAILED IMPORTS, LAST 24 H\n  unknown: {no_store}\n\n" in text
    assert "LATE FILES (1)" in text
    assert "none" not in text


def test_late_files_that_could_not_be_checked_are_unknown():
    status = build(("passive declare", {}), [], "cannot read the late files: bad cron", NOW)
    assert status["unknown"] == {"late": "cannot read the late files: bad cron"}
    assert render(status).endswith("LATE FILES\n  unknown: cannot read the late files: bad cron")


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


def test_interrupted_imports_are_shown_apart_from_the_running_ones():
    # Given an import under way, and one its worker left (as progress.as_seen shows it)
    under_way = {"id": "a", "account": "acme", "file": "contacts.csv", "status": "running",
                 "received_at": "2026-11-25T11:00:00+00:00",
                 "started_at": "2026-11-25T11:59:00+00:00", "rows_done": 8000,
                 "rows_per_second": 4000, "seconds_left": 20,
                 "progress_at": "2026-11-25T11:59:58+00:00"}
    left = {**under_way, "id": "b", "status": "interrupted",
            "progress_at": "2026-11-25T11:30:00+00:00"}
    # When the status is built
    status = build(("passive declare", {}), [under_way, left], [], NOW)
    # Then the interrupted one is not counted among the running ones, but shown on its own
    assert [r["id"] for r in status["running"]] == ["a"]
    assert status["interrupted"] == [{
        "id": "b", "account": "acme", "file": "contacts.csv",
        "received_at": "2026-11-25T11:00:00+00:00", "started_at": "2026-11-25T11:59:00+00:00",
        "rows_done": 8000, "progress_at": "2026-11-25T11:30:00+00:00"}]
    text = render(status)
    assert "RUNNING IMPORTS (1)" in text
    assert ("INTERRUPTED IMPORTS (1)\n"
            "  ID  ACCOUNT  FILE          STARTED                    ROWS DONE  LAST PROGRESS\n"
            "  b   acme     contacts.csv  2026-11-25T11:59:00+00:00  8000       "
            "2026-11-25T11:30:00+00:00\n"
            "  their workers stopped: each is imported again when RabbitMQ hands its message "
            "to a worker\n") in text
