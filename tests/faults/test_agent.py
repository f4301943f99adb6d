"""The agent's side of "never lose a file, never import one twice", with real processes.

Each test starts `dropimport agent` and a dramatiq worker (or `dropimport run`) with a home, a
RabbitMQ vhost and a database of their own, breaks something for real (the agent's link to
RabbitMQ, the agent itself, the disk) and checks what the customer and the operator see.
"""

import io
import os
import socket
import struct
import subprocess
import time
from ftplib import error_temp

import pytest

from agent.publisher import Publisher
from schemas import QUEUE, spool
from schemas.settings import Home
from tests.faults.conftest import (
    PASSWORD,
    USER,
    csv,
    events_in,
    in_progress,
    set_template,
    statuses,
    upload,
)
from tests.harness import rabbitmqctl, wait_until

CITIES = ["Lyon", "Paris", "Nice"]


def test_uploads_during_a_broker_outage_are_imported_once_in_order(
    acme, broker_proxy, start_agent, start_worker
):
    # Given the agent, whose link to RabbitMQ is cut, and a worker
    start_agent()
    start_worker()
    broker_proxy.cut()
    # When the customer uploads the same file three times, with a different city each time
    for city in CITIES:
        reply = upload(acme, csv(("jo@x.com", city)))
        # Then each upload is accepted all the same
        assert reply.startswith("226")
    # And the operator sees them queued, none imported
    wait_until(lambda: statuses(acme) == ["queued"] * 3, what="3 queued imports")
    time.sleep(2)  # the outage lasts: several attempts to publish fail meanwhile
    assert statuses(acme) == ["queued"] * 3
    # When the link comes back
    broker_proxy.restore()
    # Then, within seconds, the three are imported, each once, in the order they arrived: the
    # last city wins
    records = sorted(acme.wait_for_imports(3, timeout=10), key=lambda r: r["started_at"])
    assert len(acme.imports()) == 3
    assert [r["id"] for r in records] == sorted(r["id"] for r in records)
    assert [(r["status"], r["created"], r["updated"]) for r in records] == [
        ("imported", 1, 0), ("imported", 0, 1), ("imported", 0, 1)]
    assert acme.contacts("acme")["jo@x.com"]["city"] == "Nice"
    # And the log says once that publishing failed, without the password, and once that it is
    # back, with no traceback for every failed attempt
    log = acme.log.read_text()
    assert log.count("cannot publish to RabbitMQ at amqp://guest:***@127.0.0.1:") == 1
    assert log.count("publishing to RabbitMQ at amqp://guest:***@127.0.0.1:") == 1
    assert "guest:guest@" not in log
    assert "Traceback" not in log


def test_a_killed_agent_publishes_what_it_spooled_and_drops_the_cut_upload(
    acme, broker_proxy, start_agent, start_worker
):
    # Given two uploads spooled while RabbitMQ is unreachable: renamed into the spool, never
    # published
    agent = start_agent()
    start_worker()
    broker_proxy.cut()
    for city in CITIES[:2]:
        upload(acme, csv(("jo@x.com", city)))
    wait_until(lambda: statuses(acme) == ["queued"] * 2, what="2 queued imports")
    # And an upload in progress
    ftp = acme.ftp(USER, PASSWORD)
    ftp.voidcmd("TYPE I")
    data = ftp.transfercmd("STOR contacts.csv")
    data.sendall(csv(("jo@x.com", "Nowhere"), ("cut@x.com", "Nowhere")).encode())
    wait_until(lambda: in_progress(acme), what="the upload in staging/")
    # When the agent is killed
    acme.kill(agent)
    data.close()
    ftp.close()
    assert len(in_progress(acme)) == 1
    home = Home(acme.home)
    spooled = [spool.folder(home, e["account"], e["import_id"]) for e in events_in(home.spool)]
    assert len(spooled) == 2
    assert not any(spool.is_published(folder) for folder in spooled)
    # And started again, RabbitMQ reachable
    broker_proxy.restore()
    start_agent()
    # Then the cut upload is gone before a client can connect
    assert in_progress(acme) == []
    # And the two spooled files are published at start and imported, each once, in order
    records = acme.wait_for_imports(2, timeout=10)
    assert len(acme.imports()) == 2
    assert [r["status"] for r in records] == ["imported", "imported"]
    assert acme.contacts("acme") == {
        "jo@x.com": {"email": "jo@x.com", "first_name": "Jo", "last_name": "Doe",
                     "city": "Paris", "unsubscribed": False}}


