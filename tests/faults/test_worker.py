"""Worker faults against real processes: a kill mid-import, a database outage, a race."""

import gzip
import io
import json
import os
import signal
import subprocess
import time

import pika
import psycopg
import pytest

from schemas import QUEUE
from tests.conftest import DEMO, sqlite_only
from tests.faults.proxy import Proxy
from tests.harness import DROPIMPORT, WORKER, wait_until

HEADER = "E-mail;Prénom;Nom;Ville\r\n"
postgresql_only = pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)


def contacts_file(count, city):
    return (HEADER + "".join(f"c{i}@example.com;C{i};N{i};{city}\r\n" for i in range(count)))


def upload(system, text):
    with system.ftp("acme", "pw") as ftp:
        ftp.storbinary("STOR contacts.csv", io.BytesIO(text.encode()))


def set_up_account(system):
    system.cli("account", "create", "acme", "--ftp-user", "acme", "--password-stdin",
               input="pw\n")
    system.cli("template", "set", "acme", str(DEMO / "template.json"))


def wait_for(predicate, what, timeout=60):
    """The waits of these tests: a minute, for files of 400,000 rows."""
    return wait_until(predicate, timeout, what)


def start_worker_group(system, **env):
    """A worker in a process group of its own, so that it can be killed whole."""
    [worker] = system.start(WORKER, env=env, wait_for_ftp=False, group=True)
    return worker


def count_contacts(system):
    out = system.cli("contacts", "export", "acme", "--format", "jsonl").stdout
    return len(out.splitlines())


def importing_a_large_file(system):
    """Start the agent and a worker, upload 400,000 rows; return the worker's process group
    leader once some of the rows are applied."""
    system.start([DROPIMPORT, "agent"])
    set_up_account(system)
    worker = start_worker_group(system, DROPIMPORT_PROGRESS_MS="100")
    upload(system, contacts_file(400_000, "Lyon"))
    wait_for(lambda: [(r["status"], r["rows_done"] > 0) for r in system.imports()] == [
        ("running", True)], "the import's progress")
    return worker


@postgresql_only
def test_a_worker_killed_mid_import_leaves_nothing_and_the_file_imports_once(stopped_system):
    system = stopped_system
    # Given a large file under import, some of its rows already applied
    worker = importing_a_large_file(system)
    # When the worker dies with SIGKILL in the middle
    system.kill(worker)
    # Then not one contact of the file is in the store
    assert count_contacts(system) == 0
    assert [r["status"] for r in system.imports()] == ["running"]
    # And a new worker, redelivered the message, imports the file once, with the right counts
    worker = start_worker_group(system)
    try:
        [record] = system.wait_for_imports(1, timeout=120)
        assert (record["status"], record["rows"], record["created"]) == (
            "imported", 400_000, 400_000)
        assert count_contacts(system) == 400_000
    finally:
        system.stop(worker)


def test_a_worker_stopped_mid_import_queues_it_again_then_imports_it(stopped_system):
    system = stopped_system
    # Given a large file under import, some of its rows already applied
    worker = importing_a_large_file(system)
    # When the worker is stopped gracefully, as by a supervisor's SIGTERM or one Ctrl-C
    worker.send_signal(signal.SIGTERM)
    worker.wait(timeout=30)
    # Then it stopped the import at once: nothing of it stored, its record queued again
    [record] = system.imports()
    assert (record["status"], record["started_at"], record["rows_done"],
            record["progress_at"]) == ("queued", None, 0, None)
    assert count_contacts(system) == 0
    assert "the worker is stopping: the import goes back to the queue" in system.log.read_text()
    # And a worker started later, handed its message back, imports it once
    worker = start_worker_group(system)
    try:
        [record] = system.wait_for_imports(1, timeout=120)
        assert (record["status"], record["rows"], record["created"]) == (
            "imported", 400_000, 400_000)
    finally:
        system.stop(worker)


def test_ctrl_c_of_dropimport_run_mid_import_queues_it_again(stopped_system):
    system = stopped_system
    set_up_account(system)
    # Given `dropimport run` in a terminal of its own, importing a large file
    [run] = system.start([DROPIMPORT, "run"], wait_for_ftp=False, group=True)
    try:
        system.wait_until_ready(timeout=60)
        upload(system, contacts_file(400_000, "Lyon"))
        wait_for(lambda: [r["status"] for r in system.imports()] == ["running"], "the import")
        # When the operator presses Ctrl-C: SIGINT to every process of the terminal's group
        os.killpg(run.pid, signal.SIGINT)
        assert run.wait(timeout=30) == 0
    finally:
        system.kill(run)
    # Then the import was rolled back, its record queued again
    assert [(r["status"], r["started_at"]) for r in system.imports()] == [("queued", None)]
    assert count_contacts(system) == 0


