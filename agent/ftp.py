"""The FTP server: one login and one home per account, uploads handed over only when complete.

A STOR is written under the agent's folder of `staging/` (staging.py), outside every FTP root,
and renamed into `incoming/` before the client is told it arrived (226); an aborted transfer is
deleted by `on_incomplete_file_received`, and what the crash of an agent left in `staging/` is
deleted by the next agent to start. Each connection runs in its own thread
(ThreadedFTPServer), so the slow password hash of one login never holds up another session.

What a login may do, and the replies to what it may not:
- see, list and download its own root only (its `reports/`): `..`, absolute paths and symbolic
  links that lead out of it are refused (550); SITE commands are not understood (500), but for
  SITE CHMOD, which clients send after an upload, answered 200 and ignored; a data
  connection goes to the client's own address only (PORT/EPRT to another host: 501);
- upload at the top of its root (elsewhere 550), under a name one of its templates expects
  (otherwise 553, naming the files expected), at most `uploads_per_hour` files an hour (then
  450), each at most `max_file_size` bytes (beyond it the transfer is cut with 552 and the part
  received removed); a full disk answers 452 (an exceeded quota 552), to try again later;
- delete files of `reports/` only if its account has `can_delete_reports` (otherwise 550).

Failed logins are answered late, and too many from one address ban it (bans.py): a banned
address is answered 421 at connection, and its connection closed. FTPS is explicit (AUTH TLS,
RFC 4217): with DROPIMPORT_FTP_TLS=required, USER and PASS before AUTH TLS are refused with 550,
PROT C with 534, and a data connection before PROT P with 550.
"""

import contextlib
import errno
import functools
import logging
import os
import secrets
import sys
import threading
from dataclasses import dataclass

from argon2 import PasswordHasher
from OpenSSL import SSL
from pyftpdlib.authorizers import AuthenticationFailed
from pyftpdlib.exceptions import FilesystemError
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import DTPHandler, FTPHandler, TLS_DTPHandler, TLS_FTPHandler
from pyftpdlib.log import logger as pyftpdlib_log
from pyftpdlib.servers import ThreadedFTPServer

from dropimport import logs
from dropimport.accounts import Registry, verify_password, with_defaults

from . import incoming, metrics, rules, staging, tls
from .bans import Bans

log = logging.getLogger(__name__)

#: List, change directory, download: anywhere in the account's root (its reports/).
READ_PERMS = "elr"
#: Upload: only at the top of the root.
UPLOAD_PERM = "w"
#: Append (APPE): checked as an upload, so that ftp_APPE answers it and counts it.
APPEND_PERM = "a"
#: Delete: files of reports/, for an account that may.
DELETE_PERM = "d"

#: REST then STOR, and APPE (curl -C): a file is only ever taken whole.
RESUME_REPLY = "550 Resuming an upload is not supported; upload the whole file again."
BANNED_REPLY = "421 Too many failed logins from your address; try again later."


@functools.cache
def _decoy_hash():
    """A hash to check the passwords of unknown users against, so they take as long to refuse."""
    return PasswordHasher().hash(secrets.token_hex(16))


#: Password checks at once. An argon2id check takes 64 MiB: hundreds of clients logging in
#: together would otherwise take gigabytes; the others wait their turn.
PASSWORD_CHECKS = max(2, os.cpu_count() or 1)


class AccountAuthorizer:
    """pyftpdlib's authorizer interface over the account registry (argon2id hashes)."""

    def __init__(self, registry, password_checks=PASSWORD_CHECKS):
        self.registry = registry
        self.home = registry.home
        self._accounts = {}  # ftp user -> its account document, as of its last login
        self._checking = threading.BoundedSemaphore(password_checks)

    def validate_authentication(self, username, password, handler):
        account = self.registry.by_ftp_user(username)
        with self._checking:
            valid = verify_password(
                _decoy_hash() if account is None else account["password_hash"], password)
        if account is None or not valid:
            raise AuthenticationFailed("Authentication failed.")
        self._accounts[username] = with_defaults(account)

    def account(self, username):
        """The account document of a logged-in user, with the defaults of its limits."""
        return self._accounts[username]

    def refresh(self, username, account):
        """Take `account`, read again, as the document of the logged-in `username`."""
        self._accounts[username] = with_defaults(account)
        return self._accounts[username]

    def get_home_dir(self, username):
        return str(self.home.ftp_root(self.account(username)["name"]))

    def has_user(self, username):
        return self.registry.by_ftp_user(username) is not None

    def has_perm(self, username, perm, path=None):
        if perm in READ_PERMS:
            return True
        if path is None:
            return False
        folder = os.path.realpath(os.path.dirname(path))
        if perm in (UPLOAD_PERM, APPEND_PERM):
            return folder == os.path.realpath(self.get_home_dir(username))
        if perm == DELETE_PERM:
            account = self.account(username)
            reports = os.path.realpath(self.home.reports(account["name"]))
            return account["can_delete_reports"] and folder == reports and os.path.isfile(path)
        return False

    def get_perms(self, username):
        delete = DELETE_PERM if self.account(username)["can_delete_reports"] else ""
        return READ_PERMS + UPLOAD_PERM + delete

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


