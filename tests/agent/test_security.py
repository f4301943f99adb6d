"""The front door on the internet, driven by real clients (ftplib, curl): FTPS, failed logins,
isolation of each login, upload rules, passive mode behind NAT, no password in any log line."""

import io
import logging
import os
import socket
import ssl
import subprocess
import time
import warnings
from ftplib import error_perm, error_temp, parse227

import pytest
from cryptography import x509

from agent import staging, tls
from agent.ftp import make_server
from schemas import spool
from schemas.settings import Settings
from tests.agent.conftest import RunningServer, tls_env
from tests.agent.test_ftp import arrivals
from tests.harness import DROPIMPORT

CSV = b"E-mail;Pr\xc3\xa9nom;Nom;Ville\r\njo@x.com;Jo;Doe;Brest\r\n"


@pytest.fixture
def server(home, accounts):
    """Start servers with extra settings; all stopped at the end."""
    servers = []

    def start(env=None, **delays):
        servers.append(RunningServer(home, env, **delays))
        return servers[-1]

    yield start
    for running in servers:
        running.stop()


def curl(*args):
    return subprocess.run(["curl", "-sS", "--max-time", "20", *args], capture_output=True,
                          text=True)


def dropimport(*args, **env):
    return subprocess.run([DROPIMPORT, *args], env={"PATH": "/usr/bin:/bin", **env},
                          capture_output=True, text=True, timeout=60)


# --- FTPS


def test_ftps_login_and_upload_with_ftplib(server, certificate, client_context, home):
    ftps = server(tls_env(certificate))
    # When a customer logs in over TLS, checking the server's certificate, and protects data
    with ftps.login("acme", "acme-pw", context=client_context) as ftp:
        assert ftp.sock.version() in ("TLSv1.2", "TLSv1.3")
        ftp.prot_p()
        reply = ftp.storbinary("STOR contacts.csv", io.BytesIO(CSV))
        assert ftp.nlst() == ["dryrun", "exports", "reports"]
    # Then the upload is handed over as with plain FTP
    assert reply.startswith("226")
    [arrival] = arrivals(home)
    assert (home.incoming / arrival.name).read_bytes() == CSV


def test_ftps_upload_with_curl(server, certificate, home):
    ftps = server(tls_env(certificate))
    data = home.root / "contacts.csv"
    data.write_bytes(CSV)
    result = curl("--ssl-reqd", "-k", "-T", str(data),
                  f"ftp://acme:acme-pw@{ftps.host}:{ftps.port}/")
    assert result.returncode == 0, result.stderr
    assert [a.file for a in arrivals(home)] == ["contacts.csv"]


def test_plain_ftp_is_refused_when_tls_is_required(server, certificate, home):
    ftps = server(tls_env(certificate))
    # A plain login is refused at USER, before any password is sent
    ftp = ftps.connect()
    with pytest.raises(error_perm, match=r"^550 SSL/TLS required on the control channel"):
        ftp.login("acme", "acme-pw")
    ftp.close()
    # And so is curl without --ssl-reqd (67: access denied)
    data = home.root / "contacts.csv"
    data.write_bytes(CSV)
    result = curl("-T", str(data), f"ftp://acme:acme-pw@{ftps.host}:{ftps.port}/")
    assert result.returncode == 67, result.stderr
    assert arrivals(home) == []


def test_a_plain_data_channel_is_refused_when_tls_is_required(server, certificate,
                                                              client_context):
    ftps = server(tls_env(certificate))
    with ftps.login("acme", "acme-pw", context=client_context) as ftp:
        # Before PROT P, no data connection can be opened, passive or active
        with pytest.raises(error_perm, match=r"^550 SSL/TLS required on the data channel"):
            ftp.sendcmd("PASV")
        with pytest.raises(error_perm, match=r"^550 SSL/TLS required on the data channel"):
            ftp.sendcmd("PORT 127,0,0,1,200,10")
        # And PROT C is refused
        ftp.sendcmd("PBSZ 0")
        with pytest.raises(error_perm, match=r"^534 "):
            ftp.sendcmd("PROT C")
        assert ftp.prot_p().startswith("200")
        assert ftp.nlst() == ["dryrun", "exports", "reports"]


