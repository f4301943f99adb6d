"""Clients of the customers' own servers: FTP, explicit FTPS and SFTP, one interface, and
their URLs. Pull mode (agent/) downloads with them; exports (worker/) upload.

    with connect(source, password) as remote:
        remote.listing()                 {name: RemoteFile(name, size, mtime)} of the directory
        remote.download(name, path)      appends to `path` from its size: a resume after a drop
        remote.upload(path, name)        as `name`.part, then renamed over `name`
        remote.delete(name); remote.move(name, directory)

Server identities are always checked: FTPS against the system's certificate authorities, a
source's `ca_file` or a pinned certificate `fingerprint`; SFTP against known_hosts or a pinned
host key `fingerprint`. Errors never hold the password.
"""

import asyncio
import contextlib
import ftplib
import hashlib
import hmac
import posixpath
import ssl
import stat
from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, NamedTuple, Self
from urllib.parse import quote, unquote, urlsplit

import asyncssh

#: Bytes read from or written to an SFTP server per request.
CHUNK = 256 * 1024
DEFAULT_PORTS = {"ftp": 21, "ftps": 21, "sftp": 22}


class UrlError(ValueError):
    """A server's URL is not usable; the message says why, in one line."""


def parse_url(url: str, with_file: bool = True) -> dict[str, Any]:
    """The protocol, host, port, user, directory and file of a URL on a customer's server.

    `ftps://USER@HOST:PORT/DIR/contacts.csv`; the last part may be a glob (`export-*.csv`);
    `/~/` at the start of the path is the login's home directory. No password in the URL.
    Without `with_file`, the whole path is the directory (`sftp://USER@HOST/~/in/`), and
    there is no `file`.
    """
    parts = urlsplit(url)
    protocol = parts.scheme.lower()
    if protocol not in DEFAULT_PORTS:
        raise UrlError(f"bad URL {url!r}: it must start with ftp://, ftps:// or sftp://")
    if parts.password is not None:
        raise UrlError(
            "the URL must not hold the password: give it with --password-stdin or --secret"
        )
    shape = "DIR/FILE" if with_file else "DIR/"
    if not parts.username or not parts.hostname:
        raise UrlError(f"bad URL {url!r}: write it like {protocol}://USER@HOST/{shape}")
    try:
        port = parts.port or DEFAULT_PORTS[protocol]
    except ValueError:
        raise UrlError(f"bad URL {url!r}: the port is not a number") from None
    path = unquote(parts.path) or "/"
    if with_file:
        directory, file = posixpath.split(path)
        if not file:
            raise UrlError(f"bad URL {url!r}: it must end with the file name, or a glob")
    else:
        directory, file = path.rstrip("/") or "/", None
    if directory == "/~" or directory.startswith("/~/"):
        directory = directory[1:]
    where = {"protocol": protocol, "host": parts.hostname, "port": port,
             "user": unquote(parts.username), "directory": directory}
    return {**where, "file": file} if with_file else where


def url_of(server: Mapping[str, Any]) -> str:
    """The URL of a source's file, or of a directory, as an operator reads it (the password is
    never part of it)."""
    path = "/" + posixpath.join(server["directory"], server.get("file") or "").lstrip("/")
    host = f"[{server['host']}]" if ":" in server["host"] else server["host"]
    return f"{server['protocol']}://{quote(server['user'], safe='')}@{host}:{server['port']}{path}"


class RemoteError(Exception):
    """The server cannot be reached or used; worth trying again later."""


class LoginRefused(RemoteError):
    """Wrong user or password: trying again before someone fixes it only risks a lockout."""


class Untrusted(RemoteError):
    """The server's certificate or host key is not the one trusted: never sent a password."""


class RemoteFile(NamedTuple):
    name: str
    size: int
    #: Seconds since the epoch (UTC), or None when the server does not say.
    mtime: float | None


def remote_directory(directory: str) -> str:
    """The path to change to for a source's `directory`: `~` starts at the login's home."""
    if directory.startswith("~"):
        return directory[1:].lstrip("/") or "."
    return directory


