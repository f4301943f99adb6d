"""The FTP server: one login and one home per account, uploads handed over only when complete.

A STOR is written under `staging/`, outside every FTP root, and renamed into `incoming/` by
`on_file_received`; an aborted transfer is deleted by `on_incomplete_file_received`. Each
connection runs in its own thread (ThreadedFTPServer), so the slow password hash of one login
never holds up another session.
"""

import contextlib
import logging
import os
import secrets

from pyftpdlib.authorizers import AuthenticationFailed
from pyftpdlib.handlers import FTPHandler
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


class UploadHandler(FTPHandler):
    """Writes each upload under a staging name and hands it over only when complete."""

    banner = "dropimport ready."
    # Configured per server by `serve` (see make_handler); never mutated in place.
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


def make_server(settings):
    """A ThreadedFTPServer listening on the configured address, ready to serve_forever()."""
    registry = Registry(settings.home)
    handler = type("ConfiguredUploadHandler", (UploadHandler,), {
        "authorizer": AccountAuthorizer(registry),
        "home": settings.home,
        "passive_ports": settings.ftp_passive_ports,
        "masquerade_address": settings.ftp_masquerade_address,
    })
    return ThreadedFTPServer((settings.ftp_host, settings.ftp_port), handler)
