"""Operating it: the log lines, the Prometheus metrics and `dropimport status`, with the real
processes."""

import io
import json
import re
import socket
import subprocess
import time
import urllib.request
from ftplib import error_perm
from urllib.parse import urlsplit

import pika
import pytest
from dramatiq import Message
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from prometheus_client.parser import text_string_to_metric_families

from schemas import EXPORT_QUEUE, QUEUE, spool
from schemas.settings import Home
from tests.conftest import DEMO
from tests.harness import DROPIMPORT, free_port
from worker.notify import ACTOR as NOTIFY
from worker.notify import QUEUE as NOTIFICATIONS
from worker.write.store import Store

PASSWORD = "acme-secret"
SAMPLE = (DEMO / "contacts.csv").read_bytes()


def scrape(port):
    """The samples served on 127.0.0.1:port/metrics: {(name, ((label, value), ...)): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text) for sample in family.samples
    }


def wait_for_metrics(port, expected, timeout=30):
    """Scrape until every (name, labels) of `expected` has its value; return the samples."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            samples = scrape(port)
        except OSError:
            samples = {}
        got = {key: samples.get(key) for key in expected}
        if got == expected:
            return samples
        assert time.monotonic() < deadline, f"metrics on {port}: {got} != {expected}"
        time.sleep(0.2)


def started(system, log_format):
    system.start(env={"DROPIMPORT_LOG_FORMAT": log_format})
    system.cli("account", "create", "acme", "--ftp-user", "acme-ftp", "--password-stdin",
               input=f"{PASSWORD}\n")
    system.cli("template", "set", "acme", str(DEMO / "template.json"))
    return system


def upload(system, name="contacts.csv"):
    with system.ftp("acme-ftp", PASSWORD) as ftp:
        return ftp.storbinary(f"STOR {name}", io.BytesIO(SAMPLE))


def test_metrics_of_an_upload_and_its_import_are_scraped(stopped_system):
    system = started(stopped_system, "json")
    # Given a failed login, a refused upload and one upload imported
    with pytest.raises(error_perm, match="530"):
        system.ftp("acme-ftp", "not-the-password")
    with pytest.raises(error_perm, match="553"):
        upload(system, name="unexpected.csv")
    upload(system)
    [record] = system.wait_for_imports(1)
    assert (record["status"], record["created"], record["rejected_rows"]) == ("imported", 4, 1)
    # Then the agent's endpoint counts the upload, its bytes, the refusal and the failed login
    wait_for_metrics(system.metrics_ports["agent"], {
        ("dropimport_uploads_received_total", (("protocol", "ftp"),)): 1.0,
        ("dropimport_uploads_received_total", (("protocol", "sftp"),)): 0.0,
        ("dropimport_upload_bytes_received_total", (("protocol", "ftp"),)): float(len(SAMPLE)),
        ("dropimport_uploads_refused_total", (("protocol", "ftp"), ("reason", "name"))): 1.0,
        ("dropimport_uploads_refused_total", (("protocol", "ftp"), ("reason", "size"))): 0.0,
        ("dropimport_ftp_login_failures_total", ()): 1.0,
        ("dropimport_ftp_bans_total", ()): 0.0,
        ("dropimport_events_published_total", ()): 1.0,
        ("dropimport_events_unpublished", ()): 0.0,
        ("dropimport_ftp_sessions", ()): 0.0,
        ("dropimport_sftp_sessions", ()): 0.0,
    })
    # And the worker's one endpoint serves its worker processes' metrics and dramatiq's own
    samples = wait_for_metrics(system.metrics_ports["worker"], {
        ("dropimport_imports_total", (("status", "imported"),)): 1.0,
        ("dropimport_imports_total", (("status", "failed"),)): 0.0,
        ("dropimport_import_rows_total", (("outcome", "created"),)): 4.0,
        ("dropimport_import_rows_total", (("outcome", "rejected"),)): 1.0,
        ("dropimport_import_duration_seconds_count", ()): 1.0,
        ("dropimport_import_wait_seconds_count", ()): 1.0,
        ("dropimport_imports_running", ()): 0.0,
        ("dramatiq_messages_total", (("actor_name", "import_file"),
                                     ("queue_name", "contact-imports"))): 1.0,
    })
    assert 0 < samples[("dropimport_import_wait_seconds_sum", ())] < 30


def test_a_second_worker_on_the_metrics_port_stops_and_the_first_keeps_its_counts(
        stopped_system):
    system = started(stopped_system, "json")
    port = system.metrics_ports["worker"]
    # Given a running worker that imported a file and counts it
    upload(system)
    system.wait_for_imports(1)
    counts = {("dropimport_imports_total", (("status", "imported"),)): 1.0,
              ("dramatiq_messages_total", (("actor_name", "import_file"),
                                           ("queue_name", "contact-imports"))): 1.0}
    wait_for_metrics(port, counts)
    # When a second worker starts on the same host with the same metrics port
    result = system.cli("worker", check=False)
    # Then it stops at once, saying why in one line
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"Error: cannot serve metrics on 127.0.0.1:{port} (Address already in use; another "
        "worker?); set DROPIMPORT_WORKER_METRICS_PORT to a free port, or off"]
    # And the first worker still serves its counts and dramatiq's
    assert {key: scrape(port).get(key) for key in counts} == counts