def test_an_import_a_killed_worker_left_running_is_shown_interrupted(stopped_system):
    system = stopped_system
    system.env["DROPIMPORT_PROGRESS_MS"] = "100"  # the worker's interval, and the readers'
    system.start([DROPIMPORT, "agent"])
    set_up_account(system)
    worker = start_worker_group(system)
    # Given a large file under import, its progress recorded every 100 ms
    upload(system, contacts_file(400_000, "Lyon"))
    wait_for(lambda: [(r["status"], r["rows_done"] > 0) for r in system.imports()] == [
        ("running", True)], "the import's progress")
    # When the worker dies with SIGKILL, its record left running
    system.kill(worker)
    killed = time.monotonic()
    assert [r["status"] for r in system.imports()] == ["running"]
    # Then once its progress is 10 s old (more than 3 intervals), it is shown interrupted
    [record] = wait_for(lambda: json.loads(system.cli(
        "imports", "list", "--status", "interrupted", "--json").stdout), "the interruption")
    assert time.monotonic() - killed > 8
    assert record["note"] == (
        f"no progress since {record['progress_at']}: its worker stopped, nothing of it was "
        "imported; it is imported again when RabbitMQ hands its message to a worker")
    assert json.loads(system.cli("imports", "show", record["id"], "--json").stdout) == {
        **record, "rejections": []}
    # And the status shows it apart from the imports running
    status = json.loads(system.cli("status", "--json", check=False).stdout)
    assert (status["running"], [r["id"] for r in status["interrupted"]]) == ([], [record["id"]])
    # And a retry is refused, saying why
    retried = system.cli("imports", "retry", record["id"], check=False)
    assert retried.returncode == 1
    assert "was interrupted (its worker stopped): nothing to retry" in retried.stderr


def dead_letters(broker_url):
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        channel = connection.channel()
        declared = channel.queue_declare(f"{QUEUE}.XQ", passive=True)
        return declared.method.message_count, channel, connection
    except Exception:
        connection.close()
        raise


@postgresql_only
def test_a_database_outage_dead_letters_then_retry_imports(stopped_system, broker_url,
                                                           database_url):
    system = stopped_system
    proxy = Proxy(5432)
    try:
        # Given a worker that reaches PostgreSQL through a link we can cut, retrying fast
        through_proxy = database_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        system.start([DROPIMPORT, "agent"])
        system.start(WORKER, wait_for_ftp=False, env={
            "DROPIMPORT_DATABASE_URL": through_proxy, "DROPIMPORT_IMPORT_RETRIES": "2",
            "DROPIMPORT_IMPORT_MIN_BACKOFF_MS": "100", "DROPIMPORT_IMPORT_MAX_BACKOFF_MS": "300",
        })
        set_up_account(system)
        upload(system, contacts_file(3, "Lyon"))
        system.wait_for_imports(1)
        # When the database is unreachable while a file arrives
        proxy.cut()
        upload(system, contacts_file(3, "Paris"))
        # Then after the retries its message is dead-lettered and the import failed, with why
        failed = wait_for(
            lambda: [r for r in system.imports() if r["status"] == "failed"], "the failure")
        assert "gave up after 3 attempts" in failed[0]["reason"]
        listed = json.loads(system.cli("imports", "list", "--status", "failed", "--json").stdout)
        assert [r["id"] for r in listed] == [failed[0]["id"]]
        count, _, connection = dead_letters(broker_url)
        connection.close()
        assert count == 1
        # When the database is back and the operator retries it
        proxy.restore()
        system.cli("imports", "retry", failed[0]["id"])
        # Then it is imported, once, and its values are in the store
        wait_for(lambda: system.imports()[0]["status"] == "imported", "the retry")
        record = system.imports()[0]
        assert (record["id"], record["updated"]) == (failed[0]["id"], 3)
        assert {c["city"] for c in system.contacts("acme").values()} == {"Paris"}
        # And replaying the dead letter afterwards changes nothing
        count, channel, connection = dead_letters(broker_url)
        try:
            _method, properties, body = channel.basic_get(f"{QUEUE}.XQ", auto_ack=True)
            channel.basic_publish("", QUEUE, body, properties)
        finally:
            connection.close()
        time.sleep(2)
        assert [r["status"] for r in system.imports()] == ["imported", "imported"]
        assert system.imports()[0]["finished_at"] == record["finished_at"]
    finally:
        proxy.close()


