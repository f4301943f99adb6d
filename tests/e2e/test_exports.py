"""Scheduled exports end to end: the real agent plans them, the real worker writes them, the
customer downloads them over FTP from exports/ or receives them on its own server."""

import gzip
import io
import json
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from dropimport import credentials
from tests.conftest import DEMO, sqlite_only
from tests.faults.proxy import Proxy
from tests.servers import PASSWORD, USER, CustomerFtp, CustomerSftp

FTP_USER, FTP_PASSWORD = "acme-ftp", "acme-secret"
EXPORTED = ("email;first_name;last_name;city;unsubscribed\n"
            "chloe.martin@example.com;Chloé;Martin;Lyon;false\n"
            "jean.dupont@example.com;Jean;Dupont;Paris;false\n"
            "noemie.leroy@example.fr;Noémie;Leroy;Nantes;false\n"
            "hugo.petit@example.org;Hugo;Petit;Bordeaux;false\n")


@pytest.fixture
def exporting(stopped_system, tmp_path):
    """A running system whose account acme imported the demo file (4 contacts); a server
    that cannot be reached is tried again within a second."""
    stopped_system.env.update({
        "DROPIMPORT_SECRET_KEY": credentials.new_key(),
        "DROPIMPORT_EXPORT_MIN_BACKOFF_MS": "200", "DROPIMPORT_EXPORT_MAX_BACKOFF_MS": "1000",
    })
    stopped_system.start()
    stopped_system.cli("account", "create", "acme", "--ftp-user", FTP_USER, "--password-stdin",
                       input=f"{FTP_PASSWORD}\n")
    template = json.loads((DEMO / "template.json").read_text("utf-8"))
    template.pop("completion", None)
    (tmp_path / "template.json").write_text(json.dumps(template))
    stopped_system.cli("template", "set", "acme", str(tmp_path / "template.json"))
    with stopped_system.ftp(FTP_USER, FTP_PASSWORD) as ftp:
        ftp.storbinary("STOR contacts.csv", io.BytesIO((DEMO / "contacts.csv").read_bytes()))
    stopped_system.wait_for_imports(1)
    return stopped_system


def history(system, name="nightly"):
    return json.loads(system.cli("export", "history", "acme", name, "--json").stdout)


def downloaded(system, name):
    data = io.BytesIO()
    with system.ftp(FTP_USER, FTP_PASSWORD) as ftp:
        ftp.retrbinary(f"RETR exports/{name}", data.write)
    return data.getvalue()


def test_a_hosted_export_is_downloaded_over_ftp(exporting):
    system = exporting
    # Given a hosted export with a marker, for Excel
    added = system.cli("export", "add", "acme", "nightly", "--schedule", "0 6 * * *",
                       "--timezone", "Europe/Paris", "--encoding", "utf-8-sig",
                       "--file", "contacts-{date}.csv", "--marker", ".done")
    assert "export nightly of account acme: all contacts as contacts-" in added.stdout
    # When an operator runs it now
    ran = system.cli("export", "run", "acme", "nightly")
    # Then it says what it wrote, and the customer finds the file and its marker in exports/
    assert "done: 4 contacts" in ran.stdout
    [run] = history(system)
    paris = datetime.fromisoformat(run["planned_for"]).astimezone(ZoneInfo("Europe/Paris"))
    name = f"contacts-{paris:%Y%m%d}.csv"
    assert (run["file"], run["trigger"]) == (name, "manual")
    with system.ftp(FTP_USER, FTP_PASSWORD) as ftp:
        assert sorted(ftp.nlst("exports")) == [name, f"{name}.done"]
    assert downloaded(system, name) == b"\xef\xbb\xbf" + EXPORTED.encode()
    # And the list shows its last run
    [listed] = json.loads(system.cli("export", "list", "acme", "--json").stdout)
    assert listed["last_run"]["status"] == "done" and listed["last_run"]["rows"] == 4
    assert listed["to"] == "exports"
    # And the customer's system may delete what it fetched
    with system.ftp(FTP_USER, FTP_PASSWORD) as ftp:
        ftp.delete(f"exports/{name}")
        assert ftp.nlst("exports") == [f"{name}.done"]


@sqlite_only
def test_the_agent_runs_a_missed_schedule_once_at_start(exporting):
    system = exporting
    system.cli("export", "add", "acme", "nightly", "--schedule", "0 0 * * *",
               "--file", "all-{date}-{time}.csv", "--only", "changed")
    # Given the agent last ran the export two days ago: today's midnight run was missed
    state = system.home / "export-schedules" / "acme" / "nightly.json"
    state.parent.mkdir(parents=True, exist_ok=True)
    state.write_text(json.dumps(
        {"last_planned": (datetime.now(UTC) - timedelta(days=2)).isoformat()}))
    # When the agent starts again
    system.stop()
    system.processes.clear()
    system.start()
    # Then it publishes today's run, which the worker writes (a first changed run: all)
    midnight = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    name = f"all-{midnight:%Y%m%d}-000000.csv"
    path = system.home / "ftp" / "acme" / "exports" / name
    system.wait_for(path.exists, timeout=60)
    [run] = history(system)
    assert run["id"] == f"acme.nightly.{midnight:%Y%m%dT%H%M%SZ}"
    assert (run["trigger"], run["status"], run["rows"]) == ("schedule", "done", 4)
    assert path.read_text() == EXPORTED
    assert json.loads(state.read_text())["last_planned"] == midnight.isoformat()


