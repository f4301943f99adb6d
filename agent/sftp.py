"""The SFTP server: a second door into the same incoming/, with the FTP door's guarantees.

asyncssh serves it on an event loop of its own, in a thread of the agent. A login is an
account's FTP user, by its password (argon2id, checked as over FTP) and/or one of its SSH
public keys, as the account's `sftp_auth` allows; its root is the account's FTP root. An upload
is written under the agent's staging/ folder and handed over to incoming/, fsynced, before
the reply to the client's close: a file is complete only when the client closes it. One left
open when the connection ends, written with a gap, or written under a temporary name and never
renamed, is discarded and counted as incomplete.

What a login may do:
- list and download in its root (its `reports/` and `exports/`); a path out of it (`..`, a
  link) is refused;
- upload at the top, or into `dryrun/` to preview (nowhere else: never into `exports/`), under
  a name one of its templates expects, or under a temporary name (`contacts.csv.filepart`,
  WinSCP's) renamed to such a name at the end; at most `uploads_per_hour` files an hour, each
  at most `max_file_size` bytes (the write that passes it is refused and the part removed);
- remove files of `exports/` (downloaded exports), and of `reports/` if its account
  `can_delete_reports` (rules.deletable).
Nothing else: no mkdir, rmdir, link, chmod or chown (the times and modes a client sets on the
file it is uploading, as scp -p and WinSCP do, are accepted and ignored: they are the server's).
Only the sftp subsystem is served: shell, exec, forwarding of ports, agent and X11 are refused.

Failed logins count with the FTP door's (authorizer.login_failed): one ban for both.
"""

import asyncio
import contextlib
import errno
import functools
import logging
import os
import threading
from pathlib import Path
from typing import Any

import asyncssh

from dropimport import logs
from dropimport.accounts import with_defaults
from schemas.settings import Home, Settings

from . import incoming, metrics, rules, staging
from .authorizer import AccountAuthorizer, login_failed
from .bans import Bans
from .transfer import discard

log = logging.getLogger(__name__)

#: Modern algorithms only: no SHA-1, no CBC, no small Diffie-Hellman groups.
KEX_ALGS = ["mlkem768x25519-sha256", "curve25519-sha256", "curve25519-sha256@libssh.org",
            "ecdh-sha2-nistp256", "ecdh-sha2-nistp384", "ecdh-sha2-nistp521",
            "diffie-hellman-group16-sha512", "diffie-hellman-group18-sha512",
            "diffie-hellman-group-exchange-sha256"]
ENCRYPTION_ALGS = ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com",
                   "chacha20-poly1305@openssh.com", "aes128-ctr", "aes192-ctr", "aes256-ctr"]
MAC_ALGS = ["hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com",
            "umac-128-etm@openssh.com", "hmac-sha2-256", "hmac-sha2-512"]
#: The signatures a client key may make: RSA with SHA-2 only (not ssh-rsa's SHA-1).
SIGNATURE_ALGS = ["ssh-ed25519", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384",
                  "ecdsa-sha2-nistp521", "rsa-sha2-512", "rsa-sha2-256",
                  "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com"]

#: The endings of a temporary upload name, renamed to the expected name once complete.
TEMPORARY = (".filepart", ".part", ".partial", ".tmp")

#: Writes held beyond a gap in one file: clients keep tens to hundreds in flight; more is a
#: client filling the server's memory with ranges that never join.
MAX_AHEAD = 4096

#: Seconds between keepalives, and those unanswered before a silent client is dropped: a
#: connection cut without a word ends its upload within minutes, not at TCP's timeout.
KEEPALIVE_SECONDS = 60
KEEPALIVE_COUNT = 3

_WRITE_FLAGS = (asyncssh.FXF_WRITE | asyncssh.FXF_APPEND | asyncssh.FXF_CREAT
                | asyncssh.FXF_TRUNC)

BANNED = "too many failed logins from your address; try again later"


