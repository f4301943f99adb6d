"""The FTP server driven by a real client (ftplib) and by curl."""

import io
import os
import subprocess
import sys
import threading
import time
from ftplib import FTP, error_perm, error_temp

import pytest

from agent import authorizer, incoming, staging
from tests.agent.conftest import RunningServer
from tests.agent.test_metrics import Counts


def arrivals(home):
    if not home.incoming.exists():
        return []
    return [incoming.parse(name) for name in sorted(os.listdir(home.incoming))]


def test_complete_upload_is_handed_over_to_incoming(ftp_server, home):
    # When a customer uploads contacts.csv
    with ftp_server.login("acme", "acme-pw") as ftp:
        reply = ftp.storbinary("STOR contacts.csv", io.BytesIO(b"E-mail\r\njo@x.com\r\n"))
    # Then the server confirms it and the complete file is in incoming/, named for its account
    assert reply.startswith("226")
    [arrival] = arrivals(home)
    assert (arrival.account, arrival.file) == ("acme", "contacts.csv")
    assert (home.incoming / arrival.name).read_bytes() == b"E-mail\r\njo@x.com\r\n"
    # And nothing is left in the staging area or visible in the FTP root but its folders
    assert staging.uploads(home) == []
    assert sorted(os.listdir(home.ftp_root("acme"))) == ["dryrun", "exports", "reports"]


def test_a_file_stored_into_dryrun_arrives_as_a_preview(ftp_server, home):
    with ftp_server.login("acme", "acme-pw") as ftp:
        reply = ftp.storbinary("STOR dryrun/contacts.csv", io.BytesIO(b"E-mail\r\n"))
        assert reply.startswith("226")
        # Only the top of the root and dryrun/ take uploads
        with pytest.raises(error_perm, match=r"^550"):
            ftp.storbinary("STOR reports/contacts.csv", io.BytesIO(b"E-mail\r\n"))
        # dryrun/ takes the names the account's templates expect, as the top does
        with pytest.raises(error_perm, match=r"^553"):
            ftp.storbinary("STOR dryrun/clients.txt", io.BytesIO(b"E-mail\r\n"))
    [arrival] = arrivals(home)
    assert (arrival.account, arrival.file, arrival.preview) == ("acme", "contacts.csv", True)
    assert incoming.parse(arrival.name) == arrival
    assert os.listdir(home.dryrun("acme")) == []


def test_the_226_reply_comes_after_the_hand_over(ftp_server, home, monkeypatch):
    # Given a hand-over into incoming/ that takes its time (a slow disk's fsync)
    deliver = incoming.deliver
    monkeypatch.setattr(incoming, "deliver", lambda *args: time.sleep(0.5) or deliver(*args))
    # When a customer's upload is acknowledged
    with ftp_server.login("acme", "acme-pw") as ftp:
        assert ftp.storbinary("STOR contacts.csv", io.BytesIO(b"E-mail\r\n")).startswith("226")
        # Then the file was already in incoming/: a crash of the agent now loses nothing
        assert [a.file for a in arrivals(home)] == ["contacts.csv"]
        assert staging.uploads(home) == []


def test_an_upload_that_cannot_be_handed_over_gets_an_error_reply(ftp_server, home,
                                                                  monkeypatch):
    # Given a hand-over into incoming/ that fails (an I/O error)
    def failing(*args):
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(incoming, "deliver", failing)
    # When a customer uploads a file, then it is told to send it again (451), not 226
    with ftp_server.login("acme", "acme-pw") as ftp, pytest.raises(error_temp, match=r"^451 "):
        ftp.storbinary("STOR contacts.csv", io.BytesIO(b"E-mail\r\n"))
    # And nothing is left behind
    wait_until_staging_is_empty(home)
    assert arrivals(home) == []


def test_same_name_twice_gives_two_arrivals_in_order(ftp_server, home):
    with ftp_server.login("acme", "acme-pw") as ftp:
        ftp.storbinary("STOR contacts.csv", io.BytesIO(b"first"))
        ftp.storbinary("STOR contacts.csv", io.BytesIO(b"second"))
    first, second = arrivals(home)
    assert (home.incoming / first.name).read_bytes() == b"first"
    assert (home.incoming / second.name).read_bytes() == b"second"


def test_curl_upload(ftp_server, home):
    data = home.root / "contacts.csv"
    data.write_bytes(b"E-mail\n")
    url = f"ftp://acme:acme-pw@{ftp_server.host}:{ftp_server.port}/"
    subprocess.run(["curl", "-sS", "--max-time", "20", "-T", str(data), url], check=True)
    [arrival] = arrivals(home)
    assert arrival.file == "contacts.csv"


def test_wrong_password_is_refused_with_530(ftp_server):
    ftp = FTP()
    ftp.connect(ftp_server.host, ftp_server.port, timeout=10)
    with pytest.raises(error_perm, match=r"^530"):
        ftp.login("acme", "wrong")
    ftp.close()