def test_two_workers_race_on_one_account(stopped_system):
    system = stopped_system
    system.start([DROPIMPORT, "agent"])
    system.start(WORKER, WORKER, wait_for_ftp=False)
    set_up_account(system)
    # When six versions of one file arrive back to back, with two workers competing
    for version in range(6):
        upload(system, contacts_file(300, f"City{version}"))
    records = system.wait_for_imports(6, timeout=120)
    # Then each is imported once, in arrival order, and the last one's values win
    assert [r["status"] for r in records] == ["imported"] * 6
    by_arrival = sorted(records, key=lambda r: r["id"])
    assert [r["started_at"] for r in by_arrival] == sorted(r["started_at"] for r in records)
    assert [r["created"] for r in by_arrival] == [300, 0, 0, 0, 0, 0]
    assert {c["city"] for c in system.contacts("acme").values()} == {"City5"}


def test_a_cancelled_import_is_never_imported(stopped_system):
    system = stopped_system
    # Given an upload waiting in the queue (no worker running)
    system.start([DROPIMPORT, "agent"])
    set_up_account(system)
    upload(system, contacts_file(3, "Lyon"))
    [queued] = wait_for(lambda: [r for r in system.imports() if r["status"] == "queued"],
                        "the queued import")
    # When the operator cancels it
    system.cli("imports", "cancel", queued["id"])
    [record] = system.imports()
    assert (record["status"], record["reason"]) == ("failed", "cancelled by an operator")
    # Then a worker started later leaves it alone
    system.start(WORKER, wait_for_ftp=False)
    time.sleep(3)
    [record] = system.imports()
    assert record["status"] == "failed"
    assert system.contacts("acme") == {}
    # And cancelling it again says why not
    again = system.cli("imports", "cancel", queued["id"], check=False)
    assert again.returncode != 0
    assert f"import {queued['id']} is not queued" in again.stderr


@pytest.mark.parametrize(("url", "problem"), [
    ("{server}/no_such_database", 'database "no_such_database" does not exist'),
    ("{base}no_such_role@{host}/test", 'role "no_such_role" does not exist'),
    ("postgresql://127.0.0.1:port/test", "ValueError: invalid literal for int()"),
    ("mysqlx://127.0.0.1/test", "NoSuchModuleError: Can't load plugin"),
])
@postgresql_only
def test_a_store_no_wait_mends_stops_the_worker_in_one_line(stopped_system, postgres_server_url,
                                                             url, problem):
    # Given a store URL naming a database or role that does not exist, or malformed
    netloc = postgres_server_url.split("//", 1)[1].split("/", 1)[0]
    base, host = "postgresql://", netloc.rpartition("@")[2]
    url = url.format(server=postgres_server_url.rsplit("/", 1)[0], base=base, host=host)
    # When the worker starts
    worker = stopped_system.cli("worker", check=False, env={"DROPIMPORT_DATABASE_URL": url})
    # Then it exits non-zero at once, with one line naming the problem
    assert worker.returncode == 1
    assert worker.stderr.count("\n") == 1 and problem in worker.stderr, worker.stderr
    assert worker.stderr.startswith("Error: cannot use the contacts store at ")


@postgresql_only
def test_the_worker_waits_for_an_unreachable_store_with_one_line(stopped_system, database_url):
    system = stopped_system
    proxy = Proxy(5432)
    try:
        # Given a PostgreSQL server not reachable yet
        proxy.cut()
        through_proxy = database_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        [worker] = system.start([DROPIMPORT, "worker"], wait_for_ftp=False,
                                env={"DROPIMPORT_DATABASE_URL": through_proxy})
        # When the worker starts, it waits, saying so once
        wait_for(lambda: "waiting for the contacts store" in system.log.read_text(), "the wait")
        time.sleep(5)  # a few more tries
        assert worker.poll() is None
        assert system.log.read_text().count("waiting for the contacts store") == 1
        # Then, the server reachable, it starts and imports
        proxy.restore()
        wait_for(lambda: "answers: starting" in system.log.read_text(), "the start")
        system.start([DROPIMPORT, "agent"])
        set_up_account(system)
        upload(system, contacts_file(2, "Lyon"))
        assert system.wait_for_imports(1)[0]["status"] == "imported"
    finally:
        system.stop()
        proxy.close()


#: The file of the held import's test.
ROWS = 300_000