def host_keys(settings: Settings) -> list[asyncssh.SSHKey]:
    """The server's host keys: those of DROPIMPORT_SFTP_HOST_KEY (several, comma-separated: an
    RSA key beside the ed25519 one, for clients without ed25519), or the home's, made once
    (0600).

    They must never change, or every customer's client refuses to connect again: the home's is
    made only where none is, and several agents sharing the home share it.
    ValueError, in one line, when a key cannot be read.
    """
    paths = settings.sftp_host_keys or (settings.home.ssh_host_key,)
    if not settings.sftp_host_keys and not paths[0].exists():
        _make_host_key(paths[0])
    keys = []
    for path in paths:
        try:
            keys.append(asyncssh.read_private_key(path))
        except (OSError, asyncssh.KeyImportError) as error:
            raise ValueError(f"DROPIMPORT_SFTP_HOST_KEY: cannot read the host key {path}: "
                             f"{getattr(error, 'strerror', None) or error}") from None
    return keys


def _make_host_key(path: Path) -> None:
    key = asyncssh.generate_private_key("ssh-ed25519", comment="dropimport host key")
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(FileExistsError):  # another agent made it first: take it
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(key.export_private_key())
            file.flush()
            os.fsync(file.fileno())
        log.info("made the SFTP host key %s: %s", path, key.get_fingerprint())


def _temporary_of(name: str) -> str | None:
    """The name `name` is a temporary name of (`contacts.csv` for `contacts.csv.filepart`)."""
    for ending in TEMPORARY:
        if name.endswith(ending) and len(name) > len(ending):
            return name[:-len(ending)]
    return None


class _Upload:
    """A file being uploaded, written at the offsets the client sends under staging/."""

    def __init__(self, account: str, file: str, local: bytes, path: str, limit: int,
                 temporary: bool) -> None:
        self.account = account
        self.file = file  # the name it is uploaded under
        self.local = local  # where the client writes it, in its root
        self.path = path
        self.limit = limit
        self.temporary = temporary
        self.descriptor: int | None = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.refused: str | None = None  # why, once refused: later writes are refused too
        # The bytes written from 0 without a gap, and the writes beyond (start -> end): clients
        # send many writes at once, which may arrive in any order.
        self._extent = 0
        self._ahead: dict[int, int] = {}

    def fileno(self) -> int:  # fsync@openssh.com
        assert self.descriptor is not None
        return self.descriptor

    def write(self, offset: int, data: bytes) -> None:
        """Write `data` at `offset`; OverflowError when too many writes wait beyond a gap."""
        os.pwrite(self.fileno(), data, offset)
        end = offset + len(data)
        if offset > self._extent:
            if len(self._ahead) >= MAX_AHEAD:
                raise OverflowError(f"more than {MAX_AHEAD} writes beyond a gap")
            self._ahead[offset] = max(end, self._ahead.get(offset, 0))
            return
        self._extent = max(self._extent, end)
        while self._ahead:  # the writes this one joined
            joined = [start for start in self._ahead if start <= self._extent]
            if not joined:
                break
            for start in joined:
                self._extent = max(self._extent, self._ahead.pop(start))

    def gap(self) -> tuple[int, int] | None:
        """The first range of bytes never written, if any."""
        return (self._extent, min(self._ahead)) if self._ahead else None

    def close(self) -> None:
        if self.descriptor is not None:
            os.close(self.descriptor)
            self.descriptor = None


