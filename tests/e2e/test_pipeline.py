"""Upload over FTP -> RabbitMQ -> worker -> contacts store, with real processes."""

import io
import os
import shlex
import subprocess
import time
from ftplib import error_perm

import pytest

from tests.conftest import DEMO
from tests.harness import DROPIMPORT, WORKER

HEADER = "E-mail;Prénom;Nom;Ville\r\n"


@pytest.fixture
def acme(system):
    system.cli("account", "create", "acme", "--ftp-user", "acme-ftp", "--password-stdin",
               input="acme-secret\n")
    system.cli("template", "set", "acme", str(DEMO / "template.json"))
    return system


def upload(system, data, name="contacts.csv", user="acme-ftp", password="acme-secret"):
    with system.ftp(user, password) as ftp:
        return ftp.storbinary(f"STOR {name}", io.BytesIO(data.encode("utf-8")))


def test_upload_with_ftplib_is_imported(acme):
    # When the customer uploads its file with an ordinary FTP client
    reply = upload(acme, HEADER + "Chloe.Martin@Example.com ;Chloé;Martin;Lyon\r\n"
                   "jean.dupont@example.com;Jean;Dupont;Paris\r\nnot-an-email;Léa;B;Lille\r\n")
    assert reply.startswith("226")
    # Then the import is recorded with its counts
    [record] = acme.wait_for_imports(1)
    assert record["status"] == "imported"
    assert {k: record[k] for k in ("account", "file", "rows", "created", "rejected_rows")} == {
        "account": "acme", "file": "contacts.csv", "rows": 3, "created": 2, "rejected_rows": 1}
    assert record["received_at"] <= record["finished_at"]
    # And the contacts are in the account's base, field by field
    assert acme.contacts("acme") == {
        "chloe.martin@example.com": {"email": "chloe.martin@example.com", "first_name": "Chloé",
                                     "last_name": "Martin", "city": "Lyon",
                                     "unsubscribed": False},
        "jean.dupont@example.com": {"email": "jean.dupont@example.com", "first_name": "Jean",
                                    "last_name": "Dupont", "city": "Paris",
                                    "unsubscribed": False},
    }
    # And the rejected row is explained in the record and in the report the customer downloads
    shown = acme.cli("imports", "show", record["id"]).stdout
    assert "rejected line 4, column 'E-mail': invalid e-mail 'not-an-email'" in shown
    with acme.ftp("acme-ftp", "acme-secret") as ftp:
        assert sorted(ftp.nlst("reports")) == [f"contacts.csv.{record['id']}.{end}" for end in
                                               ("changes.csv", "json", "rejected.csv")]


def test_upload_with_curl_is_imported(acme, tmp_path):
    data = tmp_path / "contacts.csv"
    data.write_text(HEADER + "jo@x.com;Jo;Doe;Nice\r\n", encoding="utf-8")
    subprocess.run(
        ["curl", "-sS", "--max-time", "20", "-T", str(data),
         f"ftp://acme-ftp:acme-secret@127.0.0.1:{acme.port}/"],
        check=True,
    )
    [record] = acme.wait_for_imports(1)
    assert (record["status"], record["created"]) == ("imported", 1)
    assert acme.contacts("acme")["jo@x.com"]["city"] == "Nice"


def test_same_file_twice_the_second_wins(acme):
    upload(acme, HEADER + "jo@x.com;Jo;Doe;Lyon\r\nam@y.fr;Am;Y;Nice\r\n")
    acme.wait_for_imports(1)
    # When the same name is uploaded again with a changed value and an e-mail in another case
    upload(acme, HEADER + "JO@X.com ;Jo;Doe;Paris\r\nam@y.fr;Am;Y;Nice\r\n")
    second, first = acme.wait_for_imports(2)
    # Then there are two imports, the second's values win, and no duplicate contact
    assert first["id"] < second["id"]
    assert (second["updated"], second["unchanged"], second["created"]) == (1, 1, 0)
    contacts = acme.contacts("acme")
    assert sorted(contacts) == ["am@y.fr", "jo@x.com"]
    assert contacts["jo@x.com"]["city"] == "Paris"


def test_a_changed_header_is_rejected(acme):
    upload(acme, HEADER + "jo@x.com;Jo;Doe;Lyon\r\n")
    acme.wait_for_imports(1)
    upload(acme, "E-mail;Prénom;Nom;Town;Pays\r\njo@x.com;Jo;Doe;Rome;IT\r\n")
    rejected, _ = acme.wait_for_imports(2)
    assert rejected["status"] == "rejected"
    assert (rejected["created"], rejected["updated"]) == (0, 0)
    shown = acme.cli("imports", "show", rejected["id"], "--json").stdout
    assert "missing 'Ville'; unexpected 'Town', 'Pays'" in shown
    assert acme.contacts("acme")["jo@x.com"]["city"] == "Lyon"


