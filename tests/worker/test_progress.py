"""Progress of long imports: cheap, periodic, in the import record while the import runs."""

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta

import pytest
from dramatiq.middleware import Shutdown
from sqlalchemy import update
from sqlalchemy.exc import OperationalError

from tests.harness import DROPIMPORT
from tests.worker.conftest import HEADER, exported, spool
from worker import progress
from worker.importer import Importer, OperationError
from worker.progress import Progress, as_seen
from worker.read.rows import Chunk
from worker.record import now
from worker.write.store import Store
from worker.write.tables import imports

EVENT = {"import_id": "i", "account": "acme", "file": "contacts.csv", "size": 100_000}


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def chunks(total=10_000, size=1000, row_bytes=10):
    """Stand-ins for the Chunks of a file of `total` rows, `row_bytes` bytes each."""
    for done in range(size, total + 1, size):
        chunk = Chunk()
        chunk.rows, chunk.bytes_read = size, done * row_bytes
        yield chunk


def test_progress_is_reported_every_interval(caplog):
    caplog.set_level("INFO")
    clock = Clock()
    recorded = []
    progress = Progress(EVENT, lambda *report: recorded.append(report), interval=5.0,
                        clock=clock)
    for done, _ in enumerate(progress.track(chunks()), 1):
        clock.now += 2.0  # 500 rows/s
        if done == 2:
            assert recorded == []  # not before 5 s
    # Then a report came once 5 s had passed, after a chunk: at 3000, 6000 and 9000 rows
    assert recorded == [("i", 3000, 500, 14), ("i", 6000, 500, 8), ("i", 9000, 500, 2)]
    lines = [r.getMessage() for r in caplog.records if "rows done" in r.getMessage()]
    assert lines == [
        f"import i of account acme file contacts.csv: {done} rows done, 500 rows/s, "
        f"about {left} s left" for _, done, _, left in recorded
    ]


def test_an_import_goes_on_when_its_progress_cannot_be_recorded(caplog):
    def locked(*report):
        raise OperationalError("UPDATE imports", {}, Exception("database is locked"))

    progress = Progress(EVENT, locked, interval=0, clock=Clock())
    assert sum(chunk.rows for chunk in progress.track(chunks())) == 10_000
    assert "import i: cannot record its progress" in caplog.text


@pytest.fixture
def onlooker(settings):
    """A store of its own, as the CLI or another worker opens it: other connections."""
    store = Store(settings.database_url)
    yield store
    store.close()


def watch(monkeypatch, store, look):
    """Call `look(import_id)` each time `store` has recorded an import's progress, while the
    import waits, its transaction open."""
    record = store.record_progress

    def recorded(import_id, *report):
        record(import_id, *report)
        look(import_id)

    monkeypatch.setattr(store, "record_progress", recorded)


def rows(count):
    return HEADER + "".join(f"c{i}@x.fr;;;\r\n" for i in range(count))


def test_the_record_shows_the_rows_done_as_the_import_goes(importer, home, onlooker,
                                                           monkeypatch):
    # Given an import of 12,000 rows in chunks of 1,000, reporting after each chunk
    quick = Importer(home, importer.store, progress_interval=0, chunk_rows=1000)
    event = spool(home, "acme", rows(12_000))
    # When another store reads its record at each report, and lists the running imports
    seen, listed = [], []

    def look(import_id):
        seen.append(onlooker.get_import(import_id))
        listed.append([r["rows_done"] for r in onlooker.imports_in("running")])

    watch(monkeypatch, importer.store, look)
    record = quick.run(event)
    # Then it saw the import running, its rows done growing, with a rate and a time
    assert {r["status"] for r in seen} == {"running"}
    done = [r["rows_done"] for r in seen]
    assert len(done) >= 3 and done == sorted(set(done)) and done[0] > 0 and done[-1] == 12_000
    assert all(r["rows_per_second"] > 0 and r["progress_at"] for r in seen)
    assert listed == [[rows_done] for rows_done in done]
    # And the final record has its rows done, and no rate or time left any more
    assert record == onlooker.get_import(event["import_id"])
    assert (record["status"], record["rows"], record["rows_done"]) == ("imported", 12_000, 12_000)
    assert (record["rows_per_second"], record["seconds_left"], record["progress_at"]) == (
        None, None, None)


def test_imports_show_displays_the_progress_of_a_running_import(importer, home, settings,
                                                                monkeypatch):
    quick = Importer(home, importer.store, progress_interval=0, chunk_rows=1000)
    event = spool(home, "acme", rows(3000))
    env = {"DROPIMPORT_HOME": str(home.root), "DROPIMPORT_DATABASE_URL": settings.database_url,
           "PATH": "/usr/bin:/bin"}
    shown = []

    def show(import_id):
        if not shown:  # at the first report
            for options in ([], ["--json"]):
                shown.append(subprocess.run(
                    [DROPIMPORT, "imports", "show", import_id, *options], env=env,
                    capture_output=True, text=True, check=True, timeout=60).stdout)

    watch(monkeypatch, importer.store, show)
    quick.run(event)
    text, as_json = shown
    record = json.loads(as_json)
    assert (record["status"], record["rows_done"]) == ("running", 1000)
    assert (f"progress:      1000 rows done, {record['rows_per_second']} rows/s, about "
            f"{record['seconds_left']} s left (at {record['progress_at']})") in text