@pytest.mark.parametrize("user", ["nobody", "anonymous"])
def test_unknown_users_are_refused(ftp_server, user):
    ftp = FTP()
    ftp.connect(ftp_server.host, ftp_server.port, timeout=10)
    with pytest.raises(error_perm, match=r"^530"):
        ftp.login(user, "x")
    ftp.close()


def test_a_login_is_confined_to_its_own_root(ftp_server, home):
    # Given a report in globex's root
    (home.reports("globex") / "secret.json").write_text("{}")
    with ftp_server.login("acme", "acme-pw") as ftp:
        # Then acme sees only its own root, whatever path it tries
        assert ftp.nlst() == ["dryrun", "exports", "reports"]
        ftp.cwd("..")
        assert ftp.pwd() == "/"
        assert ftp.nlst() == ["dryrun", "exports", "reports"]
        for path in ("../globex/reports/secret.json", "/../../globex/reports/secret.json",
                     str(home.reports("globex") / "secret.json")):
            with pytest.raises(error_perm, match=r"^550"):
                ftp.retrbinary(f"RETR {path}", lambda data: None)
        # And it cannot delete, rename, make directories or upload into reports/
        with pytest.raises(error_perm, match=r"^550"):
            ftp.delete("reports")
        with pytest.raises(error_perm, match=r"^550"):
            ftp.mkd("spool")
        with pytest.raises(error_perm, match=r"^550"):
            ftp.rename("reports", "r2")
        with pytest.raises(error_perm, match=r"^550"):
            ftp.storbinary("STOR reports/x.csv", io.BytesIO(b"x"))
    assert arrivals(home) == []


def test_the_customer_can_download_its_reports(ftp_server, home):
    (home.reports("acme") / "contacts.csv.1.json").write_text('{"status": "imported"}')
    with ftp_server.login("acme", "acme-pw") as ftp:
        assert ftp.nlst("reports") == ["contacts.csv.1.json"]
        chunks = []
        ftp.retrbinary("RETR reports/contacts.csv.1.json", chunks.append)
    assert b"".join(chunks) == b'{"status": "imported"}'


@pytest.mark.parametrize("can_delete_reports", [False, True])
def test_the_customer_downloads_then_deletes_its_exports(ftp_server, accounts, home,
                                                         can_delete_reports):
    # Given an export in acme's exports/, and a report it may delete or not
    accounts.update("acme", can_delete_reports=can_delete_reports)
    (home.exports("acme") / "contacts-20261125.csv").write_bytes(b"email\r\njo@x.com\r\n")
    (home.reports("acme") / "old.json").write_text("{}")
    with ftp_server.login("acme", "acme-pw") as ftp:
        # Then its system lists and downloads it, then deletes it
        assert ftp.nlst("exports") == ["contacts-20261125.csv"]
        chunks = []
        ftp.retrbinary("RETR exports/contacts-20261125.csv", chunks.append)
        assert b"".join(chunks) == b"email\r\njo@x.com\r\n"
        assert ftp.delete("exports/contacts-20261125.csv").startswith("250")
        assert ftp.nlst("exports") == []
        # But never the folder itself, and reports/ only if the account may
        with pytest.raises(error_perm, match=r"^550"):
            ftp.delete("exports")
        with pytest.raises(error_perm, match=r"^550"):
            ftp.rmd("exports")
        if can_delete_reports:
            assert ftp.delete("reports/old.json").startswith("250")
        else:
            with pytest.raises(error_perm, match=r"^550"):
                ftp.delete("reports/old.json")
    assert home.exports("acme").is_dir()


def test_nothing_is_uploaded_into_exports(ftp_server, accounts, home):
    accounts.update("acme", can_delete_reports=True)
    with ftp_server.login("acme", "acme-pw") as ftp:
        # An expected name, by its path or from within the folder: refused all the same
        with pytest.raises(error_perm, match=r"^550"):
            ftp.storbinary("STOR exports/contacts.csv", io.BytesIO(b"E-mail\r\n"))
        ftp.cwd("exports")
        with pytest.raises(error_perm, match=r"^550"):
            ftp.storbinary("STOR contacts.csv", io.BytesIO(b"E-mail\r\n"))
    assert os.listdir(home.exports("acme")) == []
    assert arrivals(home) == []