@dataclass
class Upload:
    """An upload being written under staging/: whose, under which name; once handed over,
    its size and its Arrival in incoming/."""

    account: str | None
    file: str | None
    size: int = 0
    arrival: incoming.Arrival | None = None


NO_UPLOAD = Upload(None, None)

#: A complete upload that could not be handed over: the client must send it again.
HAND_OVER_FAILED_REPLY = "451 The file could not be stored; upload it again."
#: An upload whose data connection was reset (TCP RST) before its end: cut, whatever arrived.
RESET_REPLY = ("426 The data connection was reset before the end of the file; nothing "
               "kept: upload the whole file again.")


def _reset(error):
    """Whether `error`, being handled as the data connection closes, says it was reset.

    A TLS connection closed without its close_notify but with a clean TCP close ("Unexpected
    EOF") ends the file, as in vsftpd by default (strict_ssl_read_eof): few clients send it.
    """
    if isinstance(error, OSError):
        return True
    if isinstance(error, SSL.SysCallError):
        return error.args[0] != -1
    return False


class FileTooLarge(OSError):
    """An upload grew beyond the largest file its account may upload."""


class _Capped:
    """The upload's file, refusing to grow beyond `limit` bytes."""

    def __init__(self, file, limit):
        self._file = file
        self._limit = limit
        self._size = 0

    def __getattr__(self, name):  # name, closed, flush, close: those of the file
        return getattr(self._file, name)

    def write(self, data):
        self._size += len(data)
        if self._size > self._limit:
            raise FileTooLarge(errno.EFBIG, f"larger than {self._limit} bytes")
        return self._file.write(data)


class _Dropped:
    """The upload's file once refused: what else comes is read and dropped, up to `budget`."""

    closed = False

    def __init__(self, name, budget=None):
        self.name = name
        self._budget = budget

    def write(self, data):
        if self._budget is not None:
            self._budget -= len(data)
            if self._budget < 0:
                raise OSError(errno.EFBIG, "still sending long after the refusal")

    def flush(self):
        pass

    def close(self):
        self.closed = True