def test_tls_optional_accepts_both(server, certificate, client_context, home):
    ftps = server(tls_env(certificate, "optional"))
    with ftps.login("acme", "acme-pw") as ftp:
        ftp.storbinary("STOR contacts.csv", io.BytesIO(b"plain"))
    with ftps.login("acme", "acme-pw", context=client_context) as ftp:
        ftp.prot_p()
        ftp.storbinary("STOR contacts.csv", io.BytesIO(b"protected"))
    assert sorted((home.incoming / a.name).read_bytes() for a in arrivals(home)) == [
        b"plain", b"protected"]


def test_tls_off_is_plain_ftp_only(server, client_context):
    plain = server({"DROPIMPORT_FTP_TLS": "off"})
    ftp = plain.connect(context=client_context)
    with pytest.raises(error_perm, match=r"^500 "):
        ftp.auth()
    ftp.close()


def test_tls_before_1_2_is_refused(server, certificate):
    ftps = server(tls_env(certificate))
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.check_hostname = False
    old.verify_mode = ssl.CERT_NONE
    old.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is, that is the point
        old.minimum_version = ssl.TLSVersion.TLSv1
        old.maximum_version = ssl.TLSVersion.TLSv1_1
    ftp = ftps.connect(context=old)
    with pytest.raises(ssl.SSLError, match="PROTOCOL_VERSION"):
        ftp.auth()
    ftp.close()


@pytest.fixture
def garbage(tmp_path):
    path = tmp_path / "garbage.pem"
    path.write_text("not a certificate")
    return path


@pytest.mark.parametrize("mode", ["required", "optional"])
def test_the_server_does_not_start_without_a_usable_certificate(home, certificate, garbage,
                                                                 tmp_path, mode):
    cert, key = map(str, certificate)
    other_cert, other_key = tmp_path / "other.pem", tmp_path / "other.key"
    tls.write_self_signed(other_cert, other_key, ["localhost"])
    cases = {
        (None, None): "FTPS needs a certificate and its key: set DROPIMPORT_FTP_TLS_CERT",
        (str(tmp_path / "missing.pem"), key):
            "DROPIMPORT_FTP_TLS_CERT: cannot read .*missing.pem: No such file or directory",
        (cert, str(tmp_path)): "DROPIMPORT_FTP_TLS_KEY: cannot read .*: Is a directory",
        (str(garbage), key): "DROPIMPORT_FTP_TLS_CERT: .*garbage.pem is not a PEM certificate",
        (cert, str(garbage)): "DROPIMPORT_FTP_TLS_KEY: .*garbage.pem is not a PEM private key",
        (cert, str(other_key)): "DROPIMPORT_FTP_TLS_KEY: .*other.key is not the key of",
    }
    for (cert_path, key_path), message in cases.items():
        settings = Settings.from_env({
            "DROPIMPORT_HOME": str(home.root), "DROPIMPORT_FTP_PORT": "0",
            "DROPIMPORT_FTP_TLS": mode, "DROPIMPORT_FTP_TLS_CERT": cert_path or "",
            "DROPIMPORT_FTP_TLS_KEY": key_path or "",
        })
        with pytest.raises(ValueError, match=message):
            make_server(settings)


def test_the_agent_command_reports_a_missing_certificate_in_one_line(home):
    # Beyond the loopback, FTPS is required by default
    result = dropimport("agent", DROPIMPORT_HOME=str(home.root), DROPIMPORT_FTP_HOST="0.0.0.0",
                        DROPIMPORT_FTP_PORT="0")
    assert result.returncode == 1
    assert result.stderr.startswith("Error: FTPS needs a certificate and its key")
    assert result.stderr.count("\n") == 1