class Login(asyncssh.SSHServer):
    """One SSH connection: who it is, how it logged in; refused when banned or too many."""

    def __init__(self, door: "SFTPDoor") -> None:
        self.door = door
        self.address = "?"
        self.user = ""
        self.account: dict[str, Any] | None = None  # the document, with its defaults
        self.method: str | None = None  # password or publickey, once logged in
        self.key: str | None = None  # the fingerprint of the account's key it offered
        self.lost = False
        self._conn: asyncssh.SSHServerConnection | None = None
        self._counted = False
        self._password_valid = False
        self._password_failed = False
        self._keys_offered = False

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self._conn = conn
        self.address = conn.get_extra_info("peername", ("?",))[0]
        refusal = self.door.admit(self)
        if refusal:
            conn.disconnect(asyncssh.DISC_TOO_MANY_CONNECTIONS, refusal)
            return
        self._counted = True
        metrics.SFTP_SESSIONS.inc()

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self._counted:
            metrics.SFTP_SESSIONS.dec()
            self.door.forget(self)
        if self.method is None and self._keys_offered and not self._password_failed:
            # A connection that offered keys and never logged in: one failure, not one per key
            # (a client tries each of its keys in turn).
            metrics.SFTP_LOGIN_FAILURES.labels("publickey").inc()
            login_failed(self.door.bans, self.address, self.user, "sftp")

    def begin_auth(self, username: str) -> bool:
        self.user = username
        account = self.door.registry.by_ftp_user(username)
        self.account = with_defaults(account) if account else None
        return True

    def password_auth_supported(self) -> bool:
        # An unknown user is asked for both, as any: the reply tells nothing of accounts.
        return self.account is None or self.account["sftp_auth"] != "keys"

    def public_key_auth_supported(self) -> bool:
        return self.account is None or self.account["sftp_auth"] != "password"

    async def validate_password(self, username: str, password: str) -> bool:
        if self.door.bans.banned(self.address):
            self._banned()
            return False
        if await asyncio.to_thread(self.door.authorizer.password_matches, self.account,
                                   password):
            self._password_valid = True
            return True
        self._password_failed = True
        metrics.SFTP_LOGIN_FAILURES.labels("password").inc()
        verdict = login_failed(self.door.bans, self.address, username, "sftp")
        await asyncio.sleep(verdict.delay)
        if verdict.ban:
            self._banned()
        return False

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        if self.door.bans.banned(self.address):
            self._banned()
            return False
        # Asked first whether a key would do, then to check its signature: a public key is no
        # secret, so only auth_completed says it logged in.
        self._keys_offered = True
        fingerprint = key.get_fingerprint("sha256")
        if self.account and any(entry["fingerprint"] == fingerprint
                                for entry in self.account.get("ssh_keys", [])):
            self.key = fingerprint
            return True
        return False

    def auth_completed(self) -> None:
        assert self.account is not None  # logged in
        self.method = "password" if self._password_valid else "publickey"
        log.info("login of user %r (account %s) by %s from %s", self.user, self.account["name"],
                 self.method, self.address,
                 extra={"account": self.account["name"], "protocol": "sftp"})

    def _banned(self) -> None:
        metrics.SFTP_CONNECTIONS_REFUSED.labels("banned").inc()
        assert self._conn is not None
        self._conn.disconnect(asyncssh.DISC_NO_MORE_AUTH_METHODS_AVAILABLE, BANNED)

    def still_allowed(self) -> dict[str, Any] | None:
        """The account read again, or None if this login no longer holds: the account was
        removed, its password changed (a password login), its key removed (a key login) or its
        `sftp_auth` no longer allows the method."""
        assert self.account is not None  # logged in
        account = self.door.registry.by_ftp_user(self.user)
        if account is None:
            return None
        account = with_defaults(account)
        if self.method == "password":
            holds = account["password_hash"] == self.account["password_hash"] and \
                account["sftp_auth"] != "keys"
        else:
            holds = account["sftp_auth"] != "password" and any(
                entry["fingerprint"] == self.key for entry in account.get("ssh_keys", []))
        if not holds:
            return None
        self.account = account
        return account

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()