def log_lines(system):
    return system.log.read_text().splitlines()


def test_json_log_lines_carry_account_import_and_file_and_no_secret(stopped_system):
    system = started(stopped_system, "json")
    upload(system)
    [record] = system.wait_for_imports(1)
    system.stop()
    # Every line of the agent and the worker is a JSON object
    lines = [json.loads(line) for line in log_lines(system)]
    # One line per upload received: account, file, size and client address
    [received] = [line for line in lines if line["message"].startswith("upload received")]
    assert {k: received.get(k) for k in ("account", "file", "import_id")} == {
        "account": "acme", "file": "contacts.csv", "import_id": record["id"]}
    assert f"{len(SAMPLE)} bytes, from 127.0.0.1" in received["message"]
    # One summary line per import: status, counts, duration, rows/s
    [summary] = [line for line in lines
                 if line["message"].startswith(f"import {record['id']} of account")]
    assert {k: summary.get(k) for k in ("account", "file", "import_id")} == {
        "account": "acme", "file": "contacts.csv", "import_id": record["id"]}
    assert "imported, 5 rows (4 created" in summary["message"]
    assert " rows/s" in summary["message"]
    # Every line about this import (spooled, published, summary) names it in its fields
    about = [line for line in lines if record["id"] in line["message"]]
    assert len(about) >= 3
    assert all(line.get("import_id") == record["id"] for line in about)
    # Never a password, never contact data
    text = system.log.read_text()
    assert PASSWORD not in text
    emails = [row.split(";")[0].strip() for row in SAMPLE.decode().splitlines()[1:]]
    assert [email for email in emails if "@" in email and email.lower() in text.lower()] == []


def test_text_log_lines_end_with_the_fields(stopped_system):
    system = started(stopped_system, "text")
    upload(system)
    [record] = system.wait_for_imports(1)
    [summary] = [line for line in log_lines(system)
                 if f"import {record['id']} of account acme" in line and "rows/s" in line]
    assert summary.endswith(f" account=acme import_id={record['id']} file=contacts.csv")
    assert " INFO worker.importer: " in summary