def _messages(broker_url):
    """Messages in the import queue, ready or being processed (rabbitmqctl counts both)."""
    vhost = broker_url.rsplit("/", 1)[1]
    out = rabbitmqctl("list_queues", "-p", vhost, "name", "messages")
    counts = dict(line.split("\t") for line in out.splitlines() if "\t" in line)
    return int(counts.get(QUEUE, 0))


def test_an_event_published_twice_is_imported_once(
    acme, broker_proxy, broker_url, start_agent, start_worker
):
    # Given a file spooled by an agent that died before it could mark it published
    agent = start_agent()
    broker_proxy.cut()
    upload(acme, csv(("jo@x.com", "Lyon"), ("am@y.fr", "Nice")))
    wait_until(lambda: statuses(acme) == ["queued"], what="a queued import")
    acme.kill(agent)
    [event] = events_in(Home(acme.home).spool)
    # When its event is published twice, as a restarted agent does after a crash that came
    # right after RabbitMQ's confirm, and a worker takes both messages
    publisher = Publisher(broker_url)
    try:
        publisher.publish(event)
        publisher.publish(event)
    finally:
        publisher.close()
    start_worker()
    # Then both messages are consumed and there is one import, which created the contacts once
    [record] = acme.wait_for_imports(1)
    wait_until(lambda: _messages(broker_url) == 0, what="both messages consumed")
    assert [r["id"] for r in acme.imports()] == [event["import_id"]]
    assert (record["status"], record["created"], record["rows"]) == ("imported", 2, 2)
    assert sorted(acme.contacts("acme")) == ["am@y.fr", "jo@x.com"]


# The completion marker is the agent's decision; the store plays no part in it: SQLite only.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_file_is_held_until_its_completion_marker_arrives(acme, tmp_path):
    set_template(acme, tmp_path, completion={"marker": ".done"})
    set_template(acme, tmp_path, file="other.csv")
    acme.start()
    incoming = acme.home / "incoming"
    # When the customer uploads contacts.csv, whose template asks for a marker, then other.csv
    contacts = csv(("jo@x.com", "Lyon"), ("am@y.fr", "Nice"))
    upload(acme, contacts)
    upload(acme, csv(("zoe@z.com", "Brest")), name="other.csv")
    # Then other.csv is imported at once, and contacts.csv waits in incoming/
    [other] = acme.wait_for_imports(1)
    assert other["file"] == "other.csv"
    assert len(acme.imports()) == 1
    [waiting] = os.listdir(incoming)
    assert waiting.endswith(".acme.contacts.csv")
    # When its marker arrives, announcing the rows and the checksum
    sha256 = subprocess.run(["sha256sum"], input=contacts.encode(), capture_output=True,
                            check=True).stdout.split()[0].decode()
    assert upload(acme, f"rows=2\nsha256={sha256}\n", name="contacts.csv.done").startswith("226")
    # Then contacts.csv is imported, with the marker's checks in its event, and the marker gone
    [imported] = [r for r in acme.wait_for_imports(2) if r["file"] == "contacts.csv"]
    assert (imported["status"], imported["created"]) == ("imported", 2)
    [event] = [e for e in events_in(Home(acme.home).archive) if e["file"] == "contacts.csv"]
    assert event["expected"] == {"rows": 2, "sha256": sha256}
    assert os.listdir(incoming) == []
    # When a marker arrives with no file waiting for it
    upload(acme, "rows=2\n", name="contacts.csv.done")
    # Then it is discarded, with a log line, and nothing is imported
    wait_until(lambda: "discarded contacts.csv.done of account acme" in acme.log.read_text(),
               what="the log line of the discarded marker")
    assert os.listdir(incoming) == []
    assert len(acme.imports()) == 2


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_file_that_does_not_match_its_marker_is_rejected(acme, tmp_path):
    set_template(acme, tmp_path, completion={"marker": ".ok"})
    acme.start()
    # When the marker announces more rows than the file holds (the upload was cut short)
    upload(acme, csv(("jo@x.com", "Lyon")))
    upload(acme, "rows=3\n", name="contacts.csv.ok")
    # Then the import is rejected, saying why, and no contact is created
    [record] = acme.wait_for_imports(1)
    assert record["status"] == "rejected"
    assert "its completion marker announced 3" in record["reason"]
    assert acme.contacts("acme") == {}


