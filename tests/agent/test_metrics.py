"""The agent's metrics move with what happens on the FTP and SFTP servers (the e2e tests scrape
them)."""

import asyncio
import io
import time
from ftplib import error_perm, error_temp

import asyncssh
import pytest
from prometheus_client import REGISTRY

from tests.agent.conftest import RunningDoor, RunningServer

CSV = b"E-mail;Pr\xc3\xa9nom;Nom;Ville\r\na@example.com;A;B;Lyon\r\n"


class Counts:
    """The samples of the default registry, as differences from when this was made."""

    def __init__(self):
        self.start = {}
        self.start = self.now()

    def now(self):
        return {(s.name, tuple(sorted(s.labels.items()))): s.value
                for family in REGISTRY.collect() if family.name.startswith("dropimport_")
                for s in family.samples if not s.name.endswith("_created")}

    def delta(self, name, **labels):
        key = (name, tuple(sorted(labels.items())))
        return self.now().get(key, 0) - self.start.get(key, 0)


@pytest.fixture
def server(home, accounts):
    servers = []

    def start(env=None):
        servers.append(RunningServer(home, env))
        return servers[-1]

    yield start
    for running in servers:
        running.stop()


def test_uploads_received_and_refused_by_reason(server, accounts):
    accounts.update("acme", max_file_size=1000, uploads_per_hour=2)
    ftp_server = server()
    counts = Counts()
    with ftp_server.login("acme", "acme-pw") as ftp:
        # A session open shows
        assert counts.delta("dropimport_ftp_sessions") == 1
        ftp.storbinary("STOR contacts.csv", io.BytesIO(CSV))
        with pytest.raises(error_perm, match=r"^553"):
            ftp.storbinary("STOR clients.txt", io.BytesIO(CSV))
        with pytest.raises(error_perm, match=r"^552"):
            ftp.storbinary("STOR contacts.csv", io.BytesIO(bytes(5000)))
        with pytest.raises(error_temp, match=r"^450"):
            ftp.storbinary("STOR contacts.csv", io.BytesIO(CSV))
        with pytest.raises(error_perm, match=r"^550"):
            ftp.storbinary("STOR contacts.csv", io.BytesIO(CSV), rest=10)
    assert counts.delta("dropimport_uploads_received_total", protocol="ftp") == 1
    assert counts.delta("dropimport_upload_bytes_received_total", protocol="ftp") == len(CSV)
    assert {reason: counts.delta("dropimport_uploads_refused_total", protocol="ftp",
                                 reason=reason)
            for reason in ("name", "size", "rate", "resume", "space", "incomplete")} == {
        "name": 1, "size": 1, "rate": 1, "resume": 1, "space": 0, "incomplete": 0}
    # And the session, once closed, no longer shows
    deadline = time.monotonic() + 5
    while counts.delta("dropimport_ftp_sessions") != 0:
        assert time.monotonic() < deadline, "the session is still counted open"
        time.sleep(0.05)


def test_failed_logins_and_bans(server):
    ftp_server = server({"DROPIMPORT_FTP_BAN_THRESHOLD": "2", "DROPIMPORT_FTP_BAN_SECONDS": "60"})
    counts = Counts()
    for _ in range(2):
        with pytest.raises(error_perm, match=r"^530"):
            ftp_server.login("acme", "guess")
    with pytest.raises(error_temp, match=r"^421"):
        ftp_server.login("acme", "acme-pw")
    assert counts.delta("dropimport_ftp_login_failures_total") == 2
    assert counts.delta("dropimport_ftp_bans_total") == 1
    assert counts.delta("dropimport_ftp_connections_refused_total", reason="banned") == 1


def test_sftp_sessions_uploads_and_failures_are_labelled(home, accounts):
    door = RunningDoor(home)
    counts = Counts()

    async def session():
        with pytest.raises(asyncssh.PermissionDenied):
            await asyncssh.connect("127.0.0.1", door.port, username="acme", password="guess",
                                   known_hosts=None, client_keys=None)
        # Two keys acme does not hold, offered in turn by one connection: one failure
        keys = [asyncssh.generate_private_key("ssh-ed25519") for _ in range(2)]
        with pytest.raises(asyncssh.PermissionDenied):
            await asyncssh.connect("127.0.0.1", door.port, username="acme", password=None,
                                   known_hosts=None, client_keys=keys)
        async with asyncssh.connect("127.0.0.1", door.port, username="acme",
                                    password="acme-pw", known_hosts=None,
                                    client_keys=None) as conn:
            assert counts.delta("dropimport_sftp_sessions") == 1
            async with conn.start_sftp_client() as sftp:
                async with sftp.open("contacts.csv", "wb") as file:
                    await file.write(CSV)
                with pytest.raises(asyncssh.SFTPPermissionDenied):
                    await sftp.open("clients.txt", "wb")

    try:
        asyncio.run(session())
        assert counts.delta("dropimport_uploads_received_total", protocol="sftp") == 1
        assert counts.delta("dropimport_upload_bytes_received_total", protocol="sftp") == \
            len(CSV)
        assert counts.delta("dropimport_uploads_refused_total", protocol="sftp",
                            reason="name") == 1
        assert counts.delta("dropimport_uploads_received_total", protocol="ftp") == 0
        assert counts.delta("dropimport_sftp_login_failures_total", method="password") == 1
        deadline = time.monotonic() + 5
        while counts.delta("dropimport_sftp_sessions") != 0 or \
                counts.delta("dropimport_sftp_login_failures_total", method="publickey") == 0:
            assert time.monotonic() < deadline, "the session is still counted open"
            time.sleep(0.05)
        assert counts.delta("dropimport_sftp_login_failures_total", method="publickey") == 1
    finally:
        door.stop()