def dead_letter(broker_url, body):
    """Put `body` in the dead-letter queue, as dramatiq does with a message it gave up on."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    connection.channel().basic_publish("", f"{QUEUE}.XQ", json.dumps(body).encode())
    connection.close()


def queue_notification(broker_url):
    """Queue a notification as the importer does, declaring its queues as a worker would."""
    broker = RabbitmqBroker(url=broker_url)
    broker.enqueue(Message(queue_name=NOTIFICATIONS, actor_name=NOTIFY,
                           args=("email", {"id": "late:acme"}), kwargs={}, options={}))
    broker.close()


def status_of(system, **env):
    return json.loads(system.cli("status", "--json", env=env).stdout)


def wait_for_status(system, depths, timeout=30, **env):
    """`dropimport status --json` once the queues named in `depths` show them {queue: (ready,
    consumers)}."""
    deadline = time.monotonic() + timeout
    while True:
        status = status_of(system, **env)
        got = {q["name"]: (q["ready"], q["consumers"]) for q in status["queues"]["queues"]
               if q["name"] in depths}
        if got == depths:
            return status
        # The management API refreshes its statistics every 5 s.
        assert time.monotonic() < deadline, f"queues {got} != {depths}"
        time.sleep(0.5)


def test_status_shows_the_queues_and_the_imports_that_need_an_eye(stopped_system):
    # Given an agent and no worker: two uploads wait in the queue
    system = stopped_system
    system.start([DROPIMPORT, "agent"])
    system.cli("account", "create", "acme", "--ftp-user", "acme-ftp", "--password-stdin",
               input=f"{PASSWORD}\n")
    system.cli("template", "set", "acme", str(DEMO / "template.json"))
    upload(system)
    upload(system)
    first, second = reversed(system.imports())
    # And the first cancelled (failed), the second under way as a worker records it
    system.cli("imports", "cancel", first["id"])
    folder = spool.folder(Home(system.home), "acme", second["id"])
    store = Store(system.env["DROPIMPORT_DATABASE_URL"])
    store.start_import(json.loads((folder / spool.EVENT_FILE).read_text()))
    store.record_progress(second["id"], rows_done=5000, rows_per_second=2500, seconds_left=12)
    store.close()
    # And two messages given up on, and a notification waiting for a worker
    dead_letter(system.env["DROPIMPORT_BROKER_URL"], {"import_id": "x"})
    dead_letter(system.env["DROPIMPORT_BROKER_URL"], {"import_id": "y"})
    queue_notification(system.env["DROPIMPORT_BROKER_URL"])
    depths = {QUEUE: (2, 0), f"{QUEUE}.DQ": (0, 0), f"{QUEUE}.XQ": (2, 0),
              NOTIFICATIONS: (1, 0), f"{NOTIFICATIONS}.DQ": (0, 0), f"{NOTIFICATIONS}.XQ": (0, 0)}
    # Then the status shows the queues, through the management API
    status = wait_for_status(system, depths)
    assert status["queues"]["source"].startswith("management API at http://guest:***@127.0.0.1")
    assert {q["unacked"] for q in status["queues"]["queues"] if q["name"] in depths} == {0}
    # And the exports' queues, which no worker declared yet, are listed as such
    assert [(q["name"], q["declared"]) for q in status["queues"]["queues"][-3:]] == [
        (EXPORT_QUEUE, False), (f"{EXPORT_QUEUE}.DQ", False), (f"{EXPORT_QUEUE}.XQ", False)]
    # And the import under way with its progress, the failed one with its reason
    assert [(r["id"], r["rows_done"]) for r in status["running"]] == [(second["id"], 5000)]
    assert [(r["id"], r["reason"]) for r in status["failed"]] == [
        (first["id"], "cancelled by an operator")]
    assert status["late"] == []
    # And without the management API, through passive declares (ready messages, consumers)
    closed = {"DROPIMPORT_RABBITMQ_API_URL": f"http://127.0.0.1:{free_port()}"}
    status = wait_for_status(system, depths, **closed)
    assert status["queues"]["source"].startswith("passive declare at amqp://guest:***@")
    assert {q["unacked"] for q in status["queues"]["queues"]} == {None}
    # And as tables for a person
    text = system.cli("status", env=closed).stdout
    assert re.search(rf"^  {re.escape(QUEUE)}\.XQ +2 +- +0$", text, re.M)
    assert re.search(rf"^  {re.escape(NOTIFICATIONS)} +1 +- +0$", text, re.M)
    assert re.search(rf"^  {second['id']} +acme +contacts.csv +\S+ +5000 +2500 +12$", text, re.M)
    assert re.search(rf"^  {first['id']} +acme +contacts.csv +\S+ +cancelled by an operator$",
                     text, re.M)
    assert "LATE FILES (0)\n  none" in text


def test_status_names_what_it_could_not_read_and_exits_1(stopped_system):
    # Given a broker URL naming a vhost that does not exist
    system = stopped_system
    vhost = urlsplit(system.env["DROPIMPORT_BROKER_URL"]).path[1:] + "-missing"
    missing = {"DROPIMPORT_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}"}
    # When the status is asked for
    result = system.cli("status", check=False, env=missing)
    # Then it exits 1, shows the queues unknown for that reason, and the rest as read
    assert result.returncode == 1, result.stderr
    assert (f"QUEUES\n  unknown: management API at http://guest:***@127.0.0.1:15672: "
            f"HTTP 404 Not Found: no vhost '{vhost}'\n") in result.stdout
    assert "RUNNING IMPORTS (0)\n  none" in result.stdout
    assert "Error: status incomplete, could not read: queues" in result.stderr
    # And so does its JSON
    result = system.cli("status", "--json", check=False, env=missing)
    assert result.returncode == 1
    assert list(json.loads(result.stdout)["unknown"]) == ["queues"]
    # And over AMQP alone, in the broker's words
    result = system.cli("status", check=False,
                        env={**missing, "DROPIMPORT_RABBITMQ_API_URL": "off"})
    assert result.returncode == 1
    assert f"NOT_ALLOWED - vhost {vhost} not found" in result.stdout
    # And with the contacts store unreachable too, the imports and the late files are unknown
    unreachable = f"postgresql://nobody@127.0.0.1:{free_port()}/contacts"
    result = system.cli("status", "--json", check=False,
                        env={**missing, "DROPIMPORT_DATABASE_URL": unreachable})
    assert result.returncode == 1
    unknown = json.loads(result.stdout)["unknown"]
    assert list(unknown) == ["queues", "imports", "late"]
    assert unknown["imports"] == unknown["late"]
    assert unknown["imports"].startswith(f"cannot reach the contacts store at {unreachable}: ")
    assert "could not read: queues, imports, late" in result.stderr


@pytest.mark.parametrize(("variable", "what"), [("DROPIMPORT_SFTP_PORT", "SFTP"),
                                                ("DROPIMPORT_METRICS_PORT", "metrics")])
def test_an_agent_whose_port_is_taken_stops_and_says_so(tmp_path, variable, what):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        ports = {"DROPIMPORT_FTP_PORT": str(free_port()), "DROPIMPORT_SFTP_PORT": str(free_port()),
                 "DROPIMPORT_METRICS_PORT": str(free_port()), variable: str(port)}
        result = subprocess.run(
            [DROPIMPORT, "agent"], capture_output=True, text=True, timeout=60,
            env={"PATH": "/usr/bin:/bin", "DROPIMPORT_HOME": str(tmp_path), **ports})
    assert result.returncode != 0
    assert result.stderr.splitlines()[-1].startswith(
        f"Error: cannot serve {what} on 127.0.0.1:{port} (")
    assert result.stderr.splitlines()[-1].endswith(f"set {variable} to a free port, or off")