@pytest.fixture(params=["ftp", "ftps", "sftp"])
def customer(request, tmp_path, certificate):
    """The customer's own server, and how `export add` names and trusts it."""
    root = tmp_path / "customer"
    (root / "in").mkdir(parents=True)
    if request.param == "sftp":
        server = CustomerSftp(root)
        trust = ["--fingerprint", server.fingerprint]
    else:
        server = CustomerFtp(root, certificate if request.param == "ftps" else None)
        cert = x509.load_pem_x509_certificate(certificate[0].read_bytes())
        trust = ["--fingerprint", cert.fingerprint(hashes.SHA256()).hex()] \
            if request.param == "ftps" else []
    yield request.param, server, root, trust
    server.stop()


@sqlite_only
def test_an_export_is_pushed_to_the_customers_server(exporting, customer):
    protocol, server, root, trust = customer
    url = f"{protocol}://{USER}@127.0.0.1:{server.port}/in/"
    exporting.cli("export", "add", "acme", "nightly", "--schedule", "0 6 * * *", "--to", url,
                  "--password-stdin", *trust, "--gzip", "--marker", ".ok",
                  "--file", "contacts.csv", input=f"{PASSWORD}\n")
    assert "done: 4 contacts" in exporting.cli("export", "run", "acme", "nightly").stdout
    assert sorted(p.name for p in (root / "in").iterdir()) == ["contacts.csv.gz",
                                                               "contacts.csv.gz.ok"]
    assert gzip.decompress((root / "in" / "contacts.csv.gz").read_bytes()) == EXPORTED.encode()
    # The password is kept encrypted, and never shown
    account = json.loads((exporting.home / "accounts" / "acme.json").read_text())
    assert account["exports"]["nightly"]["to"]["secret"].startswith("fernet:")
    assert PASSWORD not in exporting.cli("export", "list", "--json").stdout


@sqlite_only
def test_a_server_down_is_tried_again_until_it_is_back(exporting, tmp_path):
    root = tmp_path / "customer"
    root.mkdir()
    server = CustomerFtp(root)
    link = Proxy(server.port)
    try:
        link.cut()
        exporting.cli("export", "add", "acme", "nightly", "--schedule", "0 6 * * *",
                      "--to", f"ftp://{USER}@127.0.0.1:{link.port}/", "--password-stdin",
                      "--timeout", "2", input=f"{PASSWORD}\n")
        # Given a run whose server cannot be reached
        exporting.cli("export", "run", "acme", "nightly", "--no-wait")
        exporting.wait_for(lambda: (history(exporting) or [{}])[0].get("attempts", 0) >= 2)
        [run] = history(exporting)
        assert run["status"] in ("retrying", "running") and "127.0.0.1" in (run["error"] or
                                                                            "127.0.0.1")
        assert list(root.iterdir()) == []
        # When it is back
        link.restore()
        # Then a retry delivers the file
        exporting.wait_for(lambda: history(exporting)[0]["status"] == "done")
        assert (root / history(exporting)[0]["file"]).read_text() == EXPORTED
    finally:
        link.close()
        server.stop()


@sqlite_only
def test_a_refused_login_fails_the_run_at_once(exporting, tmp_path):
    root = tmp_path / "customer"
    root.mkdir()
    server = CustomerFtp(root)
    try:
        exporting.cli("export", "add", "acme", "nightly", "--schedule", "0 6 * * *",
                      "--to", f"ftp://{USER}@127.0.0.1:{server.port}/", "--password-stdin",
                      input="not-the-password\n")
        ran = exporting.cli("export", "run", "acme", "nightly", check=False)
        assert ran.returncode != 0 and "login refused" in ran.stderr
        [run] = history(exporting)
        assert (run["status"], run["attempts"]) == ("failed", 1)
    finally:
        server.stop()


@sqlite_only
def test_bad_settings_are_refused_with_a_reason(exporting):
    def refused(*args):
        result = exporting.cli("export", "add", "acme", "nightly", *args, check=False)
        assert result.returncode != 0
        return result.stderr

    assert "bad schedule" in refused("--schedule", "at six")
    assert "unknown field(s) shoe_size" in refused("--schedule", "0 6 * * *",
                                                   "--fields", "email,shoe_size")
    assert "must not hold the password" in refused("--schedule", "0 6 * * *", "--to",
                                                   "sftp://u:pw@host/in/")
    assert "needs no password" in refused("--schedule", "0 6 * * *", "--password-stdin")
    assert "has no export 'nope'" in exporting.cli("export", "run", "acme", "nope",
                                                   check=False).stderr