def test_a_failed_import_keeps_no_progress(importer, home, onlooker, monkeypatch):
    # Given an import that fails at its third progress report, 3,000 rows in
    quick = Importer(home, importer.store, progress_interval=0, chunk_rows=1000)
    event = spool(home, "acme", rows(12_000))
    seen = []

    def fail_at_the_third(import_id):
        seen.append(onlooker.get_import(import_id)["rows_done"])
        if len(seen) == 3:
            raise RuntimeError("the disk is gone")

    watch(monkeypatch, importer.store, fail_at_the_third)
    record = quick.run(event)
    # Then its record said 3,000 rows done, and now says none: nothing of it was imported
    assert seen == [1000, 2000, 3000]
    assert record == onlooker.get_import(event["import_id"])
    assert (record["status"], record["reason"]) == ("failed", "RuntimeError: the disk is gone")
    assert (record["rows_done"], record["rows_per_second"], record["seconds_left"],
            record["progress_at"]) == (0, None, None, None)
    # And when it is retried, it shows no progress until its first report
    importer.store.requeue_import(event["import_id"])
    importer.store.start_import(event)
    again = onlooker.get_import(event["import_id"])
    assert (again["status"], again["rows_done"], again["progress_at"]) == ("running", 0, None)


def test_a_slow_chunk_does_not_silence_the_progress(monkeypatch):
    # Given an import reporting every 20 ms, whose second chunk takes 15 intervals to write
    monkeypatch.setattr(progress, "MIN_BEAT", 0.01)
    recorded = []
    slow = Progress(EVENT, lambda *report: recorded.append(report), interval=0.02)
    with slow.steady():
        for index, _ in enumerate(slow.track(chunks(total=3000))):
            if index == 1:
                before = len(recorded)
                time.sleep(0.3)
                during = recorded[before:]
    # Then the progress went on being reported meanwhile: 1,000 rows done, at a falling rate
    assert len(during) >= 3
    assert {done for _, done, _, _ in during} == {1000}
    assert during[-1][2] < during[0][2]


NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def running(started, reported=None):
    """A running import's record, started and last reported that long before NOW."""
    return {"id": "i", "status": "running", "note": None,
            "started_at": (NOW - started).isoformat(),
            "progress_at": reported and (NOW - reported).isoformat()}


def status_of(record, interval=5.0):
    return as_seen(record, NOW, interval)["status"]


def test_a_running_import_silent_for_three_intervals_is_shown_interrupted():
    hour, second = timedelta(hours=1), timedelta(seconds=1)
    # Given imports that report every 5 s: one last reported 14 s ago is running
    assert status_of(running(hour, 14 * second)) == "running"
    # When 16 s passed without a report, it is shown interrupted, with what happens next
    record = running(hour, 16 * second)
    shown = as_seen(record, NOW, 5.0)
    assert shown["status"] == "interrupted"
    assert shown["note"] == (
        f"no progress since {record['progress_at']}: its worker stopped, nothing of it was "
        "imported; it is imported again when RabbitMQ hands its message to a worker")
    assert record["status"] == "running"  # a view: the record itself is left as it is
    # And one that has not reported yet is judged from its start
    assert [status_of(running(14 * second)), status_of(running(16 * second))] == [
        "running", "interrupted"]
    # And however short the interval, 10 s of silence are allowed
    assert [status_of(running(hour, 9 * second), 0.1),
            status_of(running(hour, 11 * second), 0.1)] == ["running", "interrupted"]
    # And other statuses are shown as they are, however old
    assert status_of({**running(hour), "status": "imported"}) == "imported"


def test_an_import_stopped_by_a_graceful_shutdown_is_queued_again(importer, home, onlooker,
                                                                    monkeypatch):
    # Given an import that the worker's shutdown interrupts at its second report
    quick = Importer(home, importer.store, progress_interval=0, chunk_rows=1000)
    event = spool(home, "acme", rows(12_000))
    seen = []

    def stop_at_the_second(import_id):
        seen.append(onlooker.get_import(import_id)["status"])
        if len(seen) == 2:
            raise Shutdown("the worker is stopping")

    watch(monkeypatch, importer.store, stop_at_the_second)
    with pytest.raises(Shutdown):
        quick.run(event)
    # Then it was running, and now nothing of it is stored and its record is queued again,
    # as before it started
    assert seen == ["running", "running"]
    assert exported(onlooker, "acme") == {}
    record = onlooker.get_import(event["import_id"])
    assert (record["status"], record["started_at"], record["rows_done"],
            record["progress_at"]) == ("queued", None, 0, None)
    # And when its message comes back, it is imported
    monkeypatch.undo()
    assert quick.run(event)["rows"] == 12_000


def test_an_interrupted_import_is_not_retried_its_message_comes_back(importer, home):
    # Given an import left running an hour ago by a worker that died
    event = spool(home, "acme", rows(3))
    importer.store.start_import(event)
    with importer.store.transaction() as connection:
        connection.execute(update(imports).values(started_at=now() - timedelta(hours=1)))
    # When an operator retries it, the answer says why not
    with pytest.raises(OperationError, match=(
            "was interrupted \\(its worker stopped\\): nothing to retry, RabbitMQ hands its "
            "message to the next worker, which imports it again")):
        importer.requeue(event["import_id"])