@postgresql_only
def test_a_held_import_and_a_rollback_survive_a_sigkill_all_or_nothing(stopped_system,
                                                                        tmp_path):
    system = stopped_system
    system.start([DROPIMPORT, "agent"])
    set_up_account(system)
    template = json.loads((DEMO / "template.json").read_text("utf-8"))
    (tmp_path / "held.json").write_text(json.dumps({**template, "hold": {"max_created": 10}}))
    system.cli("template", "set", "acme", str(tmp_path / "held.json"))
    # Given a file whose import will be held, under way
    worker = start_worker_group(system, DROPIMPORT_PROGRESS_MS="100")
    # Big enough that a check of the imports (a CLI run, about a second) sees it running
    upload(system, contacts_file(ROWS, "Lyon"))
    wait_for(lambda: [(r["status"], r["rows_done"] > 0) for r in system.imports()] == [
        ("running", True)], "the import's progress")
    # When the worker dies with SIGKILL in the middle, then a new one takes the message
    system.kill(worker)
    worker = start_worker_group(system)
    try:
        # Then the import is computed once more and held: nothing applied
        [held] = system.wait_for_imports(1, timeout=120)
        assert (held["status"], held["rows"], held["changes"]["created"]) == (
            "held", ROWS, ROWS)
        assert count_contacts(system) == 0
        system.cli("imports", "approve", held["id"])
        wait_for(lambda: system.imports()[0]["status"] == "imported", "the approved import")
    finally:
        system.stop(worker)
    assert count_contacts(system) == ROWS
    # When a rollback of it is killed while it works in the store
    rollback = subprocess.Popen([DROPIMPORT, "imports", "rollback", held["id"]],
                                env=system.env, stdout=subprocess.DEVNULL)
    with psycopg.connect(system.env["DROPIMPORT_DATABASE_URL"], autocommit=True) as watch:
        wait_for(lambda: rollback.poll() is not None or watch.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
            "AND query ILIKE '%contacts%' AND pid <> pg_backend_pid()").fetchone()[0],
            "the rollback's statements")
    rollback.send_signal(signal.SIGKILL)
    rollback.wait()
    # Then it did all or nothing; done again, it ends rolled back with no contact left
    status = system.imports()[0]["status"]
    assert (status, count_contacts(system)) in (("imported", ROWS), ("rolled_back", 0))
    if status == "imported":
        system.cli("imports", "rollback", held["id"])
    assert system.imports()[0]["status"] == "rolled_back"
    assert count_contacts(system) == 0


@sqlite_only  # the store's side, both stores: tests/worker/test_exporter.py
def test_a_worker_killed_mid_export_leaves_no_file_and_the_run_is_done_once(stopped_system):
    system = stopped_system
    system.start([DROPIMPORT, "agent"])
    set_up_account(system)
    worker = start_worker_group(system)
    upload(system, contacts_file(ROWS, "Lyon"))
    wait_for(lambda: [r["status"] for r in system.imports()] == ["imported"], "the import",
             timeout=120)
    # JSON Lines, compressed: written by the worker a batch at a time, long enough to be seen
    system.cli("export", "add", "acme", "all", "--schedule", "0 6 * * *", "--format", "jsonl",
               "--gzip", "--file", "all.jsonl")
    queued = system.cli("export", "run", "acme", "all", "--no-wait").stdout
    run_id = queued.split()[2]
    part = system.home / "export-work" / f"{run_id}.part"
    exports = system.home / "ftp" / "acme" / "exports"
    # Given a worker writing the export
    wait_for(lambda: part.exists() and part.stat().st_size > 0, "the export's file")
    # When it dies with SIGKILL in the middle
    system.kill(worker)
    # Then the customer sees no file, not even a part of one
    assert list(exports.iterdir()) == []
    # And a new worker, redelivered the message, writes it whole, once
    worker = start_worker_group(system)
    try:
        wait_for(lambda: (exports / "all.jsonl.gz").exists(), "the export", timeout=120)
        [run] = json.loads(system.cli("export", "history", "acme", "all", "--json").stdout)
        assert (run["id"], run["status"], run["attempts"], run["rows"]) == (
            run_id, "done", 2, ROWS)
        lines = gzip.decompress((exports / "all.jsonl.gz").read_bytes()).splitlines()
        assert len(lines) == ROWS and json.loads(lines[-1])["email"] == f"c{ROWS - 1}@example.com"
        assert list((system.home / "export-work").iterdir()) == []
    finally:
        system.stop(worker)
