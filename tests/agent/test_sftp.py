"""The SFTP door, driven by real clients: OpenSSH's sftp and scp with a key, PuTTY's psftp (the
SSH of WinSCP and FileZilla) and asyncssh's client with a password."""

import asyncio
import ftplib
import os
import signal
import stat
import subprocess
import time

import asyncssh
import pytest

from agent.sftp import MAX_AHEAD, _Upload, host_keys
from schemas.settings import Settings
from tests.agent.conftest import RunningDoor, RunningServer
from tests.conftest import DEMO
from tests.harness import wait_until

SAMPLE = (DEMO / "contacts.csv").read_bytes()


@pytest.fixture
def key(tmp_path, accounts):
    """An ed25519 key pair made by ssh-keygen, its public half added to acme; its path."""
    path = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "jo@acme",
                    "-f", str(path)], check=True)
    accounts.add_key("acme", path.with_suffix(".pub").read_text())
    return path


def _openssh(tmp_path, door, key, *args):
    """The options OpenSSH's clients need here: the key only, a known_hosts of the test's own."""
    return ["-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", str(key),
            "-o", "StrictHostKeyChecking=accept-new",
            "-o", f"UserKnownHostsFile={tmp_path / 'known_hosts'}", *args]


def sftp_batch(tmp_path, door, key, commands, user="acme", options=()):
    """OpenSSH's `sftp -b` running `commands`; the completed process."""
    return subprocess.run(
        ["sftp", "-b", "-", "-P", str(door.port), *_openssh(tmp_path, door, key, *options),
         f"{user}@127.0.0.1"], input=commands, capture_output=True, text=True, timeout=60,
        cwd=tmp_path)


def arrived(home):
    """The files handed into incoming/: {name after the import id: bytes}."""
    if not home.incoming.exists():
        return []
    return sorted((p.name.partition(".")[2], p.read_bytes()) for p in home.incoming.iterdir())


def staged(home):
    return [p for p in home.staging.rglob("*") if p.is_file() and p.name != ".lock"]


def run(coroutine):
    return asyncio.run(coroutine)


async def _connect(door, user="acme", password="acme-pw", **options):
    options.setdefault("client_keys", None)
    return await asyncssh.connect("127.0.0.1", door.port, username=user, password=password,
                                  known_hosts=None, **options)


def test_openssh_sftp_puts_a_file_with_a_key(tmp_path, home, sftp_door, key):
    # Given acme's key: OpenSSH's sftp uploads the sample in batch mode
    (tmp_path / "contacts.csv").write_bytes(SAMPLE)
    result = sftp_batch(tmp_path, sftp_door, key, "put contacts.csv\nls\n")
    # Then it is handed over whole, as an FTP upload is, and nothing stays staged
    assert result.returncode == 0, result.stderr
    assert arrived(home) == [("acme.contacts.csv", SAMPLE)]
    assert staged(home) == []
    assert "reports" in result.stdout
    # And the host key the client learned is the server's
    known = (tmp_path / "known_hosts").read_text()
    assert sftp_door.door.keys[0].export_public_key().decode().split()[1] in known


def test_a_file_put_into_dryrun_arrives_as_a_preview(tmp_path, home, sftp_door, key):
    (tmp_path / "contacts.csv").write_bytes(SAMPLE)
    result = sftp_batch(tmp_path, sftp_door, key, "put contacts.csv dryrun/contacts.csv\n")
    assert result.returncode == 0, result.stderr
    assert arrived(home) == [("acme+dryrun.contacts.csv", SAMPLE)]