class UploadDTPHandler(DTPHandler):
    """Refuses an upload while its bytes arrive, with a reply rather than a bare 426.

    Larger than its account allows: 552. No room on the disk: 452 (552 over quota). Either way
    the staging file is removed at once, freeing its space for other uploads, and the rest of
    the data is read and dropped, so that the client gets the reply rather than a reset
    connection; but a client that goes on sending more than `drain_limit` bytes beyond its
    account's largest file gets the reply at once, and its data connection is closed.
    """

    drain_limit = 64 * 2**20
    _refusal = None

    def enable_receiving(self, type, cmd):
        super().enable_receiving(type, cmd)
        self.file_obj = _Capped(self.file_obj, self.cmd_channel.account["max_file_size"])

    def handle_error(self):
        if not self._refused(sys.exc_info()[1]):
            super().handle_error()

    def handle_close(self):
        # Called at the client's EOF, and by recv() when the connection was reset: then the
        # error is still being handled, and the upload is cut, whatever the bytes received.
        if self.receive and not self._closed and _reset(sys.exc_info()[1]):
            self._resp = (self._refusal or RESET_REPLY, pyftpdlib_log.warning)
            self.close()  # not finished: on_incomplete_file_received
            return
        if self.receive and not self._closed and self._refusal is None:
            try:
                self.file_obj.flush()  # the last buffered bytes may not fit either
            except OSError as error:
                if not self._refused(error):
                    raise
        if self._refusal is not None and not self._closed:
            self._resp = (self._refusal, pyftpdlib_log.warning)
            self.close()  # not finished: on_incomplete_file_received
            return
        super().handle_close()

    def close(self):
        # Before pyftpdlib's close(), which replies 226 at once: the client may count its
        # file as delivered only once it is in incoming/, where no restart can lose it.
        finished = self.receive and self.transfer_finished and self._refusal is None
        if finished and not self._closed and not self.file_obj.closed:
            try:
                self.cmd_channel.hand_over(self.file_obj)
            except OSError as error:
                self.transfer_finished = False  # on_incomplete_file_received: discarded
                reply = NO_SPACE_REPLIES.get(error.errno, HAND_OVER_FAILED_REPLY)
                self._resp = (reply, pyftpdlib_log.warning)
        super().close()

    def _refused(self, error):
        """Refuse the upload if `error` says it cannot be kept; return whether it did."""
        if not self.receive:
            return False
        if self._refusal is not None:  # too much data after the refusal: answer and hang up
            self.handle_close()
            return True
        # pyftpdlib wraps a failed write in an OSError of its own, raised from the original.
        error = error.__cause__ or error
        if isinstance(error, FileTooLarge):
            limit = self.cmd_channel.account["max_file_size"]
            self._refuse(f"552 Exceeded the largest file this account may upload "
                         f"({limit} bytes); transfer aborted.", "size", error.strerror,
                         log.warning, self.drain_limit)
            return True
        if getattr(error, "errno", None) in NO_SPACE_REPLIES:
            self._refuse(NO_SPACE_REPLIES[error.errno], "space", os.strerror(error.errno),
                         log.error)
            return True
        return False

    def _refuse(self, reply, reason, why, logfun, budget=None):
        """Answer `reply` when the transfer ends; remove the file, drop what else comes."""
        self._refusal = reply
        name = self.file_obj.name
        upload = self.cmd_channel.staged(name)
        account, file = upload.account, upload.file
        metrics.REFUSED.labels(reason).inc()
        with logs.context(file=file):
            logfun("upload of %s by account %s refused with %s: %s", file, account, reply[:3],
                   why)
        with contextlib.suppress(OSError):  # closing flushes, which may fail again
            self.file_obj.close()
        _discard(name)
        self.file_obj = _Dropped(name, budget)


class TLSUploadDTPHandler(TLS_DTPHandler, UploadDTPHandler):
    """UploadDTPHandler over a protected data connection (PROT P)."""

    def handle_error(self):
        # The TLS layer's handle_error comes first in the MRO; a refusal must be seen before it.
        if not self._refused(sys.exc_info()[1]):
            super().handle_error()


class AccountFS(AbstractedFS):
    """An account's FTP root, whose listings never show where a symbolic link points.

    pyftpdlib already refuses every path whose real path leads out of the root.
    """

    def readlink(self, path):
        raise FilesystemError("the target of a link is not shown")


def _allowed(commands):
    """The commands a login may send: all but SITE and its subcommands (CHMOD, HELP)."""
    return {name: spec for name, spec in commands.items() if name.split()[0] != "SITE"}