def _names(cert):
    certificate = x509.load_pem_x509_certificate(cert.read_bytes())
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (names.get_values_for_type(x509.DNSName),
            [str(a) for a in names.get_values_for_type(x509.IPAddress)])


def test_tls_self_signed_writes_a_certificate_and_a_private_key(tmp_path, home):
    # The folders of --cert and --key are made (a fresh volume has none)
    cert, key = tmp_path / "tls" / "cert.pem", tmp_path / "private" / "key.pem"
    args = ["tls", "self-signed", "--cert", str(cert), "--key", str(key),
            "--host", "ftp.test", "--host", "192.0.2.7"]
    result = dropimport(*args, DROPIMPORT_HOME=str(home.root))
    assert result.returncode == 0, result.stderr
    assert os.stat(key).st_mode & 0o777 == 0o600
    assert _names(cert) == (["ftp.test"], ["192.0.2.7"])
    tls.server_context(str(cert), str(key))  # a pair the server accepts
    # And it never replaces a key
    again = dropimport(*args, DROPIMPORT_HOME=str(home.root))
    assert again.returncode == 1
    assert again.stderr == f"Error: cannot write {key}: File exists\n"


def test_a_default_self_signed_certificate_serves_the_loopback_by_name_and_address(
        server, tmp_path, home):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    result = dropimport("tls", "self-signed", "--cert", str(cert), "--key", str(key),
                        DROPIMPORT_HOME=str(home.root))
    assert result.returncode == 0, result.stderr
    assert _names(cert) == (["localhost", socket.gethostname()], ["127.0.0.1", "::1"])
    # And curl, trusting it, uploads over FTPS to the address the README uses
    running = server(tls_env((cert, key)))
    (tmp_path / "contacts.csv").write_bytes(CSV)
    upload = curl("--ssl-reqd", "--cacert", str(cert), "-T", str(tmp_path / "contacts.csv"),
                  f"ftp://acme:acme-pw@127.0.0.1:{running.port}/")
    assert upload.returncode == 0, upload.stderr
    assert [a.file for a in arrivals(home)] == ["contacts.csv"]


# --- Credentials


def test_no_password_reaches_a_log_line(server, certificate, client_context, registry,
                                        home, caplog):
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="pyftpdlib")
    right, wrong = "Tr0ub4dor-initech-right", "hunter2-initech-wrong"
    registry.create("initech", "initech", right)
    registry.set_template("initech", registry.templates("acme")[0])
    ftps = server(tls_env(certificate, "optional"))
    # Given logins that succeed and fail, with and without TLS, a password sent before AUTH
    # TLS, in lower case, and uploads
    for context in (None, client_context):
        with ftps.login("initech", right, context=context) as ftp:
            if context:
                ftp.prot_p()
            ftp.storbinary("STOR contacts.csv", io.BytesIO(CSV))
        ftp = ftps.connect(context=context)
        with pytest.raises(error_perm, match=r"^530"):
            ftp.login("initech", wrong)
        ftp.sendcmd("USER initech")
        with pytest.raises(error_perm, match=r"^530"):
            ftp.sendcmd(f"pass {wrong}")
        ftp.close()
    required = server(tls_env(certificate))
    ftp = required.connect()
    with pytest.raises(error_perm, match=r"^550"):
        ftp.sendcmd(f"PASS {right}")
    ftp.close()
    # Then no log line, account document or settings dump holds either password
    assert "<- PASS ******" in caplog.text, "pyftpdlib logged every command"
    texts = [caplog.text, *(r.getMessage() for r in caplog.records),
             *(p.read_text() for p in home.accounts.rglob("*") if p.is_file()),
             str(ftps.settings.describe())]
    leaks = [text for text in texts if right in text or wrong in text]
    assert leaks == []


# --- Failed logins


def failed_login(server, user="acme", source="127.0.0.1"):
    ftp = server.connect(source)
    with pytest.raises(error_perm, match=r"^530"):
        ftp.login(user, "guess")
    ftp.close()


