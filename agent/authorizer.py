"""The logins: one per account, its password checked against its argon2id hash, and what it
may do in its root over FTP (list and download anywhere, upload at the top or into dryrun/,
delete what rules.deletable allows: exports, and reports if allowed). The SFTP door checks
passwords and counts failures here too."""

import functools
import logging
import os
import secrets
import threading
from typing import Any

from argon2 import PasswordHasher
from pyftpdlib.authorizers import AuthenticationFailed
from pyftpdlib.handlers import FTPHandler

from dropimport.accounts import Registry, verify_password, with_defaults

from . import metrics, rules
from .bans import Bans, Verdict

log = logging.getLogger(__name__)

#: List, change directory, download: anywhere in the account's root (its reports/, exports/).
READ_PERMS = "elr"


#: Upload: only at the top of the root, or into dryrun/ (never into reports/ or exports/).
UPLOAD_PERM = "w"


#: Append (APPE): checked as an upload, so that ftp_APPE answers it and counts it.
APPEND_PERM = "a"


#: Delete: files of exports/, and of reports/ for an account that may (rules.deletable).
DELETE_PERM = "d"


@functools.cache
def _decoy_hash() -> str:
    """A hash to check the passwords of unknown users against, so they take as long to refuse."""
    return PasswordHasher().hash(secrets.token_hex(16))


#: Password checks at once. An argon2id check takes 64 MiB: hundreds of clients logging in
#: together would otherwise take gigabytes; the others wait their turn.
PASSWORD_CHECKS = max(2, os.cpu_count() or 1)


class AccountAuthorizer:
    """pyftpdlib's authorizer interface over the account registry (argon2id hashes)."""

    def __init__(self, registry: Registry, password_checks: int = PASSWORD_CHECKS) -> None:
        self.registry = registry
        self.home = registry.home
        # ftp user -> its account document, as of its last login
        self._accounts: dict[str, dict[str, Any]] = {}
        self._checking = threading.BoundedSemaphore(password_checks)

    def password_matches(self, account: dict[str, Any] | None, password: str) -> bool:
        """Whether `password` is that of `account`; None (an unknown user) takes as long."""
        with self._checking:
            valid = verify_password(
                _decoy_hash() if account is None else account["password_hash"], password)
        return account is not None and valid

    def validate_authentication(self, username: str, password: str,
                                handler: FTPHandler) -> None:
        account = self.registry.by_ftp_user(username)
        if not self.password_matches(account, password) or account is None:
            raise AuthenticationFailed("Authentication failed.")
        self._accounts[username] = with_defaults(account)

    def account(self, username: str) -> dict[str, Any]:
        """The account document of a logged-in user, with the defaults of its limits."""
        return self._accounts[username]

    def refresh(self, username: str, account: dict[str, Any]) -> dict[str, Any]:
        """Take `account`, read again, as the document of the logged-in `username`."""
        self._accounts[username] = with_defaults(account)
        return self._accounts[username]

    def get_home_dir(self, username: str) -> str:
        return str(self.home.ftp_root(self.account(username)["name"]))

    def has_user(self, username: str) -> bool:
        return self.registry.by_ftp_user(username) is not None

    def has_perm(self, username: str, perm: str, path: str | None = None) -> bool:
        if perm in READ_PERMS:
            return True
        if path is None:
            return False
        if perm in (UPLOAD_PERM, APPEND_PERM):
            return rules.preview_of(self.home, self.account(username)["name"], path) is not None
        if perm == DELETE_PERM:
            return rules.deletable(self.home, self.account(username), path)
        return False

    def get_perms(self, username: str) -> str:
        # What the login may do somewhere in its root (MLST's facts): every account may delete
        # its exports; has_perm decides for each path.
        return READ_PERMS + UPLOAD_PERM + DELETE_PERM

    def get_msg_login(self, username: str) -> str:
        return "Welcome to dropimport. Upload your file here; reports/ holds the outcome."

    def get_msg_quit(self, username: str) -> str:
        return "Goodbye."

    def impersonate_user(self, username: str, password: str) -> None:
        pass

    def terminate_impersonation(self, username: str) -> None:
        pass


def login_failed(bans: Bans, address: str, user: str, protocol: str) -> Verdict:
    """Count a failed login of `user` from `address` over either door, in one count for both,
    and log the ban or the slow-down it brings on."""
    verdict = bans.failed(address, user)
    if verdict.ban:
        metrics.BANS.inc()
        log.warning(
            "address %s banned for %d s: %d failed logins within %d s, the last as user %r (%s)",
            address, verdict.ban, bans.threshold, bans.window, user, protocol,
        )
    if verdict.user_slowed:
        log.warning(
            "user %r: over %d failed logins within %d s; further failures are answered "
            "after %g s, the account stays open (last from %s, %s)",
            user, bans.threshold, bans.window, verdict.delay, address, protocol,
        )
    return verdict