class UploadHandler(FTPHandler):
    """Writes each upload under a staging name and hands it over only when complete.

    Refuses what the account may not upload (its name, its rate: every STOR admitted counts,
    complete or not) and passwords from a banned address; counts failed logins.
    """

    banner = "dropimport ready."
    dtp_handler = UploadDTPHandler
    abstracted_fs = AccountFS
    proto_cmds = _allowed(FTPHandler.proto_cmds)
    # Configured per server by make_server; never mutated in place.
    home = None
    registry = None
    bans = None
    uploads = None  # rules.UploadRate

    def __init__(self, conn, server, ioloop=None):
        # Before pyftpdlib's __init__: a connection refused before on_connect (too many from
        # its address) still gets on_disconnect.
        self._staged = {}  # staging path -> its Upload
        self.account = None
        self._session_counted = False
        super().__init__(conn, server, ioloop)

    def staged(self, path):
        """The Upload being written to `path`."""
        return self._staged.get(path, NO_UPLOAD)

    def pre_process_command(self, line, cmd, arg):
        if "\0" in line:  # no path may hold one: os calls would raise ValueError
            self.respond("501 A NUL character is not allowed in a command.")
            return
        if self.authenticated and not self._still_allowed():
            return
        if self.authenticated and cmd == "SITE" and arg.split(" ")[0].upper() == "CHMOD":
            # Sent by lftp's mirror -R, FileZilla and WinSCP after an upload; an error would
            # show as a failure to the customer, and permissions are the server's alone.
            self.respond("200 SITE CHMOD ignored: nothing changed.")
            return
        super().pre_process_command(line, cmd, arg)

    def _still_allowed(self):
        """Read the account again before each command: its removal, a new password or new
        rights apply to the sessions already open, at their next command."""
        account = self.registry.by_ftp_user(self.username)
        if account is None or account["password_hash"] != self.account["password_hash"]:
            log.warning("session of user %r closed: its account was removed or its password "
                        "changed", self.username)
            self.respond("530 This login was changed or removed; log in again.")
            self.close_when_done()
            return False
        self.account = self.authorizer.refresh(self.username, account)
        return True

    def on_connect(self):
        self._session_counted = True
        metrics.SESSIONS.inc()

    def on_login(self, username):
        self.account = self.authorizer.account(username)
        # The session has a thread of its own: every later line of it names the account.
        logs.bind(account=self.account["name"])

    def ftp_PASS(self, line):
        if self.bans.banned(self.remote_ip):
            # Failures on other connections from this address brought the ban on.
            metrics.CONNECTIONS_REFUSED.labels("banned").inc()
            self.respond(BANNED_REPLY)
            self.close_when_done()
            return
        super().ftp_PASS(line)

    def handle_auth_failed(self, msg, password):
        verdict = self.bans.failed(self.remote_ip, self.username)
        metrics.LOGIN_FAILURES.inc()
        if verdict.ban:
            metrics.BANS.inc()
            log.warning(
                "address %s banned for %d s: %d failed logins within %d s, the last as user %r",
                self.remote_ip, verdict.ban, self.bans.threshold, self.bans.window, self.username,
            )
        if verdict.user_slowed:
            log.warning(
                "user %r: over %d failed logins within %d s; further failures are answered "
                "after %g s, the account stays open (last from %s)",
                self.username, self.bans.threshold, self.bans.window, verdict.delay,
                self.remote_ip,
            )
        self.auth_failed_timeout = verdict.delay  # of this connection only
        super().handle_auth_failed(msg, password)

    def ftp_STOR(self, file, mode="w"):
        if "a" in mode or self._restart_position:
            self._restart_position = 0
            metrics.REFUSED.labels("resume").inc()
            self.respond(RESUME_REPLY)
            return None
        account = self.account["name"]
        name = os.path.basename(file)
        with logs.context(file=name):
            refusal = self._name_refusal(account, name) or self._rate_refusal(account)
        if refusal:
            self.respond(refusal)
            return None
        path = str(staging.own(self.home).part(account))
        self._staged[path] = Upload(account, name)
        return super().ftp_STOR(path, mode)

    def _name_refusal(self, account, name):
        """The 553 reply if no template of `account` expects a file named `name`."""
        if self.registry.template(account, name) is not None:
            return None
        templates = self.registry.templates(account)
        if rules.is_expected(name, templates):
            return None
        metrics.REFUSED.labels("name").inc()
        log.info("upload of %r by account %s refused: no template expects it", name, account)
        return rules.refusal(name, templates)

    def _rate_refusal(self, account):
        """The 450 reply if `account` already uploaded its files of the hour."""
        limit = self.account["uploads_per_hour"]
        admission = self.uploads.admit(account, limit)
        if admission.admitted:
            return None
        metrics.REFUSED.labels("rate").inc()
        if admission.first_refusal:
            log.warning("account %s reached its %d uploads an hour: uploads refused for %d s",
                        account, limit, admission.retry_after)
        return admission.reply(limit)

    def ftp_APPE(self, file):
        metrics.REFUSED.labels("resume").inc()
        self.respond(RESUME_REPLY)

    def ftp_STOU(self, line):
        self.respond("550 Unique names are not supported; upload under the expected name.")

    def hand_over(self, file_obj):
        """Close the complete upload written to `file_obj` and hand it into incoming/,
        durably; OSError if it could not be (the client is then told to send it again)."""
        upload = self._staged[file_obj.name]
        with logs.context(file=upload.file):
            try:
                file_obj.close()
                upload.size = os.path.getsize(file_obj.name)
                upload.arrival = incoming.deliver(self.home, upload.account, upload.file,
                                                  file_obj.name)
            except OSError:
                log.exception("could not hand over upload %s of account %s", upload.file,
                              upload.account)
                raise

    def on_file_received(self, file):
        upload = self._staged.pop(file)
        metrics.UPLOADS.inc()
        metrics.UPLOAD_BYTES.inc(upload.size)
        with logs.context(file=upload.file):
            log.info(
                "upload received: account %s, file %s, %d bytes, from %s, import %s",
                upload.account, upload.file, upload.size, self.remote_ip,
                upload.arrival.import_id, extra={"import_id": upload.arrival.import_id},
            )

    def on_incomplete_file_received(self, file):
        upload = self._staged.pop(file, NO_UPLOAD)
        account, name = upload.account, upload.file
        if os.path.exists(file):  # not already refused (and removed) for its size or space
            metrics.REFUSED.labels("incomplete").inc()
            with logs.context(file=name):
                log.warning("upload of %s by account %s incomplete; discarded", name, account)
        _discard(file)

    def on_disconnect(self):
        if self._session_counted:
            metrics.SESSIONS.dec()
        for path in self._staged:
            _discard(path)