BAN = {"DROPIMPORT_FTP_BAN_THRESHOLD": "3", "DROPIMPORT_FTP_BAN_WINDOW": "60",
       "DROPIMPORT_FTP_BAN_SECONDS": "2"}


def test_an_address_is_banned_after_repeated_failures_until_its_ban_ends(server, caplog):
    ftp_server = server(BAN)
    waiting = ftp_server.connect()
    # Given three failed logins from one address
    for _ in range(3):
        failed_login(ftp_server)
    banned_at = time.monotonic()
    # Then it is turned away at connection, even with the right password
    with pytest.raises(error_temp, match=r"^421 Too many failed logins"):
        ftp_server.login("acme", "acme-pw")
    # And so is a connection it opened before
    with pytest.raises(error_temp, match=r"^421 Too many failed logins"):
        waiting.login("acme", "acme-pw")
    waiting.close()
    # While the owner, from another address, still logs in
    ftp_server.login("acme", "acme-pw", source="127.0.0.2").close()
    # And the ban is logged once, with the address and the user
    [ban] = [r.getMessage() for r in caplog.records if "banned" in r.getMessage()]
    assert "127.0.0.1" in ban and "'acme'" in ban
    # And when the ban ends, the address logs in again
    time.sleep(max(0.0, banned_at + 2.1 - time.monotonic()))
    ftp_server.login("acme", "acme-pw").close()


def test_a_user_under_attack_is_slowed_down_but_not_locked_out(server, caplog):
    # Each step is timed alone against the slow delay: a password check takes its own time (a
    # few tenths of a second on a slow day), which a total over several logins would add up
    slow = 2.0
    ftp_server = server(BAN, slow_delay=slow)

    def timed(step):
        started = time.monotonic()
        step()
        return time.monotonic() - started

    # Given failures for acme from two addresses, under the threshold of each: answered at once
    for source in ("127.0.0.2", "127.0.0.2", "127.0.0.3"):
        assert timed(lambda source=source: failed_login(ftp_server, source=source)) < slow
    # Then the failures past the threshold for acme are answered slowly
    assert timed(lambda: failed_login(ftp_server, source="127.0.0.3")) >= slow
    assert len([r for r in caplog.records if "failures are answered after" in r.getMessage()]) == 1
    # But the owner logs in at once, and no address is banned
    for source in ("127.0.0.1", "127.0.0.2", "127.0.0.3"):
        assert timed(lambda source=source: ftp_server.login("acme", "acme-pw",
                                                            source=source).close()) < slow


def test_connections_are_limited_per_address_and_in_total(server):
    ftp_server = server({"DROPIMPORT_FTP_MAX_CONNECTIONS": "3",
                         "DROPIMPORT_FTP_MAX_CONNECTIONS_PER_IP": "2"})
    open_ = [ftp_server.connect("127.0.0.1"), ftp_server.connect("127.0.0.1")]
    with pytest.raises(error_temp, match=r"^421 Too many connections from the same IP"):
        ftp_server.connect("127.0.0.1")
    open_.append(ftp_server.connect("127.0.0.2"))
    with pytest.raises(error_temp, match=r"^421 Too many connections"):
        ftp_server.connect("127.0.0.3")
    for ftp in open_:
        ftp.close()


# --- Isolation


@pytest.fixture
def outside(home):
    """Files of the agent and of globex that acme must never reach; links to them in acme's."""
    files = [spool.folder(home, "acme", "x") / spool.EVENT_FILE,
             home.archive / "acme" / "x" / "data.csv", home.reports("globex") / "secret.json"]
    for path in files:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("secret")
    (home.reports("acme") / "spool").symlink_to(home.spool)
    (home.reports("acme") / "secret.json").symlink_to(files[-1])
    (home.reports("acme") / "mine.json").write_text("{}")
    return files


