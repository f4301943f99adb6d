"""Pull mode end to end: a file on the customer's own server, fetched, imported by the real
worker, reported, as an upload would be."""

import json
from datetime import UTC, datetime, timedelta

import pytest

from dropimport import credentials
from tests.conftest import DEMO
from tests.servers import PASSWORD, USER, CustomerFtp, CustomerSftp, put


@pytest.fixture
def pulling_system(stopped_system):
    """A system whose agent can decrypt the sources' passwords, with account acme."""
    stopped_system.env["DROPIMPORT_SECRET_KEY"] = credentials.new_key()
    stopped_system.start()
    stopped_system.cli("account", "create", "acme", "--ftp-user", "acme", "--password-stdin",
                       input="pw\n")
    stopped_system.cli("template", "set", "acme", str(DEMO / "template.json"))
    return stopped_system


@pytest.fixture
def customer_root(tmp_path):
    root = tmp_path / "customer"
    root.mkdir()
    put(root, "contacts.csv", (DEMO / "contacts.csv").read_bytes())
    return root


def assert_imported_like_an_upload(system):
    [record] = system.wait_for_imports(1, "acme")
    assert (record["file"], record["status"]) == ("contacts.csv", "imported"), record
    assert (record["rows"], record["created"], record["rejected_rows"]) == (5, 4, 1)
    assert len(system.contacts("acme")) == 4
    reports = system.home / "ftp" / "acme" / "reports"
    assert (reports / f"contacts.csv.{record['id']}.json").exists()


def test_source_fetch_hands_the_file_to_the_running_system(pulling_system, customer_root):
    server = CustomerFtp(customer_root)
    try:
        url = f"ftp://{USER}@127.0.0.1:{server.port}/contacts.csv"
        pulling_system.cli("source", "add", "acme", "nightly", "--url", url, "--password-stdin",
                           "--schedule", "0 6 * * *", "--stable-seconds", "0.2",
                           input=f"{PASSWORD}\n")
        fetched = pulling_system.cli("source", "fetch", "acme", "nightly")
        assert fetched.stdout.startswith("fetched contacts.csv: import ")
        assert_imported_like_an_upload(pulling_system)
    finally:
        server.stop()


def test_the_agent_fetches_on_schedule_over_sftp(pulling_system, customer_root):
    server = CustomerSftp(customer_root)
    try:
        url = f"sftp://{USER}@127.0.0.1:{server.port}/contacts.csv"
        pulling_system.cli("source", "add", "acme", "nightly", "--url", url, "--password-stdin",
                           "--fingerprint", server.fingerprint, "--schedule", "0 0 * * *",
                           "--stable-seconds", "0.2", "--delete-after", input=f"{PASSWORD}\n")
        # Given the agent's last run was two days ago: today's midnight run was missed, so the
        # running agent runs it as soon as it looks at the accounts again (at most a minute)
        last_run = datetime.now(UTC) - timedelta(days=2)
        state = pulling_system.home / "pull" / "acme" / "nightly.json"
        state.parent.mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps({"files": {}, "failures": 0,
                                     "last_run": last_run.isoformat()}))
        pulling_system.stop()
        pulling_system.processes.clear()
        pulling_system.start()

        assert_imported_like_an_upload(pulling_system)
        assert not (customer_root / "contacts.csv").exists()
        assert "contacts.csv" in json.loads(state.read_text())["files"]
    finally:
        server.stop()
