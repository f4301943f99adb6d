"""The customers' own servers, for pull mode: a real pyftpdlib server (plain or explicit FTPS)
and a real asyncssh SFTP server, each serving a folder of the test's, in a thread.

Both count connections and failed logins, and can drop a download part-way: `drop(n, after)`
makes the next `n` downloads (SFTP: connections) fail once they served about `after` bytes (FTP:
the data connection aborted with 426; SFTP: the whole TCP connection cut).
"""

import asyncio
import errno
import os
import threading
from datetime import UTC, datetime, timedelta

import asyncssh
from pyftpdlib.authorizers import DummyAuthorizer
from pyftpdlib.filesystems import AbstractedFS
from pyftpdlib.handlers import FTPHandler, TLS_FTPHandler
from pyftpdlib.servers import FTPServer

from tests.clients import Serving

USER = "acme-it"
PASSWORD = "customer-pw"


def put(folder, name, data, mtime=None):
    """Write a remote file; `mtime` (a datetime) as a server's file time, else now - 1 h."""
    path = folder / name
    path.write_bytes(data)
    moment = mtime or datetime.now(UTC) - timedelta(hours=1)
    os.utime(path, (moment.timestamp(), moment.timestamp()))
    return path


class _Faults:
    def __init__(self):
        self.connections = 0
        self.failed_logins = 0
        self.drops = 0
        self.drop_after = 1000

    def drop(self, times=1, after=1000):
        self.drops, self.drop_after = times, after

    def take_drop(self):
        if self.drops:
            self.drops -= 1
            return True
        return False


class _Cut:
    """A file that fails to read past `limit` bytes, as a server losing its link would."""

    def __init__(self, file, limit):
        self.file, self.limit, self.served = file, limit, 0

    def __getattr__(self, name):
        return getattr(self.file, name)

    def read(self, size=-1):
        if self.served >= self.limit:
            raise OSError(errno.ECONNRESET, "connection lost")
        data = self.file.read(min(size if size >= 0 else self.limit, self.limit - self.served))
        self.served += len(data)
        return data


class CustomerFtp(_Faults):
    """A pyftpdlib server on a free port; explicit FTPS (required) with `certificate`; an old
    server that does not know MLSD (RFC 3659) with `mlsd=False`; `perm` is the user's
    pyftpdlib permissions (without "f", it refuses RNFR/RNTO); a server that refuses to rename
    over an existing file (as IIS does) with `rename_over=False`."""

    def __init__(self, root, certificate=None, mlsd=True, perm="elradfmwMT", rename_over=True):
        super().__init__()
        faults = self
        authorizer = DummyAuthorizer()
        authorizer.add_user(USER, PASSWORD, str(root), perm=perm)

        class FaultyFS(AbstractedFS):
            def open(self, filename, mode):
                file = super().open(filename, mode)
                return _Cut(file, faults.drop_after) if "r" in mode and faults.take_drop() \
                    else file

            def rename(self, src, dst):
                if not rename_over and self.lexists(dst):
                    raise OSError(errno.EEXIST, "file exists")
                super().rename(src, dst)

        attributes = {
            "authorizer": authorizer, "abstracted_fs": FaultyFS, "use_sendfile": False,
            "on_connect": lambda handler: self._count("connections"),
            "on_login_failed": lambda handler, user, password: self._count("failed_logins"),
        }
        if not mlsd:
            attributes["ftp_MLSD"] = lambda handler, path: handler.respond(
                "500 Command \"MLSD\" not understood.")
        base = FTPHandler
        if certificate:
            base = TLS_FTPHandler
            attributes.update(certfile=str(certificate[0]), keyfile=str(certificate[1]),
                              tls_control_required=True, tls_data_required=True)
        handler = type("CustomerHandler", (base,), attributes)
        self.server = FTPServer(("127.0.0.1", 0), handler)
        self.host, self.port = self.server.address
        self._serving = Serving(self.server, "customer-ftp")

    def _count(self, what):
        setattr(self, what, getattr(self, what) + 1)

    def stop(self):
        self._serving.stop()


class CustomerSftp(_Faults):
    """An asyncssh SFTP server on a free port, rooted (chroot) at `root`; password login."""

    def __init__(self, root):
        super().__init__()
        self.root = root
        self.host_key = asyncssh.generate_private_key("ssh-ed25519")
        self.fingerprint = self.host_key.get_fingerprint("sha256")
        self.host = "127.0.0.1"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="customer-sftp")
        self._thread.start()
        self._acceptor = self._call(self._listen())
        self.port = self._acceptor.sockets[0].getsockname()[1]

    def _call(self, coroutine):
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    async def _listen(self):
        faults = self

        class Login(asyncssh.SSHServer):
            def connection_made(self, conn):
                faults.connections += 1

            def begin_auth(self, username):
                return True

            def password_auth_supported(self):
                return True

            def validate_password(self, username, password):
                if (username, password) == (USER, PASSWORD):
                    return True
                faults.failed_logins += 1
                return False

        class Files(asyncssh.SFTPServer):
            def __init__(self, chan):
                super().__init__(chan, chroot=os.fsencode(faults.root))
                self.cut = faults.take_drop()
                self.served = 0

            def read(self, file_obj, offset, size):
                data = super().read(file_obj, offset, size)
                self.served += len(data)
                if self.cut and self.served > faults.drop_after:
                    self.channel.get_connection().abort()  # the TCP connection, cut
                return data

        return await asyncssh.listen(
            self.host, 0, server_host_keys=[self.host_key], server_factory=Login,
            sftp_factory=Files, allow_scp=False,
        )

    def stop(self):
        async def close():
            self._acceptor.close()
            await self._acceptor.wait_closed()

        self._call(close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