def test_scp_copies_a_file_with_a_key(tmp_path, home, sftp_door, key):
    (tmp_path / "contacts.csv").write_bytes(SAMPLE)
    result = subprocess.run(
        ["scp", "-P", str(sftp_door.port), *_openssh(tmp_path, sftp_door, key),
         str(tmp_path / "contacts.csv"), "acme@127.0.0.1:"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert arrived(home) == [("acme.contacts.csv", SAMPLE)]


def test_openssh_is_refused_what_the_door_forbids(tmp_path, home, sftp_door, key):
    (tmp_path / "clients.txt").write_bytes(SAMPLE)
    # A name no template expects, a folder, a mode, a link: each refused, nothing arrives
    for command in ("put clients.txt", "mkdir incoming", "chmod 777 reports",
                    "ln -s /etc etc", "rename reports r", "put clients.txt reports/contacts.csv",
                    "get /../../../../etc/passwd"):
        result = sftp_batch(tmp_path, sftp_door, key, command + "\n")
        assert result.returncode != 0, command
        assert "denied" in result.stderr or "not found" in result.stderr, \
            (command, result.stderr)
    assert arrived(home) == []
    # Shell and exec are refused: only the sftp subsystem is served
    result = subprocess.run(
        ["ssh", "-p", str(sftp_door.port), *_openssh(tmp_path, sftp_door, key),
         "acme@127.0.0.1", "echo", "hacked"], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "hacked" not in result.stdout


def test_weak_algorithms_and_unknown_keys_are_refused(tmp_path, home, sftp_door, key):
    for options in (("-c", "aes128-cbc"), ("-o", "KexAlgorithms=diffie-hellman-group14-sha1"),
                    ("-o", "KexAlgorithms=diffie-hellman-group1-sha1"),
                    ("-c", "aes128-ctr", "-o", "MACs=hmac-sha1"),
                    ("-o", "HostKeyAlgorithms=ssh-rsa")):
        result = sftp_batch(tmp_path, sftp_door, key, "ls\n", options=options)
        assert result.returncode != 0, options
        assert "no matching" in result.stderr, (options, result.stderr)
    # An RSA key, though acme's, may not sign with SHA-1 (ssh-rsa)
    rsa = tmp_path / "id_rsa"
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "3072", "-N", "", "-f", str(rsa)],
                   check=True)
    home_registry = sftp_door.door.registry
    home_registry.add_key("acme", rsa.with_suffix(".pub").read_text())
    sha1 = sftp_batch(tmp_path, sftp_door, rsa, "ls\n",
                      options=("-o", "PubkeyAcceptedAlgorithms=ssh-rsa"))
    assert sha1.returncode != 0 and "Permission denied" in sha1.stderr
    assert sftp_batch(tmp_path, sftp_door, rsa, "ls\n").returncode == 0
    # A key acme does not hold: refused
    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)],
                   check=True)
    result = sftp_batch(tmp_path, sftp_door, other, "ls\n")
    assert result.returncode != 0 and "Permission denied" in result.stderr


