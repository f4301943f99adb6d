"""One account's slow files do not hold up another account's small file (real processes)."""

import io

import pika
import pytest

from schemas import QUEUE
from tests.conftest import DEMO
from tests.faults.conftest import HEADER, set_template, upload
from tests.harness import DROPIMPORT, WORKER, wait_until
from worker.write.store import Store

#: Worker processes of one thread each, as `dropimport worker` starts them.
PROCESSES = [DROPIMPORT, "worker", "--processes", "2", "--threads", "1"]
#: The worker gives up on an import at its first error: a file that only waited for its
#: account must not count that as a failure.
NO_RETRY = {"DROPIMPORT_IMPORT_RETRIES": "0"}


def contacts(count, city):
    return HEADER + "".join(f"c{i}@example.com;C{i};N{i};{city}\r\n" for i in range(count))


def consumers(broker_url):
    """How many worker processes take messages from the import queue."""
    connection = pika.BlockingConnection(pika.URLParameters(broker_url))
    try:
        return connection.channel().queue_declare(QUEUE, passive=True).method.consumer_count
    except pika.exceptions.ChannelClosedByBroker:  # not declared yet
        return 0
    finally:
        connection.close()


def imports_of(system, account):
    """The account's import records, in arrival order."""
    return sorted(system.imports(account), key=lambda record: record["id"])


@pytest.fixture
def accounts(acme):
    """With the agent running, `add(name)` creates an account with the demo template and
    returns the function that uploads a contacts.csv to it."""

    def add(name):
        acme.cli("account", "create", name, "--ftp-user", name, "--password-stdin",
                 input="secret\n")
        acme.cli("template", "set", name, str(DEMO / "template.json"))

        def upload_as(text):
            with acme.ftp(name, "secret") as ftp:
                ftp.storbinary("STOR contacts.csv", io.BytesIO(text.encode("utf-8")))

        return upload_as

    acme.start([DROPIMPORT, "agent"])
    return add


def test_an_account_held_elsewhere_holds_up_no_other(acme, accounts, database_url):
    system = acme
    upload_to_globex = accounts("globex")
    system.start(WORKER, wait_for_ftp=False, env=NO_RETRY)
    store = Store(database_url)
    try:
        # Given acme held by another worker, as by a long import on another host
        with store.account_lock("acme"):
            # And three acme files waiting for it: one more than the worker's threads
            for city in ("Lyon", "Nice", "Rome"):
                upload(system, contacts(3, city))
            # When globex uploads a small file
            upload_to_globex(contacts(5, "Oslo"))
            # Then it is imported while acme is still held
            wait_until(lambda: [r["status"] for r in system.imports("globex")] == ["imported"],
                       timeout=15, what="globex's import")
            assert [r["status"] for r in system.imports("acme")] == ["queued"] * 3
    finally:
        store.close()
    # And once acme is free, its files are imported once each, in arrival order, none failed
    system.wait_for_imports(3, "acme")
    records = imports_of(system, "acme")
    assert [r["status"] for r in records] == ["imported"] * 3
    assert [r["created"] for r in records] == [3, 0, 0]
    assert [r["started_at"] for r in records] == sorted(r["started_at"] for r in records)
    assert {c["city"] for c in system.contacts("acme").values()} == {"Rome"}


# SQLite has one writer: a big import's transaction holds it to its end, whatever the account.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_big_import_holds_up_no_other_account(acme, accounts, tmp_path, broker_url):
    system = acme
    set_template(system, tmp_path, file="other.csv")  # not held to the big file's row count
    small_files = [accounts("globex"), accounts("initech")]
    system.start(PROCESSES, wait_for_ftp=False, env=NO_RETRY)
    wait_until(lambda: consumers(broker_url) == 2, what="the worker processes")
    # Given acme's big file, and a newer acme file for the other process's thread
    upload(system, contacts(200_000, "Lyon"))
    upload(system, contacts(3, "Nice"), name="other.csv")
    # When two other accounts upload a small file each
    for upload_as in small_files:
        upload_as(contacts(5, "Oslo"))
    # Then both are imported before acme's big file is done
    system.wait_for_imports(4, timeout=120)
    big, newer = imports_of(system, "acme")
    small = system.imports("globex") + system.imports("initech")
    assert [r["status"] for r in small] == ["imported"] * 2
    assert max(r["finished_at"] for r in small) < big["finished_at"]
    # And acme's files are imported once each, in arrival order
    assert [r["status"] for r in (big, newer)] == ["imported"] * 2
    assert big["finished_at"] < newer["started_at"]
