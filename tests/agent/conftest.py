import threading
from ftplib import FTP

import pytest

from agent.ftp import make_server
from schemas.settings import Settings


class RunningServer:
    """A real dropimport FTP server on a free port, served by a thread."""

    def __init__(self, home):
        settings = Settings.from_env(
            {"DROPIMPORT_HOME": str(home.root), "DROPIMPORT_FTP_PORT": "0"}
        )
        self.server = make_server(settings)
        self.host, self.port = self.server.address
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="ftp-test-server")
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            self.server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
        self.server.close_all()

    def stop(self):
        self._stop.set()
        self._thread.join()

    def login(self, user, password):
        ftp = FTP()
        ftp.connect(self.host, self.port, timeout=10)
        ftp.login(user, password)
        return ftp


@pytest.fixture
def ftp_server(home, registry):
    registry.create("acme", "acme", "acme-pw")
    registry.create("globex", "globex", "globex-pw")
    server = RunningServer(home)
    yield server
    server.stop()
