import ssl
from ftplib import FTP, FTP_TLS

import pytest

from agent.authorizer import AccountAuthorizer
from agent.bans import Bans
from agent.ftp import make_server
from agent.rules import UploadRate
from agent.sftp import SFTPDoor
from dropimport.accounts import Registry
from schemas.settings import Settings
from tests.clients import Serving, logged_in


class RunningServer:
    """A real dropimport FTP server on a free port, served by a thread.

    `env` adds DROPIMPORT_* settings; failed logins are answered after `delay` seconds
    (`slow_delay` for a user under attack) rather than the production 3 s and 15 s.
    """

    def __init__(self, home, env=None, delay=0.05, slow_delay=0.05):
        self.settings = Settings.from_env(
            {"DROPIMPORT_HOME": str(home.root), "DROPIMPORT_FTP_PORT": "0", **(env or {})}
        )
        bans = Bans.from_settings(self.settings, delay=delay, slow_delay=slow_delay)
        self.server = make_server(self.settings, bans)
        self.host, self.port = self.server.address
        self._serving = Serving(self.server, "ftp-test-server")

    def stop(self):
        self._serving.stop()

    def connect(self, source="127.0.0.1", context=None):
        """A client connected (not logged in) from `source`; FTPS (AUTH TLS) with `context`."""
        ftp = FTP(source_address=(source, 0)) if context is None else FTP_TLS(
            context=context, source_address=(source, 0))
        try:
            ftp.connect(self.host, self.port, timeout=10)
        except Exception:
            ftp.close()
            raise
        return ftp

    def login(self, user, password, source="127.0.0.1", context=None):
        return logged_in(self.connect(source, context), user, password)


@pytest.fixture
def accounts(registry, demo_template):
    """acme and globex, each with the demo template (contacts.csv)."""
    for name in ("acme", "globex"):
        registry.create(name, name, f"{name}-pw")
        registry.set_template(name, demo_template)
    return registry


@pytest.fixture
def ftp_server(home, accounts):
    server = RunningServer(home)
    yield server
    server.stop()


@pytest.fixture
def client_context(certificate):
    """A client TLS context that trusts the test certificate only, and checks the host."""
    return ssl.create_default_context(cafile=str(certificate[0]))


def tls_env(certificate, mode="required"):
    cert, key = certificate
    return {"DROPIMPORT_FTP_TLS": mode, "DROPIMPORT_FTP_TLS_CERT": str(cert),
            "DROPIMPORT_FTP_TLS_KEY": str(key)}


class RunningDoor:
    """A real dropimport SFTP server on a free port, on its own event loop's thread.

    `bans` and `uploads` are shared with an FTP server's when given (the ban counts both doors);
    failed logins are answered after `delay` seconds rather than the production 3 s.
    """

    def __init__(self, home, env=None, bans=None, uploads=None, delay=0.05):
        self.settings = Settings.from_env(
            {"DROPIMPORT_HOME": str(home.root), "DROPIMPORT_SFTP_PORT": "0", **(env or {})})
        self.bans = bans or Bans.from_settings(self.settings, delay=delay, slow_delay=delay)
        self.door = SFTPDoor(self.settings, AccountAuthorizer(Registry(home)), self.bans,
                             uploads or UploadRate())
        self.door.start()
        self.host, self.port = self.door.address

    def stop(self):
        self.door.stop()


@pytest.fixture
def sftp_door(home, accounts):
    door = RunningDoor(home)
    yield door
    door.stop()