def _big_csv(size):
    row = "someone.with.a.long.name@example.com;Jo;Doe;Lyon\r\n"
    return csv() + row * (size // len(row))


# The store plays no part in a full FTP disk, and a SQLite file must not sit on the small
# filesystem: PostgreSQL only.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_full_disk_refuses_the_upload_with_452(small_disk, acme):
    acme.start()
    with acme.ftp(USER, PASSWORD) as ftp:
        # When the customer uploads 3 MB to a 2 MiB disk
        with pytest.raises(error_temp, match=r"^452 "):
            ftp.storbinary("STOR contacts.csv", io.BytesIO(_big_csv(3 << 20).encode()))
        # Then it is told to try again later, and nothing is left of the upload
        assert in_progress(acme) == []
        assert os.listdir(small_disk / "incoming") == []
        # And a small upload, in the same session, goes through
        assert ftp.storbinary("STOR contacts.csv",
                              io.BytesIO(csv(("jo@x.com", "Lyon")).encode())).startswith("226")
    # And it is the only import
    [record] = acme.wait_for_imports(1)
    assert (record["status"], record["rows"]) == ("imported", 1)
    assert len(acme.imports()) == 1


def test_an_upload_acknowledged_with_226_survives_a_kill_of_the_agent(
    acme, start_agent, start_worker
):
    # Given the agent and a worker
    agent = start_agent()
    start_worker()
    for city in CITIES:
        # When the customer's upload is acknowledged and the agent is killed at once
        assert upload(acme, csv(("jo@x.com", city))).startswith("226")
        acme.kill(agent)
        # Then nothing of it is left in staging/, where a restart would delete it
        assert in_progress(acme) == []
        agent = start_agent()
    # And each acknowledged upload is imported, once, in order: the last city wins
    records = acme.wait_for_imports(len(CITIES), timeout=20)
    assert [r["status"] for r in records] == ["imported"] * len(CITIES)
    assert len(acme.imports()) == len(CITIES)
    assert acme.contacts("acme")["jo@x.com"]["city"] == CITIES[-1]


def test_a_data_connection_reset_mid_upload_is_not_imported(acme, start_agent, start_worker):
    start_agent()
    start_worker()
    rows = csv(*((f"user{n}@x.com", "Lyon") for n in range(30_000))).encode()
    with acme.ftp(USER, PASSWORD) as ftp:
        # When half the file is sent and the data connection is reset (SO_LINGER 0: RST)
        ftp.voidcmd("TYPE I")
        data = ftp.transfercmd("STOR contacts.csv")
        data.sendall(rows[:65536])
        wait_until(lambda: [p for p in in_progress(acme) if p.stat().st_size],
                   what="the upload under way")  # the server took the data connection
        data.sendall(rows[65536: len(rows) // 2])
        data.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        data.close()
        # Then the client is told the transfer was aborted, not complete
        with pytest.raises(error_temp, match=r"^426 "):
            ftp.voidresp()
        # And the session goes on: a whole upload is then accepted and imported
        assert ftp.storbinary("STOR contacts.csv",
                              io.BytesIO(csv(("jo@x.com", "Nice")).encode())).startswith("226")
    [record] = acme.wait_for_imports(1)
    assert (record["status"], record["rows"]) == ("imported", 1)
    # And the cut upload left nothing behind, and was counted as incomplete
    time.sleep(1)
    assert len(acme.imports()) == 1
    assert in_progress(acme) == []
    assert "incomplete; discarded" in acme.log.read_text()