#: What acme tries in order to get out of its root, or to change it: each is refused with 550.
PROBES = [
    # Through a symbolic link to the spool, and one to another account's report
    "NLST reports/spool", "NLST reports/spool/acme", "LIST reports/spool", "MLSD reports/spool",
    "CWD reports/spool", "RETR reports/secret.json", "SIZE reports/secret.json",
    "STOR reports/spool/x.csv",
    # Up and out, by relative and absolute paths, by another account's name
    "RETR ../globex/reports/secret.json", "RETR /../../globex/reports/secret.json",
    "CWD ../globex", "NLST ../../spool", "RETR ../../archive/acme/x/data.csv",
    "STOR ../globex/contacts.csv",
    # Changes to its root
    "STOR reports/contacts.csv", "RNFR reports/mine.json", "MKD reports/new", "RMD reports",
    "DELE reports/mine.json", "DELE ../globex/reports/secret.json",
    "MFMT 20260101000000 reports/mine.json",
]


def reply_to(ftp, command):
    """The code of the reply to `command`, opening a data connection if it needs one."""
    verb = command.split()[0]
    try:
        if verb == "STOR":
            ftp.storbinary(command, io.BytesIO(b"x"))
        elif verb in ("NLST", "LIST", "MLSD", "RETR"):
            ftp.retrlines(command, lambda line: None)
        else:
            ftp.sendcmd(command)
    except error_perm as error:
        return str(error)[:3]
    return "done"


def test_a_login_cannot_go_out_of_its_root_nor_change_it(ftp_server, outside, home):
    with ftp_server.login("acme", "acme-pw") as ftp:
        ftp.voidcmd("TYPE I")
        replies = {command: reply_to(ftp, command) for command in PROBES}
        # The real path of a file outside is just a path under the root
        replies["RETR <real path>"] = reply_to(ftp, f"RETR {outside[0]}")
    assert replies == dict.fromkeys(replies, "550")
    assert all(path.read_text() == "secret" for path in outside)
    assert (home.reports("acme") / "mine.json").exists()
    assert arrivals(home) == []


def test_a_listing_does_not_show_where_links_point(ftp_server, outside, home):
    with ftp_server.login("acme", "acme-pw") as ftp:
        lines = []
        ftp.retrlines("LIST reports", lines.append)
    assert sorted(line.split()[-1] for line in lines) == ["mine.json", "secret.json", "spool"]
    assert str(home.root) not in "\n".join(lines)


def test_site_chmod_is_answered_and_changes_nothing(ftp_server, home, tmp_path):
    reports = home.reports("acme")
    before = reports.stat().st_mode
    with ftp_server.login("acme", "acme-pw") as ftp:
        assert ftp.sendcmd("SITE CHMOD 777 reports").startswith("200")
    assert reports.stat().st_mode == before
    # And lftp's mirror -R, which sends it after each upload, reports no error
    folder = tmp_path / "upload"
    folder.mkdir()
    (folder / "contacts.csv").write_bytes(CSV)
    result = subprocess.run(
        ["lftp", "-u", "acme,acme-pw", "-e", f"set ftp:ssl-allow no; set net:max-retries 1; "
         f"mirror -R --verbose=0 {folder} /; chmod 600 contacts.csv; bye",
         f"ftp://127.0.0.1:{ftp_server.port}"], capture_output=True, text=True, timeout=60)
    assert (result.returncode, result.stderr) == (0, "")
    assert [a.file for a in arrivals(home)] == ["contacts.csv"]


@pytest.mark.parametrize("command", ["SITE HELP", "SITE", "SITE UMASK 000"])
def test_site_commands_are_not_understood(ftp_server, command):
    with ftp_server.login("acme", "acme-pw") as ftp, pytest.raises(error_perm, match=r"^500"):
        ftp.sendcmd(command)