class TLSUploadHandler(TLS_FTPHandler, UploadHandler):
    """UploadHandler with explicit FTPS: AUTH TLS, PBSZ and PROT."""

    dtp_handler = TLSUploadDTPHandler
    proto_cmds = _allowed(TLS_FTPHandler.proto_cmds)

    def ftp_PROT(self, line):
        if self.tls_data_required and line.upper() == "C":
            self.respond("534 Data connections must be protected here; use PROT P.")
            return
        super().ftp_PROT(line)


class UploadServer(ThreadedFTPServer):
    """A ThreadedFTPServer that turns a banned address away before it costs a thread.

    It also holds to `max_cons` connections: ThreadedFTPServer lets one more in.
    """

    def handle_accepted(self, sock, addr):
        if self.handler.bans.banned(addr[0]):
            refusal = BANNED_REPLY  # the ban was logged when it began
            metrics.CONNECTIONS_REFUSED.labels("banned").inc()
        elif self.max_cons and self._map_len() >= self.max_cons:
            refusal = "421 Too many connections. Service temporarily unavailable."
            metrics.CONNECTIONS_REFUSED.labels("full").inc()
            log.warning("connection from %s refused: %d connections already", addr[0],
                        self.max_cons)
        else:
            super().handle_accepted(sock, addr)
            return
        with contextlib.suppress(OSError):
            sock.send(f"{refusal}\r\n".encode())
        sock.close()


def _discard(path):
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)


def make_server(settings, bans=None):
    """An UploadServer on the configured address, ready to serve_forever(); what agents
    that are gone left in staging/ cleared.

    Raises ValueError, in one line, when FTPS is on and its certificate or key cannot be used.
    `bans` replaces the failed-login policy made from the settings (tests shorten its delays).
    """
    base, tls_attributes = UploadHandler, {}
    if settings.ftp_tls != "off":
        required = settings.ftp_tls == "required"
        base, tls_attributes = TLSUploadHandler, {
            "ssl_context": tls.server_context(settings.ftp_tls_cert, settings.ftp_tls_key),
            "tls_control_required": required,
            "tls_data_required": required,
        }
    staging.own(settings.home)
    staging.clear_abandoned(settings.home)
    registry = Registry(settings.home)
    handler = type("ConfiguredUploadHandler", (base,), {
        **tls_attributes,
        "authorizer": AccountAuthorizer(registry),
        "home": settings.home,
        "registry": registry,
        "bans": bans if bans is not None else Bans.from_settings(settings),
        "uploads": rules.UploadRate(),
        "passive_ports": settings.ftp_passive_ports,
        "masquerade_address": settings.ftp_masquerade_address,
    })
    server = UploadServer((settings.ftp_host, settings.ftp_port), handler)
    server.max_cons = settings.ftp_max_connections
    server.max_cons_per_ip = settings.ftp_max_connections_per_ip
    return server
