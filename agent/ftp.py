"""The FTP server: one login and one home per account, uploads handed over only when complete.

A STOR is written under `staging/`, outside every FTP root, and renamed into `incoming/` by
`on_file_received`; an aborted transfer is deleted by `on_incomplete_file_received`, and what a
crash left in `staging/` is deleted at start. A full disk answers 452 (an exceeded quota 552), so
the client knows to try again later. Each connection runs in its own thread
(ThreadedFTPServer), so the slow password hash of one login never holds up another session.
"""

import contextlib
import errno
import logging
import os
import secrets
import sys

from pyftpdlib.authorizers import AuthenticationFailed
from pyftpdlib.handlers import DTPHandler, FTPHandler
from pyftpdlib.log import logger as pyftpdlib_log
from pyftpdlib.servers import ThreadedFTPServer

from schemas.accounts import Registry, verify_password

from . import incoming

log = logging.getLogger(__name__)

#: List, change directory, download: anywhere in the account's root (its reports/).
READ_PERMS = "elr"
#: Upload: only at the top of the root.
UPLOAD_PERM = "w"


class AccountAuthorizer:
    """pyftpdlib's authorizer interface over the account registry (argon2id hashes)."""

    def __init__(self, registry):
        self.registry = registry
        self.home = registry.home
        self._accounts = {}  # ftp user -> account name, filled on successful logins

    def validate_authentication(self, username, password, handler):
        account = self.registry.by_ftp_user(username)
        if account is None or not verify_password(account["password_hash"], password):
            raise AuthenticationFailed("Authentication failed.")
        self._accounts[username] = account["name"]

    def account_of(self, username):
        return self._accounts[username]

    def get_home_dir(self, username):
        return str(self.home.ftp_root(self.account_of(username)))

    def has_user(self, username):
        return self.registry.by_ftp_user(username) is not None

    def has_perm(self, username, perm, path=None):
        if perm in READ_PERMS:
            return True
        if perm == UPLOAD_PERM and path is not None:
            home = os.path.realpath(self.get_home_dir(username))
            return os.path.realpath(os.path.dirname(path)) == home
        return False

    def get_perms(self, username):
        return READ_PERMS + UPLOAD_PERM

    def get_msg_login(self, username):
        return "Welcome to dropimport. Upload your file here; reports/ holds the outcome."

    def get_msg_quit(self, username):
        return "Goodbye."

    def impersonate_user(self, username, password):
        pass

    def terminate_impersonation(self, username):
        pass


#: Replies to an upload that could not be written for lack of space (RFC 959).
NO_SPACE_REPLIES = {
    errno.ENOSPC: "452 Insufficient storage space; upload the file again later.",
    errno.EDQUOT: "552 Exceeded storage allocation; upload the file again later.",
}


class _Dropped:
    """The upload's file once the disk is full: the rest of the data is read and dropped."""

    closed = False

    def __init__(self, name):
        self.name = name

    def write(self, data):
        pass

    def flush(self):
        pass

    def close(self):
        self.closed = True


class UploadDTPHandler(DTPHandler):
    """Answers an upload the disk has no room for with 452 (552 over quota), not 426.

    The staging file is removed at once, freeing the space for other uploads; the rest of the
    data is read and dropped, so that the client gets the reply rather than a reset connection.
    """

    _refusal = None

    def handle_error(self):
        if not (self.receive and self._refusal is None and self._refuse(sys.exc_info()[1])):
            super().handle_error()

    def handle_close(self):
        if self.receive and not self._closed and self._refusal is None:
            try:
                self.file_obj.flush()  # the last buffered bytes may not fit either
            except OSError as error:
                if not self._refuse(error):
                    raise
        if self._refusal is not None and not self._closed:
            self._resp = (self._refusal, pyftpdlib_log.warning)
            self.close()  # not finished: on_incomplete_file_received
            return
        super().handle_close()

    def _refuse(self, error):
        """Switch to dropping the upload if `error` is a lack of space; return whether it was."""
        # pyftpdlib wraps a failed write in an OSError of its own, raised from the original.
        code = getattr(error, "errno", None) or getattr(error.__cause__, "errno", None)
        if code not in NO_SPACE_REPLIES:
            return False
        self._refusal = NO_SPACE_REPLIES[code]
        name = self.file_obj.name
        log.error("upload %s refused with %s: %s", name, self._refusal[:3], os.strerror(code))
        with contextlib.suppress(OSError):  # closing flushes, which fails again
            self.file_obj.close()
        _discard(name)
        self.file_obj = _Dropped(name)
        return True


class UploadHandler(FTPHandler):
    """Writes each upload under a staging name and hands it over only when complete."""

    banner = "dropimport ready."
    dtp_handler = UploadDTPHandler
    # Configured per server by make_server; never mutated in place.
    home = None

    def on_connect(self):
        self._staged = {}  # staging path -> (account, file name)

    def ftp_STOR(self, file, mode="w"):
        if "a" in mode or self._restart_position:
            self._restart_position = 0
            self.respond("550 Resuming an upload is not supported; upload the whole file again.")
            return None
        account = self.authorizer.account_of(self.username)
        name = os.path.basename(file)
        self.home.staging.mkdir(parents=True, exist_ok=True)
        staging = str(self.home.staging / f"{account}.{secrets.token_hex(8)}.part")
        self._staged[staging] = (account, name)
        return super().ftp_STOR(staging, mode)

    def ftp_APPE(self, file):
        self.respond("550 Appending is not supported; upload the whole file again.")

    def ftp_STOU(self, line):
        self.respond("550 Unique names are not supported; upload under the expected name.")

    def on_file_received(self, file):
        account, name = self._staged.pop(file)
        size = os.path.getsize(file)
        try:
            arrival = incoming.deliver(self.home, account, name, file)
        except OSError:
            # The client already has its 226; the staged file stays for an operator to see.
            log.exception("could not hand over upload %s of account %s", name, account)
            return
        log.info(
            "upload received: account %s, file %s, %d bytes, from %s, import %s",
            account, name, size, self.remote_ip, arrival.import_id,
        )

    def on_incomplete_file_received(self, file):
        account, name = self._staged.pop(file, (None, None))
        log.warning("upload of %s by account %s incomplete; discarded", name, account)
        _discard(file)

    def on_disconnect(self):
        for staging in self._staged:
            _discard(staging)


def _discard(path):
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def clear_staging(home):
    """Delete the uploads a stop or a crash cut: at start, no upload can be in progress."""
    if not home.staging.exists():
        return
    for path in sorted(home.staging.iterdir()):
        log.warning("removing %s: an upload cut short when the agent stopped", path.name)
        _discard(path)


def make_server(settings):
    """A ThreadedFTPServer on the configured address, ready to serve_forever(); staging cleared."""
    clear_staging(settings.home)
    registry = Registry(settings.home)
    handler = type("ConfiguredUploadHandler", (UploadHandler,), {
        "authorizer": AccountAuthorizer(registry),
        "home": settings.home,
        "passive_ports": settings.ftp_passive_ports,
        "masquerade_address": settings.ftp_masquerade_address,
    })
    return ThreadedFTPServer((settings.ftp_host, settings.ftp_port), handler)
