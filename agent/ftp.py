"""The FTP server: one login and one home per account, uploads handed over only when complete.

A STOR is written under the agent's folder of `staging/` (staging.py), outside every FTP root,
and renamed into `incoming/` before the client is told it arrived (226); an aborted transfer is
deleted by `on_incomplete_file_received`, and what the crash of an agent left in `staging/` is
deleted by the next agent to start. Each connection runs in its own thread
(ThreadedFTPServer), so the slow password hash of one login never holds up another session.

What a login may do, and the replies to what it may not:
- see, list and download its own root only (its `reports/` and `exports/`): `..`, absolute
  paths and symbolic links that lead out of it are refused (550); SITE commands are not
  understood (500), but for SITE CHMOD, which clients send after an upload, answered 200 and
  ignored; a data connection goes to the client's own address only (PORT/EPRT to another
  host: 501);
- upload at the top of its root, or into its dryrun/ to preview (elsewhere, exports/ too,
  550), under a name one of its templates expects (otherwise 553, naming the files expected),
  at most `uploads_per_hour` files an hour (then 450), each at most `max_file_size` bytes
  (beyond it the transfer is cut with 552 and the part received removed); a full disk
  answers 452 (an exceeded quota 552), to try again later;
- delete files of `exports/`, and of `reports/` if its account has `can_delete_reports`
  (rules.deletable; otherwise 550).

Failed logins are answered late, and too many from one address ban it (bans.py): a banned
address is answered 421 at connection, and its connection closed. FTPS is explicit (AUTH TLS,
RFC 4217): with DROPIMPORT_FTP_TLS=required, USER and PASS before AUTH TLS are refused with 550,
PROT C with 534, and a data connection before PROT P with 550.
"""

import contextlib
import logging
import os
import socket
from typing import Any, BinaryIO, NoReturn

from pyftpdlib.exceptions import FilesystemError
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
from pyftpdlib.ioloop import IOLoop
from pyftpdlib.servers import ThreadedFTPServer

from dropimport import logs
from dropimport.accounts import Registry
from schemas.settings import Home, Settings

from . import incoming, metrics, rules, staging, tls
from .authorizer import AccountAuthorizer, login_failed
from .bans import Bans
from .transfer import NO_UPLOAD, TLSUploadDTPHandler, Upload, UploadDTPHandler, discard

log = logging.getLogger(__name__)

#: REST then STOR, and APPE (curl -C): a file is only ever taken whole.
RESUME_REPLY = "550 Resuming an upload is not supported; upload the whole file again."


BANNED_REPLY = "421 Too many failed logins from your address; try again later."


class AccountFS(AbstractedFS):
    """An account's FTP root, whose listings never show where a symbolic link points.

    pyftpdlib already refuses every path whose real path leads out of the root.
    """

    def readlink(self, path: str) -> NoReturn:
        raise FilesystemError("the target of a link is not shown")