def test_resuming_an_upload_is_refused(ftp_server, home, tmp_path):
    counts = Counts()
    # When a client resumes an upload, with REST then STOR or with APPE
    with ftp_server.login("acme", "acme-pw") as ftp:
        for command, rest in (("STOR contacts.csv", 10), ("APPE contacts.csv", None)):
            with pytest.raises(error_perm, match=r"^550 Resuming an upload is not supported"):
                ftp.storbinary(command, io.BytesIO(b"x"), rest=rest)
    # Or with curl -C, which sends APPE
    (tmp_path / "contacts.csv").write_bytes(b"E-mail\r\n")
    url = f"ftp://acme:acme-pw@127.0.0.1:{ftp_server.port}/contacts.csv"
    result = subprocess.run(["curl", "-sS", "-v", "--max-time", "20", "-C", "5", "-T",
                             str(tmp_path / "contacts.csv"), url], capture_output=True, text=True)
    assert "< 550 Resuming an upload is not supported" in result.stderr
    # Then each is refused with the same reply, counted as a resume, and nothing arrives
    assert counts.delta("dropimport_uploads_refused_total", protocol="ftp", reason="resume") == 3
    assert arrivals(home) == []


def wait_until_staging_is_empty(home):
    deadline = time.monotonic() + 10
    while staging.uploads(home):
        assert time.monotonic() < deadline, f"staging not emptied: {staging.uploads(home)}"
        time.sleep(0.05)


def test_an_aborted_upload_is_discarded(ftp_server, home):
    # Given a client that starts an upload, sends half of it and aborts (ABOR)
    ftp = ftp_server.login("acme", "acme-pw")
    ftp.voidcmd("TYPE I")
    data = ftp.transfercmd("STOR contacts.csv")
    data.sendall(b"E-mail\r\njo@x.com\r\n" * 1000)
    ftp.abort()
    data.close()
    ftp.quit()
    # Then nothing arrives and the partial file is removed from staging
    wait_until_staging_is_empty(home)
    assert arrivals(home) == []


def test_an_upload_whose_client_vanishes_is_discarded(ftp_server, home):
    # Given a client that dies mid-upload: its control connection is gone, the data
    # connection never finished
    ftp = ftp_server.login("acme", "acme-pw")
    ftp.voidcmd("TYPE I")
    data = ftp.transfercmd("STOR contacts.csv")
    data.sendall(b"E-mail\r\njo@x.com\r\n" * 1000)
    ftp.sock.close()
    ftp.close()
    wait_until_staging_is_empty(home)
    data.close()
    # Then nothing arrives
    time.sleep(0.2)
    assert arrivals(home) == []


def test_a_completion_marker_is_uploaded_like_any_file(ftp_server, home, accounts, demo_template):
    accounts.set_template("acme", {**demo_template, "completion": {"marker": ".done"}})
    with ftp_server.login("acme", "acme-pw") as ftp:
        ftp.storbinary("STOR contacts.csv", io.BytesIO(b"E-mail\r\n"))
        reply = ftp.storbinary("STOR contacts.csv.done", io.BytesIO(b"rows=0\n"))
    assert reply.startswith("226")
    assert [a.file for a in arrivals(home)] == ["contacts.csv", "contacts.csv.done"]


def test_what_a_dead_agent_left_in_staging_is_removed_at_start(home, registry):
    # Given uploads cut by the death of agents: their files are still in staging/, in the
    # folder of each agent (and at the top, where an earlier version wrote them)
    for folder in (home.staging / "host-1", home.staging / "host-2", home.staging):
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "acme.0123456789abcdef.part").write_bytes(b"E-mail\r\njo@")
    # When a server starts
    server = RunningServer(home)
    server.stop()
    # Then they are gone, and never handed over
    assert staging.uploads(home) == []
    assert [p.name for p in home.staging.iterdir()] == [staging.own(home).path.name]
    assert arrivals(home) == []


def test_a_running_agent_s_uploads_are_left_alone(home, registry, tmp_path):
    # Given an agent receiving an upload, in another process
    running = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from agent import staging; "
         "from pathlib import Path; from schemas.settings import Home; "
         "staging.own(Home(Path(sys.argv[1]))).part('acme').write_text('E-mail'); "
         "print(flush=True); time.sleep(60)", str(home.root)],
        stdout=subprocess.PIPE, text=True)
    try:
        running.stdout.readline()
        # When another agent starts on the same home
        RunningServer(home).stop()
        # Then the running agent's upload is still there
        assert len(staging.uploads(home)) == 1
    finally:
        running.kill()
        running.wait()
        running.stdout.close()
    # And once that agent is gone, the next start clears it
    RunningServer(home).stop()
    assert staging.uploads(home) == []


def test_password_checks_run_a_few_at_a_time(registry, monkeypatch):
    # An argon2id check takes 64 MiB: a burst of logins must not run them all at once
    registry.create("acme", "acme", "pw")
    running, most = [0], [0]
    lock = threading.Lock()

    def slow_check(password_hash, password):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)
        with lock:
            running[0] -= 1
        return True

    monkeypatch.setattr(authorizer, "verify_password", slow_check)
    checks = authorizer.AccountAuthorizer(registry, password_checks=2)
    logins = [threading.Thread(target=checks.validate_authentication,
                               args=("acme", "pw", None)) for _ in range(10)]
    for login in logins:
        login.start()
    for login in logins:
        login.join()
    assert most[0] == 2