@pytest.mark.parametrize("command", ["PORT 127,0,0,2,200,10", "EPRT |1|127.0.0.2|51210|"])
def test_data_connections_to_another_host_are_refused(ftp_server, command):
    with ftp_server.login("acme", "acme-pw") as ftp, pytest.raises(
            error_perm, match=r"^501 Rejected data connection to foreign address 127.0.0.2"):
        ftp.sendcmd(command)


def test_reports_are_deleted_only_by_an_account_that_may(ftp_server, accounts, home):
    for account in ("acme", "globex"):
        (home.reports(account) / "old.json").write_text("{}")
    accounts.update("globex", can_delete_reports=True)
    with ftp_server.login("acme", "acme-pw") as ftp, pytest.raises(error_perm, match=r"^550"):
        ftp.delete("reports/old.json")
    with ftp_server.login("globex", "globex-pw") as ftp:
        assert ftp.delete("reports/old.json").startswith("250")
        # Within reports/ only
        for command in ("DELE reports", "RMD reports", "DELE ../acme/reports/old.json"):
            with pytest.raises(error_perm, match=r"^550"):
                ftp.sendcmd(command)
    assert (home.reports("acme") / "old.json").exists()
    assert not (home.reports("globex") / "old.json").exists()


# --- Upload rules


@pytest.mark.parametrize("mode", ["off", "required"])
def test_an_oversize_upload_is_aborted_with_552_and_removed(server, accounts, certificate,
                                                            client_context, home, mode):
    accounts.update("acme", max_file_size=1000)
    ftp_server = server(tls_env(certificate, mode))
    with ftp_server.login("acme", "acme-pw", context=client_context if mode != "off" else None) \
            as ftp:
        if mode != "off":
            ftp.prot_p()
        # A file of exactly the largest size is accepted
        assert ftp.storbinary("STOR contacts.csv", io.BytesIO(b"x" * 1000)).startswith("226")
        # One larger is refused, whose data the client could send to the end
        with pytest.raises(error_perm, match=r"^552 Exceeded the largest file .* \(1000 bytes\)"):
            ftp.storbinary("STOR contacts.csv", io.BytesIO(b"x" * 200_000))
        assert ftp.voidcmd("NOOP").startswith("200")
    # And only the first was handed over; nothing is left in staging
    assert [(home.incoming / a.name).stat().st_size for a in arrivals(home)] == [1000]
    assert staging.uploads(home) == []


def test_a_client_sending_far_too_much_is_cut_off_with_552(ftp_server, accounts, home):
    accounts.update("acme", max_file_size=1000)
    with ftp_server.login("acme", "acme-pw") as ftp:
        # The client keeps sending after the refusal: its data connection is closed
        with pytest.raises(OSError):
            ftp.storbinary("STOR contacts.csv", io.BytesIO(bytes(80 * 2**20)))
        with pytest.raises(error_perm, match=r"^552 "):
            ftp.getresp()
    assert arrivals(home) == []
    assert staging.uploads(home) == []


def test_an_unexpected_name_is_refused_with_the_names_expected(ftp_server, accounts,
                                                               demo_template, registry, home):
    with ftp_server.login("acme", "acme-pw") as ftp:
        with pytest.raises(error_perm) as refused:
            ftp.storbinary("STOR clients.txt", io.BytesIO(CSV))
        assert str(refused.value) == "553 'clients.txt' is not expected here; upload contacts.csv"
        # A template whose file is a pattern, with a marker, expects the names it matches
        accounts.set_template("acme", {**demo_template, "file": "orders-*.csv",
                                       "completion": {"marker": ".done"}})
        for name in ("orders-2026-11.csv", "orders-2026-11.csv.done", "contacts.csv"):
            assert ftp.storbinary(f"STOR {name}", io.BytesIO(CSV)).startswith("226")
        with pytest.raises(error_perm, match=r"^553 'orders.csv' is not expected here; upload "
                                             r"contacts.csv, orders-\*.csv \(\+ .done\)"):
            ftp.storbinary("STOR orders.csv", io.BytesIO(CSV))
    # An account without a template is told so
    registry.create("initech", "initech", "initech-pw")
    with ftp_server.login("initech", "initech-pw") as ftp, pytest.raises(
            error_perm, match=r"^553 'contacts.csv' is not expected here: this account has no "):
        ftp.storbinary("STOR contacts.csv", io.BytesIO(CSV))
    assert sorted(a.file for a in arrivals(home)) == [
        "contacts.csv", "orders-2026-11.csv", "orders-2026-11.csv.done"]