def _allowed(commands: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
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
    # Configured per server by make_server; never mutated in place. None only on this base,
    # which is never instantiated: typed as every configured handler has them.
    home: Home = None  # type: ignore[assignment]
    registry: Registry = None  # type: ignore[assignment]
    bans: Bans = None  # type: ignore[assignment]
    uploads: rules.UploadRate = None  # type: ignore[assignment]
    _restart_position: int  # pyftpdlib's (REST), which it does not annotate

    def __init__(self, conn: socket.socket, server: "UploadServer",
                 ioloop: IOLoop | None = None) -> None:
        # Before pyftpdlib's __init__: a connection refused before on_connect (too many from
        # its address) still gets on_disconnect.
        self._staged: dict[str, Upload] = {}  # staging path -> its Upload
        self.account: dict[str, Any] | None = None
        self._session_counted = False
        super().__init__(conn, server, ioloop)

    def staged(self, path: str) -> Upload:
        """The Upload being written to `path`."""
        return self._staged.get(path, NO_UPLOAD)

    def pre_process_command(self, line: str, cmd: str, arg: str) -> None:
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

    def _still_allowed(self) -> bool:
        """Read the account again before each command: its removal, a new password or new
        rights apply to the sessions already open, at their next command."""
        assert self.account is not None  # a logged-in session's
        account = self.registry.by_ftp_user(self.username)
        if account is None or account["password_hash"] != self.account["password_hash"]:
            log.warning("session of user %r closed: its account was removed or its password "
                        "changed", self.username)
            self.respond("530 This login was changed or removed; log in again.")
            self.close_when_done()
            return False
        self.account = self.authorizer.refresh(self.username, account)
        return True

    def on_connect(self) -> None:
        self._session_counted = True
        metrics.SESSIONS.inc()

    def on_login(self, username: str) -> None:
        self.account = self.authorizer.account(username)
        # The session has a thread of its own: every later line of it names the account.
        logs.bind(account=self.account["name"], protocol="ftp")
        self.home.make_root(self.account["name"])  # dryrun/ of an account made before it

    def ftp_PASS(self, line: str) -> None:
        if self.bans.banned(self.remote_ip):
            # Failures on other connections from this address brought the ban on.
            metrics.CONNECTIONS_REFUSED.labels("banned").inc()
            self.respond(BANNED_REPLY)
            self.close_when_done()
            return
        super().ftp_PASS(line)

    def handle_auth_failed(self, msg: str, password: str) -> None:
        verdict = login_failed(self.bans, self.remote_ip, self.username, "ftp")
        metrics.LOGIN_FAILURES.inc()
        self.auth_failed_timeout = verdict.delay  # of this connection only
        super().handle_auth_failed(msg, password)

    def ftp_STOR(self, file: str, mode: str = "w") -> str | None:
        if "a" in mode or self._restart_position:
            self._restart_position = 0
            metrics.REFUSED.labels("ftp", "resume").inc()
            self.respond(RESUME_REPLY)
            return None
        assert self.account is not None  # STOR needs a login
        account = self.account["name"]
        name = os.path.basename(file)
        with logs.context(file=name):
            refusal = self._name_refusal(account, name) or self._rate_refusal(account)
        if refusal:
            self.respond(refusal)
            return None
        preview = rules.preview_of(self.home, account, file)
        assert preview is not None  # has_perm allowed the folder
        path = str(staging.own(self.home).part(account))
        self._staged[path] = Upload(account, name, preview=preview)
        return super().ftp_STOR(path, mode)

    def _name_refusal(self, account: str, name: str) -> str | None:
        """The 553 reply if no template of `account` expects a file named `name`."""
        refusal = rules.name_refusal(self.registry, account, name)
        if refusal is None:
            return None
        metrics.REFUSED.labels("ftp", "name").inc()
        log.info("upload of %r by account %s refused: no template expects it", name, account)
        return "553 " + refusal

    def _rate_refusal(self, account: str) -> str | None:
        """The 450 reply if `account` already uploaded its files of the hour."""
        assert self.account is not None  # STOR needs a login
        refusal = rules.rate_refusal(self.uploads, account, self.account["uploads_per_hour"],
                                     "ftp")
        return None if refusal is None else "450 " + refusal

    def ftp_APPE(self, file: str) -> None:
        metrics.REFUSED.labels("ftp", "resume").inc()
        self.respond(RESUME_REPLY)

    def ftp_STOU(self, line: str) -> None:
        self.respond("550 Unique names are not supported; upload under the expected name.")

    def hand_over(self, file_obj: BinaryIO) -> None:
        """Close the complete upload written to `file_obj` and hand it into incoming/,
        durably; OSError if it could not be (the client is then told to send it again)."""
        upload = self._staged[file_obj.name]
        assert upload.account is not None and upload.file is not None  # staged by ftp_STOR
        with logs.context(file=upload.file):
            try:
                file_obj.close()
                upload.size = os.path.getsize(file_obj.name)
                upload.arrival = incoming.deliver(self.home, upload.account, upload.file,
                                                  file_obj.name, upload.preview)
            except OSError:
                log.exception("could not hand over upload %s of account %s", upload.file,
                              upload.account)
                raise

    def on_file_received(self, file: str) -> None:
        upload = self._staged.pop(file)
        assert upload.arrival is not None  # received: hand_over delivered it
        metrics.UPLOADS.labels("ftp").inc()
        metrics.UPLOAD_BYTES.labels("ftp").inc(upload.size)
        with logs.context(file=upload.file):
            log.info(
                "upload received: account %s, file %s, %d bytes, from %s, import %s",
                upload.account, upload.file, upload.size, self.remote_ip,
                upload.arrival.import_id, extra={"import_id": upload.arrival.import_id},
            )

    def on_incomplete_file_received(self, file: str) -> None:
        upload = self._staged.pop(file, NO_UPLOAD)
        account, name = upload.account, upload.file
        if os.path.exists(file):  # not already refused (and removed) for its size or space
            metrics.REFUSED.labels("ftp", "incomplete").inc()
            with logs.context(file=name):
                log.warning("upload of %s by account %s incomplete; discarded", name, account)
        discard(file)

    def on_disconnect(self) -> None:
        if self._session_counted:
            metrics.SESSIONS.dec()
        for path in self._staged:
            discard(path)


class TLSUploadHandler(TLS_FTPHandler, UploadHandler):
    """UploadHandler with explicit FTPS: AUTH TLS, PBSZ and PROT."""

    dtp_handler = TLSUploadDTPHandler
    proto_cmds = _allowed(TLS_FTPHandler.proto_cmds)

    def ftp_PROT(self, line: str) -> None:
        if self.tls_data_required and line.upper() == "C":
            self.respond("534 Data connections must be protected here; use PROT P.")
            return
        super().ftp_PROT(line)


class UploadServer(ThreadedFTPServer):
    """A ThreadedFTPServer that turns a banned address away before it costs a thread.

    It also holds to `max_cons` connections: ThreadedFTPServer lets one more in.
    """

    def handle_accepted(self, sock: socket.socket,
                        addr: tuple[str, int] | tuple[str, int, int, int]) -> None:
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


def make_server(settings: Settings, bans: Bans | None = None) -> UploadServer:
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

