"""Helpers for the tests' FTP clients and servers."""

import threading


def logged_in(ftp, user, password):
    """`ftp` (connected) after logging in as `user`; closed if the login fails."""
    try:
        ftp.login(user, password)
    except Exception:
        ftp.close()
        raise
    return ftp


class Serving:
    """A pyftpdlib server served by a thread of its own until `stop()`."""

    def __init__(self, server, name):
        self.server = server
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=name)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            self.server.serve_forever(timeout=0.05, blocking=False, handle_exit=False)
        self.server.close_all()

    def stop(self):
        self._stop.set()
        self._thread.join()