def test_uploads_beyond_the_hourly_cap_are_refused_with_450(ftp_server, accounts, home, caplog):
    accounts.update("acme", uploads_per_hour=2)
    with ftp_server.login("acme", "acme-pw") as ftp:
        with pytest.raises(error_perm, match=r"^553"):  # a refused name does not count
            ftp.storbinary("STOR clients.txt", io.BytesIO(CSV))
        for _ in range(2):
            ftp.storbinary("STOR contacts.csv", io.BytesIO(CSV))
        for _ in range(2):
            with pytest.raises(error_temp, match=r"^450 Upload limit reached: 2 files an hour "
                                                 r"for this account; upload again in 60 minutes"):
                ftp.storbinary("STOR contacts.csv", io.BytesIO(CSV))
    with ftp_server.login("globex", "globex-pw") as ftp:
        ftp.storbinary("STOR contacts.csv", io.BytesIO(CSV))
    assert len(arrivals(home)) == 3
    logged = [r for r in caplog.records if "uploads an hour" in r.getMessage()]
    assert [r.getMessage()[:40] for r in logged] == ["account acme reached its 2 uploads an ho"]


# --- Passive mode behind NAT


def test_pasv_answers_the_masquerade_address_and_a_port_in_the_range(server):
    ports = range(47300, 47340)
    ftp_server = server({"DROPIMPORT_FTP_PASSIVE_PORTS": f"{ports.start}-{ports.stop - 1}",
                         "DROPIMPORT_FTP_MASQUERADE_ADDRESS": "203.0.113.9"})
    with ftp_server.login("acme", "acme-pw") as ftp:
        host, port = parse227(ftp.sendcmd("PASV"))
        assert host == "203.0.113.9"
        assert port in ports
        # ftplib connects to the control connection's host, as a client inside the NAT would
        assert ftp.nlst() == ["dryrun", "exports", "reports"]


def test_a_nul_in_a_command_is_refused_and_the_session_goes_on(ftp_server, caplog):
    with ftp_server.login("acme", "acme-pw") as ftp:
        for command in ("STOR a\0b", "CWD rep\0orts", "SIZE \0"):
            with pytest.raises(error_perm, match=r"^501 "):
                ftp.sendcmd(command)
        assert ftp.voidcmd("NOOP").startswith("200")
    assert "Traceback" not in caplog.text


def test_changes_to_an_account_reach_the_sessions_already_open(ftp_server, accounts, home):
    (home.reports("acme") / "old.json").write_text("{}")
    with ftp_server.login("acme", "acme-pw") as ftp:
        # When the account may delete its reports, from the next command on, it may
        with pytest.raises(error_perm, match=r"^550"):
            ftp.delete("reports/old.json")
        accounts.update("acme", can_delete_reports=True)
        assert ftp.delete("reports/old.json").startswith("250")
        # When its password changes, the open session is closed at its next command
        accounts.set_password("acme", "new-password")
        with pytest.raises(error_perm, match=r"^530 "):
            ftp.voidcmd("NOOP")
    # And a session of an account removed meanwhile ends the same way
    with ftp_server.login("globex", "globex-pw") as ftp:
        assert ftp.voidcmd("NOOP").startswith("200")
        for path in home.accounts.rglob("*"):
            if path.is_file() and "globex" in path.read_text():
                path.unlink()
        with pytest.raises(error_perm, match=r"^530 "):
            ftp.storbinary("STOR contacts.csv", io.BytesIO(CSV))
    assert arrivals(home) == []