class AccountSFTP(asyncssh.SFTPServer):
    """The SFTP session of one login, in its account's root."""

    def __init__(self, chan: asyncssh.SSHServerChannel, door: "SFTPDoor") -> None:
        login = chan.get_connection().get_owner()
        assert isinstance(login, Login) and login.account is not None  # logged in
        self.login = login
        self.door = door
        self.name: str = login.account["name"]
        root = door.home.ftp_root(self.name)
        door.home.make_root(self.name)  # dryrun/ of an account made before it
        super().__init__(chan, chroot=os.fsencode(root))
        self._root = os.fsencode(os.path.realpath(root))
        self._uploads: dict[bytes, _Upload] = {}  # local path -> upload open or to rename

    def _context(self, file: str) -> contextlib.AbstractContextManager[None]:
        return logs.context(account=self.name, file=file, protocol="sftp")

    # Paths

    def map_path(self, path: bytes) -> bytes:
        """The local path, refused if it leads out of the root (`..` is already folded; a link
        is followed to where it leads)."""
        local = super().map_path(path)
        real = os.path.realpath(local)
        if real != self._root and not real.startswith(self._root + b"/"):
            raise asyncssh.SFTPPermissionDenied("this path leads out of your folder")
        return local

    def _preview_of(self, local: bytes) -> bool | None:
        """rules.preview_of the local path: None when no upload may go there."""
        return rules.preview_of(self.door.home, self.name, os.fsdecode(local))

    def _account(self) -> dict[str, Any]:
        """The account, read again: a removed account, a new password, a removed key apply to
        the sessions already open, at their next file operation."""
        account = self.login.still_allowed()
        if account is None:
            log.warning("SFTP session of user %r closed: its account, password or key was "
                        "changed or removed", self.login.user)
            # Once the refusal is sent: the client shows why.
            asyncio.get_running_loop().call_later(0.5, self.login.close)
            raise asyncssh.SFTPPermissionDenied("this login was changed or removed; log in again")
        return account

    # Files

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        account = self._account()
        local = self.map_path(path)
        if not pflags & _WRITE_FLAGS:
            return open(local, "rb")  # closed by close()
        name = os.fsdecode(os.path.basename(local))
        with self._context(name):
            if pflags & asyncssh.FXF_APPEND:
                metrics.REFUSED.labels("sftp", "resume").inc()
                raise asyncssh.SFTPOpUnsupported(
                    "resuming an upload is not supported; upload the whole file again")
            if self._preview_of(local) is None:
                raise asyncssh.SFTPPermissionDenied(rules.ELSEWHERE)
            refusal = rules.name_refusal(self.door.registry, self.name, name)
            final = _temporary_of(name)
            temporary = bool(refusal) and final is not None and \
                rules.name_refusal(self.door.registry, self.name, final) is None
            if refusal and not temporary:
                metrics.REFUSED.labels("sftp", "name").inc()
                log.info("upload of %r by account %s refused: no template expects it", name,
                         self.name)
                raise asyncssh.SFTPPermissionDenied(refusal)
            refusal = rules.rate_refusal(self.door.uploads, self.name,
                                         account["uploads_per_hour"], "sftp")
            if refusal:
                raise asyncssh.SFTPFailure(refusal)
            self._forget(local)  # the same name again in this session: the new one counts
            upload = _Upload(self.name, name, local,
                             str(staging.own(self.door.home).part(self.name)),
                             account["max_file_size"], temporary)
            self._uploads[local] = upload
            return upload

    def write(self, file_obj: object, offset: int, data: bytes) -> int:
        if not isinstance(file_obj, _Upload):
            raise asyncssh.SFTPPermissionDenied("this file was opened for reading")
        upload = file_obj
        if upload.refused or upload.descriptor is None:
            raise asyncssh.SFTPFailure(upload.refused or "this file was closed")
        if offset + len(data) > upload.limit:
            self._refuse(upload, "size", f"{upload.file} is larger than this account's limit "
                         f"of {upload.limit} bytes: nothing kept")
        try:
            upload.write(offset, data)
        except OverflowError as error:
            self._refuse(upload, "incomplete", f"{upload.file}: {error}: nothing kept")
        except OSError as error:
            if error.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            self._refuse(upload, "space", "the server has no space left for this file: "
                         "nothing kept; upload it again later")
        return len(data)

    def _refuse(self, upload: _Upload, reason: str, why: str) -> None:
        upload.refused = why
        upload.close()
        discard(upload.path)
        metrics.REFUSED.labels("sftp", reason).inc()
        with self._context(upload.file):
            log.warning("upload of %s by account %s refused: %s", upload.file, self.name, why)
        raise asyncssh.SFTPFailure(why)

    async def close(self, file_obj: object) -> None:
        if not isinstance(file_obj, _Upload):
            file_obj.close()  # type: ignore[attr-defined]
            return
        upload = file_obj
        upload.close()
        if upload.refused:
            raise asyncssh.SFTPFailure(upload.refused)
        if self._ending():
            # The session ended with the file open: asyncssh closes it for us.
            self._incomplete(upload, "the connection ended before the file was closed")
            return
        gap = upload.gap()
        if gap:
            self._refuse(upload, "incomplete", f"bytes {gap[0]} to {gap[1] - 1} of "
                         f"{upload.file} were never written: nothing kept")
        if upload.temporary:
            return  # kept until renamed to its name
        self._uploads = {p: u for p, u in self._uploads.items() if u is not upload}
        await self._hand_over(upload, upload.file, bool(self._preview_of(upload.local)))

    def _ending(self) -> bool:
        """Whether the session is ending: asyncssh then closes the files left open, with the
        same call as a client's close. The channel's end of input (a client's EOF) is only in
        its private state; test_sftp's tests of files left open fail if that changes."""
        return self.login.lost or self.channel.is_closing() or \
            getattr(self.channel, "_recv_state", "open") != "open"

    def fstat(self, file_obj: object) -> os.stat_result:
        if isinstance(file_obj, _Upload):
            return os.stat(file_obj.path)
        return super().fstat(file_obj)  # type: ignore[return-value]

    def stat(self, path: bytes) -> os.stat_result:
        local = self.map_path(path)
        upload = self._uploads.get(local)
        return os.stat(upload.path) if upload else os.stat(local)

    def lstat(self, path: bytes) -> os.stat_result:
        local = self.map_path(path)
        upload = self._uploads.get(local)
        return os.stat(upload.path) if upload else os.lstat(local)

    async def rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._account()
        old, new = self.map_path(oldpath), self.map_path(newpath)
        upload = self._uploads.get(old)
        if upload is None or not upload.temporary or upload.descriptor is not None:
            raise asyncssh.SFTPPermissionDenied(
                "only a file uploaded under a temporary name (contacts.csv.filepart) may be "
                "renamed, once written, to the name expected")
        name = os.fsdecode(os.path.basename(new))
        refusal = rules.name_refusal(self.door.registry, self.name, name)
        preview = self._preview_of(new)
        if preview is None or refusal:
            metrics.REFUSED.labels("sftp", "name").inc()
            raise asyncssh.SFTPPermissionDenied(refusal or rules.ELSEWHERE)
        del self._uploads[old]
        await self._hand_over(upload, name, preview)

    posix_rename = rename

    async def _hand_over(self, upload: _Upload, name: str, preview: bool) -> None:
        """Hand the complete `upload` into incoming/ as `name` (`preview`: from dryrun/),
        durably, before the reply."""
        with self._context(name):
            try:
                size = os.path.getsize(upload.path)
                arrival = await asyncio.to_thread(incoming.deliver, self.door.home,
                                                  self.name, name, upload.path, preview)
            except OSError:
                log.exception("could not hand over upload %s of account %s", name, self.name)
                discard(upload.path)
                raise asyncssh.SFTPFailure("the file could not be stored; upload it again")\
                    from None
            metrics.UPLOADS.labels("sftp").inc()
            metrics.UPLOAD_BYTES.labels("sftp").inc(size)
            log.info("upload received: account %s, file %s, %d bytes, from %s over SFTP, "
                     "import %s", self.name, name, size, self.login.address, arrival.import_id,
                     extra={"import_id": arrival.import_id})

    def _incomplete(self, upload: _Upload, why: str) -> None:
        upload.refused = f"{upload.file} was not kept: {why}"
        self._uploads = {p: u for p, u in self._uploads.items() if u is not upload}
        upload.close()
        discard(upload.path)
        metrics.REFUSED.labels("sftp", "incomplete").inc()
        with self._context(upload.file):
            log.warning("upload of %s by account %s incomplete (%s); discarded", upload.file,
                        self.name, why)

    def _forget(self, local: bytes) -> None:
        upload = self._uploads.pop(local, None)
        if upload is not None:
            self._incomplete(upload, "uploaded again under the same name")

    def exit(self) -> None:
        for upload in list(self._uploads.values()):
            self._incomplete(upload, "never renamed from its temporary name" if
                             upload.temporary and upload.descriptor is None else
                             "the connection ended before the file was closed")
        if not self.channel.is_closing():
            # As sshd says of its sftp-server's end: scp fails on a session without it.
            self.channel.exit(0)

    # What else a login may do, and may not

    def remove(self, path: bytes) -> None:
        account = self._account()
        local = self.map_path(path)
        if local in self._uploads:  # a client giving up its temporary upload
            self._incomplete(self._uploads[local], "removed by the client")
            return
        if not rules.deletable(self.door.home, account, os.fsdecode(local)):
            raise asyncssh.SFTPPermissionDenied(rules.UNDELETABLE)
        os.remove(local)

    def setstat(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        self.map_path(path)
        if any(value is not None for value in (attrs.size, attrs.uid, attrs.gid, attrs.owner,
                                                attrs.group, attrs.permissions)):
            raise asyncssh.SFTPPermissionDenied("sizes, permissions and owners are the "
                                                "server's to set")
        # Times alone (WinSCP sets them after an upload): accepted, and left as they are.

    lsetstat = setstat

    def fsetstat(self, file_obj: object, attrs: asyncssh.SFTPAttrs) -> None:
        """Accepted and ignored: what `scp -p` or `put -p` sets on the file it uploads."""

    def mkdir(self, path: bytes, attrs: asyncssh.SFTPAttrs) -> None:
        raise asyncssh.SFTPPermissionDenied("folders cannot be made here")

    def rmdir(self, path: bytes) -> None:
        raise asyncssh.SFTPPermissionDenied("folders cannot be removed here")

    def readlink(self, path: bytes) -> bytes:
        raise asyncssh.SFTPPermissionDenied("the target of a link is not shown")

    def symlink(self, oldpath: bytes, newpath: bytes) -> None:
        raise asyncssh.SFTPPermissionDenied("links cannot be made here")

    link = symlink


class SFTPDoor:
    """The SFTP server on DROPIMPORT_SFTP_HOST:PORT, on an event loop in a thread of its own.

    It shares the FTP door's authorizer (password checks), bans and upload rate: a client
    cannot double its attempts or its uploads by switching protocols.
    """

    def __init__(self, settings: Settings, authorizer: AccountAuthorizer, bans: Bans,
                 uploads: rules.UploadRate) -> None:
        self.settings = settings
        self.home: Home = settings.home
        self.registry = authorizer.registry
        self.authorizer = authorizer
        self.bans = bans
        self.uploads = uploads
        self.keys = host_keys(settings)
        self.address: tuple[str, int] = (settings.sftp_host, settings.sftp_port or 0)
        self._logins: set[Login] = set()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="sftp",
                                        daemon=True)
        self._acceptor: asyncssh.SSHAcceptor | None = None

    @property
    def fingerprints(self) -> list[str]:
        """`ssh-ed25519 SHA256:...` of each host key, to publish to customers."""
        return [f"{key.get_algorithm()} {key.get_fingerprint('sha256')}" for key in self.keys]

    def start(self) -> None:
        """Listen; OSError when the port cannot be had."""
        self._thread.start()
        try:
            self._acceptor = asyncio.run_coroutine_threadsafe(self._listen(),
                                                              self._loop).result()
        except BaseException:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            raise
        self.address = self._acceptor.sockets[0].getsockname()[:2]

    async def _listen(self) -> asyncssh.SSHAcceptor:
        staging.own(self.home)
        return await asyncssh.create_server(
            functools.partial(Login, self), self.settings.sftp_host, self.settings.sftp_port,
            server_host_keys=self.keys, kex_algs=KEX_ALGS, encryption_algs=ENCRYPTION_ALGS,
            mac_algs=MAC_ALGS, signature_algs=SIGNATURE_ALGS, compression_algs=["none"],
            sftp_factory=functools.partial(AccountSFTP, door=self), sftp_version=3,
            allow_scp=False, allow_pty=False, agent_forwarding=False, x11_forwarding=False,
            login_timeout=60, keepalive_interval=KEEPALIVE_SECONDS,
            keepalive_count_max=KEEPALIVE_COUNT, reuse_address=True)

    def admit(self, login: Login) -> str | None:
        """Why the connection of `login` is turned away (banned, too many), or None."""
        if self.bans.banned(login.address):
            metrics.SFTP_CONNECTIONS_REFUSED.labels("banned").inc()
            return BANNED
        with self._lock:
            from_address = sum(1 for other in self._logins if other.address == login.address)
            if len(self._logins) >= self.settings.ftp_max_connections or \
                    from_address >= self.settings.ftp_max_connections_per_ip:
                metrics.SFTP_CONNECTIONS_REFUSED.labels("full").inc()
                log.warning("SFTP connection from %s refused: too many connections",
                            login.address)
                return "too many connections; try again later"
            self._logins.add(login)
        return None

    def forget(self, login: Login) -> None:
        with self._lock:
            self._logins.discard(login)

    def stop(self) -> None:
        """Stop listening, end every connection (their open uploads are discarded)."""
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        self._loop.close()

    async def _close(self) -> None:
        if self._acceptor is not None:
            self._acceptor.close()
            await self._acceptor.wait_closed()
        with self._lock:
            logins = list(self._logins)
        for login in logins:
            login.close()
        # The sessions' clean-up (discarding what they were writing) runs as tasks: let them.
        for _ in range(50):
            if not self._logins:
                break
            await asyncio.sleep(0.02)