def where(source: dict[str, Any]) -> str:
    return f"{source['protocol']}://{source['user']}@{source['host']}:{source['port']}"


class Remote:
    """A connection to a source's server, in its directory; a context manager."""

    # What each kind of server implements (see the module's docstring).
    def listing(self) -> dict[str, RemoteFile]:
        raise NotImplementedError

    def download(self, name: str, path: Path) -> None:
        raise NotImplementedError

    def upload(self, path: Path, name: str) -> None:
        """Write the local file `path` as `name` in the directory; the customer's system never
        sees a partial `name`, except on a server that allows no renames at all."""
        part = f"{name}.part"
        self._write(path, part)
        if self._rename_over(part, name):
            return
        # No renames on this server: the whole file again, under its own name.
        self._write(path, name)
        # The file is whole under its name: a .part left behind is only untidy.
        with contextlib.suppress(RemoteError):
            self.delete(part)

    def delete(self, name: str) -> None:
        raise NotImplementedError

    def move(self, name: str, directory: str) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    # What upload needs of each kind of server.
    def _write(self, path: Path, name: str) -> None:
        """Write the local file `path` as `name`, replacing it."""
        raise NotImplementedError

    def _rename_over(self, old: str, name: str) -> bool:
        """Rename `old` to `name`, replacing it; False if the server refuses renames."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(source: dict[str, Any], password: str) -> Remote:
    """A Remote for `source` (its defaults applied), logged in and in its directory."""
    kind = SftpRemote if source["protocol"] == "sftp" else FtpRemote
    return kind(source, password)


def _fingerprint(text: str) -> str:
    return text.replace(":", "").lower()


def _tls_context(source: dict[str, Any]) -> ssl.SSLContext:
    if source.get("fingerprint"):
        # The pinned certificate is the trust: a customer's self-signed one is common.
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context = ssl.create_default_context(cafile=source.get("ca_file"))
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def _mlsd_time(value: str | None) -> float | None:
    if not value:
        return None
    whole, _, fraction = value.partition(".")
    moment = datetime.strptime(whole, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
    return moment.timestamp() + float(f"0.{fraction or 0}")


class FtpRemote(Remote):
    def __init__(self, source: dict[str, Any], password: str) -> None:
        self.source = source
        tls = source["protocol"] == "ftps"
        timeout = source["timeout"]
        self.ftp = ftplib.FTP_TLS(context=_tls_context(source), timeout=timeout) if tls \
            else ftplib.FTP(timeout=timeout)
        try:
            with _translated(source):
                self.ftp.connect(source["host"], source["port"])
                if isinstance(self.ftp, ftplib.FTP_TLS):
                    self.ftp.auth()
                    self._check_fingerprint()
                self.ftp.login(source["user"], password)
                if isinstance(self.ftp, ftplib.FTP_TLS):
                    self.ftp.prot_p()
                self.ftp.set_pasv(source["passive"])
                self.ftp.cwd(remote_directory(source["directory"]))
        except BaseException:
            self.ftp.close()
            raise

    def _check_fingerprint(self) -> None:
        pinned = self.source.get("fingerprint")
        if not pinned:
            return
        assert isinstance(self.ftp.sock, ssl.SSLSocket)  # wrapped by AUTH TLS
        certificate = self.ftp.sock.getpeercert(binary_form=True)
        assert certificate is not None  # a TLS server always sends one
        seen = hashlib.sha256(certificate).hexdigest()
        if not hmac.compare_digest(seen, _fingerprint(pinned)):
            raise Untrusted(
                f"{where(self.source)}: the certificate's SHA-256 fingerprint is {seen}, not the "
                "pinned one; no password was sent"
            )

    def listing(self) -> dict[str, RemoteFile]:
        with _translated(self.source):
            try:
                entries = list(self.ftp.mlsd(facts=["type", "size", "modify"]))
            except ftplib.error_perm as error:
                if not str(error).startswith(("500", "501", "502")):
                    raise
                return self._listing_without_mlsd()
        return {
            name: RemoteFile(name, int(facts["size"]), _mlsd_time(facts.get("modify")))
            for name, facts in entries if facts.get("type") == "file" and "size" in facts
        }

    def _listing_without_mlsd(self) -> dict[str, RemoteFile]:
        """NLST, then SIZE and MDTM of each name (servers older than RFC 3659's MLSD)."""
        files: dict[str, RemoteFile] = {}
        names = self.ftp.nlst()
        self.ftp.voidcmd("TYPE I")  # NLST left ASCII mode, where many servers refuse SIZE
        for path in names:
            name = posixpath.basename(path)
            try:
                size = self.ftp.size(name)
            except ftplib.error_perm:
                continue  # a directory
            try:
                mtime = _mlsd_time(self.ftp.voidcmd(f"MDTM {name}").split()[-1])
            except (ftplib.error_perm, ValueError):
                mtime = None
            # A size is what tells a complete download (MLSD's listing skips files without
            # one too); size() is None for a server answering SIZE with a 2xx other than 213.
            if size is not None:
                files[name] = RemoteFile(name, size, mtime)
        return files

    def download(self, name: str, path: Path) -> None:
        offset = path.stat().st_size if path.exists() else 0
        with _translated(self.source), open(path, "ab") as file:
            try:
                self.ftp.retrbinary(f"RETR {name}", file.write, rest=offset or None)
            except ftplib.error_perm as error:
                if not offset or not str(error).startswith(("500", "501", "502", "504")):
                    raise
                # No REST on this server: start again from the first byte.
                file.truncate(0)
                self.ftp.retrbinary(f"RETR {name}", file.write)

    def _write(self, path: Path, name: str) -> None:
        with open(path, "rb") as file, _translated(self.source):
            self.ftp.storbinary(f"STOR {name}", file)

    def _rename_over(self, old: str, name: str) -> bool:
        with _translated(self.source):
            try:
                self.ftp.rename(old, name)
                return True
            except ftplib.error_perm:
                pass  # many servers (IIS) refuse to rename over an existing file
            # Absent, or not ours to delete: the second rename tells.
            with contextlib.suppress(ftplib.error_perm):
                self.ftp.delete(name)
            try:
                self.ftp.rename(old, name)
            except ftplib.error_perm:
                return False
            return True

    def delete(self, name: str) -> None:
        with _translated(self.source):
            self.ftp.delete(name)

    def move(self, name: str, directory: str) -> None:
        with _translated(self.source):
            self.ftp.rename(name, posixpath.join(directory, name))

    def close(self) -> None:
        try:
            self.ftp.quit()
        except (OSError, EOFError, ftplib.Error):
            self.ftp.close()


class _HostKeyCheck(asyncssh.SSHClient):
    """Trusts a host key absent from known_hosts only when it is the pinned one."""

    def __init__(self, pinned: str | None) -> None:
        self.pinned = pinned
        self.seen: str | None = None

    def validate_host_public_key(self, host: str, addr: str, port: int,
                                 key: asyncssh.SSHKey) -> bool:
        self.seen = key.get_fingerprint("sha256")
        if not self.pinned:
            return False
        return hmac.compare_digest(self.seen, self.pinned)


class SftpRemote(Remote):
    """SFTP through asyncssh, on an event loop of this connection's own."""

    def __init__(self, source: dict[str, Any], password: str) -> None:
        self.source = source
        self.directory = remote_directory(source["directory"])
        self._loop = asyncio.new_event_loop()
        self._conn: asyncssh.SSHClientConnection | None = None
        try:
            self._sftp = self._run(self._open(password))
        except BaseException:
            self.close()
            raise

    def _run(self, coroutine: Awaitable[Any]) -> Any:
        with _translated(self.source):
            return self._loop.run_until_complete(
                asyncio.wait_for(coroutine, self.source["timeout"]))

    async def _open(self, password: str) -> asyncssh.SFTPClient:
        source = self.source
        check = _HostKeyCheck(source.get("fingerprint"))
        # A pinned fingerprint is the only trust; else the source's or the agent's known_hosts.
        known_hosts = ([], [], []) if source.get("fingerprint") else source.get("known_hosts", ())
        try:
            self._conn = await asyncssh.connect(
                source["host"], source["port"], username=source["user"], password=password,
                known_hosts=known_hosts, client_factory=lambda: check, client_keys=None,
                agent_path=None, preferred_auth="password,keyboard-interactive",
                config=None, connect_timeout=source["timeout"],
            )
        except asyncssh.HostKeyNotVerifiable:
            raise Untrusted(
                f"{where(source)}: the host key {check.seen} is not trusted; no password was "
                f"sent. If it is the customer's, pin it: --fingerprint {check.seen}"
            ) from None
        return await self._conn.start_sftp_client()

    def _path(self, name: str) -> str:
        return posixpath.join(self.directory, name)

    def listing(self) -> dict[str, RemoteFile]:
        names = self._run(self._sftp.readdir(self.directory))
        return {
            entry.filename: RemoteFile(entry.filename, entry.attrs.size, entry.attrs.mtime)
            for entry in names
            if entry.attrs.permissions is not None and stat.S_ISREG(entry.attrs.permissions)
            and entry.attrs.size is not None  # what tells a complete download
        }

    def download(self, name: str, path: Path) -> None:
        offset = path.stat().st_size if path.exists() else 0
        remote = self._run(self._sftp.open(self._path(name), "rb"))
        try:
            with open(path, "ab") as file:
                while chunk := self._run(remote.read(CHUNK, offset)):
                    file.write(chunk)
                    offset += len(chunk)
        finally:
            self._run(remote.close())

    def _write(self, path: Path, name: str) -> None:
        with open(path, "rb") as file:
            remote = self._run(self._sftp.open(self._path(name), "wb"))
            try:
                offset = 0
                while chunk := file.read(CHUNK):
                    self._run(remote.write(chunk, offset))
                    offset += len(chunk)
            finally:
                self._run(remote.close())

    def _rename_over(self, old: str, name: str) -> bool:
        return self._run(self._renamed_over(self._path(old), self._path(name)))

    async def _renamed_over(self, old: str, target: str) -> bool:
        try:
            await self._sftp.posix_rename(old, target)
            return True
        except asyncssh.SFTPOpUnsupported:
            pass  # not OpenSSH's: a plain SFTP rename never replaces a file
        except asyncssh.SFTPPermissionDenied:
            return False
        with contextlib.suppress(asyncssh.SFTPNoSuchFile):
            await self._sftp.remove(target)
        try:
            await self._sftp.rename(old, target)
        except asyncssh.SFTPPermissionDenied:
            return False
        return True

    def delete(self, name: str) -> None:
        self._run(self._sftp.remove(self._path(name)))

    def move(self, name: str, directory: str) -> None:
        self._run(self._sftp.rename(self._path(name), posixpath.join(directory, name)))

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._loop.run_until_complete(self._conn.wait_closed())
        self._loop.close()


class _translated:
    """Turns the libraries' errors into RemoteError and its kinds, naming the server."""

    def __init__(self, source: dict[str, Any]) -> None:
        self.source = source

    def __enter__(self) -> Self:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 traceback: TracebackType | None) -> Literal[False]:
        if error is None or isinstance(error, RemoteError) or not isinstance(error, Exception):
            return False
        at = where(self.source)
        if (isinstance(error, ftplib.error_perm) and str(error).startswith("530")) or \
                isinstance(error, asyncssh.PermissionDenied):
            raise LoginRefused(f"{at}: login refused ({error}); check the user and password") \
                from None
        if isinstance(error, ssl.SSLCertVerificationError):
            raise Untrusted(f"{at}: certificate not trusted ({error.verify_message}); set the "
                            "source's ca_file or pin its fingerprint") from None
        if isinstance(error, TimeoutError | asyncio.TimeoutError):
            raise RemoteError(f"{at}: no answer within {self.source['timeout']} s") from None
        if isinstance(error, OSError | EOFError | ftplib.Error | asyncssh.Error):
            raise RemoteError(f"{at}: {type(error).__name__}: {error}") from None
        return False