def test_a_client_killed_mid_upload_leaves_nothing(tmp_path, home, sftp_door, key):
    # Given a 2 MB upload slowed to ~100 kB/s
    (tmp_path / "contacts.csv").write_bytes(SAMPLE * (2_000_000 // len(SAMPLE)))
    client = subprocess.Popen(
        ["sftp", "-b", "-", "-l", "800", "-P", str(sftp_door.port),
         *_openssh(tmp_path, sftp_door, key), "acme@127.0.0.1"], stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=tmp_path, text=True,
        start_new_session=True)
    client.stdin.write("put contacts.csv\n")
    client.stdin.close()
    wait_until(lambda: any(p.stat().st_size > 0 for p in staged(home)), 30, "the upload")
    # When the client is killed mid-upload
    os.killpg(client.pid, signal.SIGKILL)
    client.wait()
    # Then nothing arrives, and what was received is removed
    wait_until(lambda: staged(home) == [], 30, "the part removed")
    time.sleep(0.2)
    assert arrived(home) == []


def test_a_temporary_name_is_imported_once_at_its_rename(home, sftp_door):
    async def upload():
        async with await _connect(sftp_door) as conn, conn.start_sftp_client() as sftp:
            async with sftp.open("contacts.csv.filepart", "wb") as file:
                await file.write(SAMPLE)
            assert arrived(home) == []  # complete, but not yet under its name
            assert (await sftp.stat("contacts.csv.filepart")).size == len(SAMPLE)
            await sftp.rename("contacts.csv.filepart", "contacts.csv")
            assert arrived(home) == [("acme.contacts.csv", SAMPLE)]
            # A temporary upload never renamed is discarded when the session ends
            async with sftp.open("contacts.csv.part", "wb") as file:
                await file.write(SAMPLE)

    run(upload())
    wait_until(lambda: staged(home) == [], 10, "the unrenamed part removed")
    assert arrived(home) == [("acme.contacts.csv", SAMPLE)]


def test_uploads_are_refused_with_their_reason(home, registry, sftp_door):
    registry.update("acme", max_file_size=1000, uploads_per_hour=3)

    async def refusals():
        reasons = []
        async with await _connect(sftp_door) as conn, conn.start_sftp_client() as sftp:
            for attempt in (
                lambda: sftp.open("clients.txt", "wb"),
                lambda: sftp.open("reports/contacts.csv", "wb"),
                lambda: sftp.open("contacts.csv", "ab"),  # append: a resumed upload
            ):
                with pytest.raises(asyncssh.SFTPError) as refused:
                    await attempt()
                reasons.append(refused.value.reason)
            # Larger than max_file_size: refused at the write that passes it
            file = await sftp.open("contacts.csv", "wb")
            await file.write(b"x" * 600)
            with pytest.raises(asyncssh.SFTPFailure) as refused:
                await file.write(b"x" * 600, 600)
            reasons.append(refused.value.reason)
            assert staged(home) == []
            with pytest.raises(asyncssh.SFTPFailure):
                await file.close()
            # A file with a gap (bytes never written) is refused at its close
            file = await sftp.open("contacts.csv", "wb")
            await file.write(b"x" * 100, 100)
            with pytest.raises(asyncssh.SFTPFailure) as refused:
                await file.close()
            reasons.append(refused.value.reason)
            # The hourly limit: the fourth upload this hour
            async with sftp.open("contacts.csv", "wb") as file:
                await file.write(b"email\n")
            with pytest.raises(asyncssh.SFTPFailure) as refused:
                await sftp.open("contacts.csv", "wb")
            reasons.append(refused.value.reason)
        return reasons

    reasons = run(refusals())
    assert reasons[0] == "'clients.txt' is not expected here; upload contacts.csv"
    assert reasons[1] == "upload at the top of your folder (or into dryrun/ to preview)"
    assert reasons[2].startswith("resuming an upload is not supported")
    assert reasons[3] == "contacts.csv is larger than this account's limit of 1000 bytes: " \
                         "nothing kept"
    assert reasons[4] == "bytes 0 to 99 of contacts.csv were never written: nothing kept"
    assert reasons[5].startswith("Upload limit reached: 3 files an hour")
    assert arrived(home) == [("acme.contacts.csv", b"email\n")]


def test_a_login_sees_its_root_only(home, registry, sftp_door, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    os.symlink(outside, home.reports("acme") / "link.txt")
    (home.reports("acme") / "report.txt").write_text("ok")
    (home.reports("globex") / "theirs.txt").write_text("globex's")

    async def browse():
        async with await _connect(sftp_door) as conn, conn.start_sftp_client() as sftp:
            assert await sftp.realpath("..") == "/"
            assert sorted(await sftp.listdir("/reports")) == [".", "..", "link.txt",
                                                                "report.txt"]
            async with sftp.open("reports/report.txt", "rb") as file:
                assert await file.read() == b"ok"
            for attempt in (lambda: sftp.open("reports/link.txt", "rb"),
                            lambda: sftp.readlink("reports/link.txt"),
                            lambda: sftp.remove("reports/report.txt"),
                            lambda: sftp.open("../globex/reports/theirs.txt", "rb")):
                with pytest.raises((asyncssh.SFTPPermissionDenied, asyncssh.SFTPNoSuchFile)):
                    await attempt()

    run(browse())
    # An account allowed to delete its reports may
    registry.update("acme", can_delete_reports=True)

    async def delete():
        async with await _connect(sftp_door) as conn, conn.start_sftp_client() as sftp:
            await sftp.remove("reports/report.txt")

    run(delete())
    assert not (home.reports("acme") / "report.txt").exists()


@pytest.mark.parametrize("can_delete_reports", [False, True])
def test_the_customer_downloads_then_deletes_its_exports(home, registry, sftp_door,
                                                         can_delete_reports):
    # Given an export in acme's exports/, and a report it may delete or not
    registry.update("acme", can_delete_reports=can_delete_reports)
    (home.exports("acme") / "contacts-20261125.csv").write_bytes(b"email\njo@x.com\n")
    (home.reports("acme") / "old.json").write_text("{}")

    async def fetch_then_delete():
        async with await _connect(sftp_door) as conn, conn.start_sftp_client() as sftp:
            assert sorted(await sftp.listdir("/")) == [".", "..", "dryrun", "exports",
                                                        "reports"]
            assert await sftp.listdir("exports") == [".", "..", "contacts-20261125.csv"]
            async with sftp.open("exports/contacts-20261125.csv", "rb") as file:
                assert await file.read() == b"email\njo@x.com\n"
            await sftp.remove("exports/contacts-20261125.csv")
            # But never the folder itself, and reports/ only if the account may
            for attempt in (lambda: sftp.remove("exports"), lambda: sftp.rmdir("exports")):
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    await attempt()
            if can_delete_reports:
                await sftp.remove("reports/old.json")
            else:
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    await sftp.remove("reports/old.json")

    run(fetch_then_delete())
    assert os.listdir(home.exports("acme")) == []
    assert (home.reports("acme") / "old.json").exists() is not can_delete_reports


def test_nothing_is_uploaded_into_exports(home, registry, sftp_door):
    registry.update("acme", can_delete_reports=True)

    async def upload():
        async with await _connect(sftp_door) as conn, conn.start_sftp_client() as sftp:
            # Under its expected name, or a temporary one renamed into exports/ at the end
            with pytest.raises(asyncssh.SFTPPermissionDenied, match="upload at the top"):
                await sftp.open("exports/contacts.csv", "wb")
            async with sftp.open("contacts.csv.filepart", "wb") as file:
                await file.write(SAMPLE)
            with pytest.raises(asyncssh.SFTPPermissionDenied, match="upload at the top"):
                await sftp.rename("contacts.csv.filepart", "exports/contacts.csv")

    run(upload())
    assert os.listdir(home.exports("acme")) == []
    assert arrived(home) == []


def test_keys_only_accounts_refuse_passwords(registry, sftp_door, key):
    registry.update("acme", sftp_auth="keys")
    with pytest.raises(asyncssh.PermissionDenied):
        run(_connect(sftp_door))

    async def with_key():
        async with await _connect(sftp_door, password=None,
                                  client_keys=[str(key)]) as conn, conn.start_sftp_client() as sftp:
            return await sftp.listdir(".")

    assert "reports" in run(with_key())
    # Password only: the key is refused
    registry.update("acme", sftp_auth="password")
    with pytest.raises(asyncssh.PermissionDenied):
        run(_connect(sftp_door, password=None, client_keys=[str(key)]))


def test_a_removed_key_ends_its_sessions(home, registry, sftp_door, key):
    async def session():
        async with await _connect(sftp_door, password=None,
                                  client_keys=[str(key)]) as conn, conn.start_sftp_client() as sftp:
            async with sftp.open("contacts.csv", "wb") as file:
                await file.write(SAMPLE)
            [entry] = registry.keys("acme")
            registry.remove_key("acme", entry["fingerprint"])
            with pytest.raises(asyncssh.SFTPPermissionDenied, match="log in again"):
                await sftp.open("contacts.csv", "wb")

    run(session())
    assert arrived(home) == [("acme.contacts.csv", SAMPLE)]


def test_forwarding_is_refused(sftp_door):
    async def forward():
        async with await _connect(sftp_door) as conn:
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.open_connection("127.0.0.1", sftp_door.port)
            with pytest.raises(asyncssh.ChannelListenError):
                await conn.forward_remote_port("127.0.0.1", 0, "127.0.0.1", 1)
            with pytest.raises(asyncssh.ChannelOpenError):
                await conn.run("id", check=True)

    run(forward())


def test_failed_logins_ban_the_address_on_both_doors(home, accounts):
    # Given an FTP and an SFTP door sharing one count of failures, banning at 3
    env = {"DROPIMPORT_FTP_BAN_THRESHOLD": "3"}
    ftp = RunningServer(home, env)
    door = RunningDoor(home, env, bans=ftp.server.handler.bans)
    try:
        # When two FTP logins and one SFTP login fail from the same address
        for _ in range(2):
            with pytest.raises(ftplib.error_perm, match="530"):
                ftp.login("acme", "wrong")
        with pytest.raises(asyncssh.PermissionDenied):
            run(_connect(door, password="wrong"))
        # Then the address is banned on both: even the right password is turned away
        with pytest.raises((asyncssh.DisconnectError, ConnectionError, OSError)):
            run(_connect(door))
        client = ftplib.FTP()
        try:
            with pytest.raises(ftplib.error_temp, match="421 Too many failed logins"):
                client.connect(ftp.host, ftp.port, timeout=10)
        finally:
            client.close()
    finally:
        door.stop()
        ftp.stop()


def test_the_host_key_is_made_once_and_kept(home, accounts):
    first = RunningDoor(home)
    fingerprint = first.door.fingerprints
    first.stop()
    assert stat.S_IMODE(home.ssh_host_key.stat().st_mode) == 0o600
    second = RunningDoor(home)
    try:
        assert second.door.fingerprints == fingerprint
    finally:
        second.stop()


def test_a_host_key_that_cannot_be_read_is_said_in_one_line(home, tmp_path):
    garbage = tmp_path / "host_key"
    garbage.write_text("not a key\n")
    for path, message in ((tmp_path / "missing", "No such file or directory"),
                          (garbage, "")):
        settings = Settings.from_env({"DROPIMPORT_HOME": str(home.root),
                                      "DROPIMPORT_SFTP_HOST_KEY": str(path)})
        with pytest.raises(ValueError, match=f"^DROPIMPORT_SFTP_HOST_KEY: cannot read the host "
                                             f"key {path}: .*{message}"):
            host_keys(settings)


def test_the_host_keys_given_are_served(home, accounts, key, tmp_path):
    # Given an RSA host key beside an ed25519 one, for clients without ed25519
    given = []
    for algorithm in ("ssh-ed25519", "ssh-rsa"):
        host = asyncssh.generate_private_key(algorithm, key_size=3072) \
            if algorithm == "ssh-rsa" else asyncssh.generate_private_key(algorithm)
        host.write_private_key(tmp_path / algorithm)
        given.append(host)
    door = RunningDoor(home, {"DROPIMPORT_SFTP_HOST_KEY":
                              f"{tmp_path / 'ssh-ed25519'},{tmp_path / 'ssh-rsa'}"})
    try:
        # Then a client that only takes RSA host keys (with SHA-2) connects, and learns that one
        result = sftp_batch(tmp_path, door, key, "ls\n",
                            options=("-o", "HostKeyAlgorithms=rsa-sha2-512"))
        assert result.returncode == 0, result.stderr
        known = (tmp_path / "known_hosts").read_text()
        assert given[1].export_public_key().decode().split()[1] in known
        assert door.door.fingerprints == [f"{k.get_algorithm()} {k.get_fingerprint()}"
                                          for k in given]
        assert not home.ssh_host_key.exists()  # none made: the ones given are used
    finally:
        door.stop()


def test_writes_in_any_order_join_and_a_gap_is_found(tmp_path):
    upload = _Upload("acme", "contacts.csv", b"/contacts.csv", str(tmp_path / "part"), 10_000,
                     temporary=False)
    # Writes arrive out of order, as clients send many at once
    for offset in (300, 100, 0, 200):
        upload.write(offset, b"x" * 100)
    assert upload.gap() is None
    upload.write(500, b"y" * 10)  # 400-499 never written
    assert upload.gap() == (400, 500)
    upload.write(400, b"z" * 100)
    assert upload.gap() is None
    # Beyond MAX_AHEAD writes waiting beyond a gap, the upload is refused
    with pytest.raises(OverflowError):
        for n in range(MAX_AHEAD + 1):
            upload.write(1000 + 2 * n, b"w")
    upload.close()
    assert (tmp_path / "part").read_bytes()[:510] == b"x" * 400 + b"z" * 100 + b"y" * 10


def psftp(door, commands, password="acme-pw", cwd=None):
    """PuTTY's psftp, whose SSH is WinSCP's and FileZilla's, logging in by password (PuTTY
    sends it as keyboard-interactive) and trusting the door's host key by its fingerprint."""
    return subprocess.run(
        ["psftp", "-batch", "-P", str(door.port), "-l", "acme", "-pw", password,
         "-hostkey", door.door.keys[0].get_fingerprint(), "-b", "/dev/stdin", "127.0.0.1"],
        input=commands, capture_output=True, text=True, timeout=60, cwd=cwd)


def test_putty_uploads_under_a_temporary_name_and_renames_it(tmp_path, home, sftp_door):
    # As WinSCP does: the file under a temporary name, then renamed to its own
    (tmp_path / "contacts.csv").write_bytes(SAMPLE)
    result = psftp(sftp_door, "put contacts.csv contacts.csv.filepart\n"
                              "mv contacts.csv.filepart contacts.csv\n", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert arrived(home) == [("acme.contacts.csv", SAMPLE)]


def test_a_keyboard_interactive_password_counts_towards_the_ban(home, accounts):
    door = RunningDoor(home, {"DROPIMPORT_FTP_BAN_THRESHOLD": "1"})
    try:
        result = psftp(door, "ls\n", password="guess")
        assert result.returncode != 0
        assert door.bans.banned("127.0.0.1")
    finally:
        door.stop()