def test_two_accounts_same_file_name_are_isolated(acme):
    acme.cli("account", "create", "globex", "--ftp-user", "globex", "--password-stdin",
             input="globex-secret\n")
    acme.cli("template", "set", "globex", str(DEMO / "template.json"))
    upload(acme, HEADER + "jo@x.com;Jo;Acme;Lyon\r\n")
    upload(acme, HEADER + "jo@x.com;Jo;Globex;Rome\r\n", user="globex", password="globex-secret")
    acme.wait_for_imports(2)
    assert acme.contacts("acme")["jo@x.com"]["last_name"] == "Acme"
    assert acme.contacts("globex")["jo@x.com"]["last_name"] == "Globex"
    # And a login never sees the other's reports
    with acme.ftp("globex", "globex-secret") as ftp:
        reports = ftp.nlst("reports")  # its JSON report and its changes file
        acme_report = acme.imports("acme")[0]["id"]
        assert len(reports) == 2 and not any(acme_report in report for report in reports)
        with pytest.raises(error_perm, match=r"^550"):
            ftp.retrbinary(f"RETR ../acme/reports/contacts.csv.{acme_report}.json", print)


def test_wrong_password_gets_530(acme):
    with pytest.raises(error_perm, match=r"^530"):
        acme.ftp("acme-ftp", "not-the-password")


def test_run_stops_cleanly_on_sigterm(system):
    # When the operator stops `dropimport run`, it exits 0 and (fixture) leaves no process
    assert system.stop() == [0]


def test_demo_prints_an_upload_line_that_works(stopped_system):
    # Given `dropimport run --demo`
    stopped_system.start([DROPIMPORT, "run", "--demo"])
    # When the printed curl line is run as it is
    deadline = time.monotonic() + 10
    while "curl -T" not in stopped_system.log.read_text():
        assert time.monotonic() < deadline, stopped_system.log.read_text()
        time.sleep(0.1)
    line = next(line for line in stopped_system.log.read_text().splitlines() if "curl -T" in line)
    subprocess.run([*shlex.split(line.strip()), "-sS", "--max-time", "20"], check=True)
    # Then the sample file is imported into the demo account
    [record] = stopped_system.wait_for_imports(1, account="demo")
    assert (record["status"], record["created"], record["rejected_rows"]) == ("imported", 4, 1)
    assert "jean.dupont@example.com" in stopped_system.contacts("demo")


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)  # as the curl line's
def test_demo_prints_an_sftp_line_that_works(stopped_system, tmp_path):
    # Given `dropimport run --demo`
    stopped_system.start([DROPIMPORT, "run", "--demo"])
    deadline = time.monotonic() + 10
    while "| sftp -P" not in stopped_system.log.read_text():
        assert time.monotonic() < deadline, stopped_system.log.read_text()
        time.sleep(0.1)
    line = next(line for line in stopped_system.log.read_text().splitlines()
                if "| sftp -P" in line)
    # When it is run as it is, the password typed at the prompt (SSH_ASKPASS here), with a
    # known_hosts of the test's own
    askpass = tmp_path / "askpass"
    askpass.write_text("#!/bin/sh\necho demo\n")
    askpass.chmod(0o700)
    line = line.replace("| sftp ", f"| sftp -o UserKnownHostsFile={tmp_path / 'known_hosts'} ")
    subprocess.run(["bash", "-c", line.strip()], check=True, timeout=60, stdin=subprocess.DEVNULL,
                   env={**os.environ, "SSH_ASKPASS": str(askpass), "SSH_ASKPASS_REQUIRE": "force"})
    # Then the sample, then its marker, arrive: the sample is imported into the demo account
    [record] = stopped_system.wait_for_imports(1, account="demo")
    assert (record["status"], record["created"], record["rejected_rows"]) == ("imported", 4, 1)


def test_agent_and_dramatiq_worker_run_separately(stopped_system):
    # Given only the agent running: no worker yet
    stopped_system.start([DROPIMPORT, "agent"])
    stopped_system.cli("account", "create", "acme", "--ftp-user", "acme-ftp", "--password-stdin",
                       input="acme-secret\n")
    stopped_system.cli("template", "set", "acme", str(DEMO / "template.json"))
    upload(stopped_system, HEADER + "jo@x.com;Jo;Doe;Lyon\r\n")
    # Then the upload shows as queued, not lost and not hidden
    deadline = time.monotonic() + 10
    while [r["status"] for r in stopped_system.imports()] != ["queued"]:
        assert time.monotonic() < deadline, stopped_system.imports()
        time.sleep(0.1)
    # When a worker is started the ecosystem's own way, `dramatiq worker.runtime.actors`
    stopped_system.start(WORKER)
    # Then the queued file is imported, and both processes stop cleanly
    [record] = stopped_system.wait_for_imports(1)
    assert (record["status"], record["created"]) == ("imported", 1)
    assert stopped_system.stop() == [0, 0]


def test_customer_data_on_disk_is_readable_by_its_user_alone(acme):
    # Given an import with a rejected row, and one that failed for its header
    upload(acme, HEADER + "jo@x.com;Jo;Doe;Lyon\r\nnot-an-email;Léa;B;Lille\r\n")
    upload(acme, "Courriel;Nom\r\njo@x.com;Doe\r\n")
    acme.wait_for_imports(2)
    # Then every file under the home (uploads, spool, archive, reports, the store, the accounts)
    # is 0600 and every folder 0700
    paths = [acme.home, *acme.home.rglob("*")]
    assert {p.suffix for p in paths} >= {".csv", ".json"}
    opened = {str(p.relative_to(acme.home)): oct(p.stat().st_mode & 0o777) for p in paths
              if p.stat().st_mode & 0o077}
    assert opened == {}
