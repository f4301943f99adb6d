"""The data connection of an FTP upload: written under staging/, capped at the account's
largest file, handed over to incoming/ before the 226, discarded when cut or reset."""

import contextlib
import errno
import logging
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from OpenSSL import SSL
from pyftpdlib.handlers import DTPHandler, TLS_DTPHandler
from pyftpdlib.log import logger as pyftpdlib_log

from dropimport import logs

from . import incoming, metrics

log = logging.getLogger(__name__)

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
    preview: bool = False  # into dryrun/


NO_UPLOAD = Upload(None, None)


#: A complete upload that could not be handed over: the client must send it again.
HAND_OVER_FAILED_REPLY = "451 The file could not be stored; upload it again."


#: An upload whose data connection was reset (TCP RST) before its end: cut, whatever arrived.
RESET_REPLY = ("426 The data connection was reset before the end of the file; nothing "
               "kept: upload the whole file again.")


def _reset(error: BaseException | None) -> bool:
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

    def __init__(self, file: BinaryIO, limit: int) -> None:
        self._file = file
        self._limit = limit
        self._size = 0

    def __getattr__(self, name: str) -> Any:  # name, closed, flush, close: those of the file
        return getattr(self._file, name)

    def write(self, data: bytes) -> int:
        self._size += len(data)
        if self._size > self._limit:
            raise FileTooLarge(errno.EFBIG, f"larger than {self._limit} bytes")
        return self._file.write(data)


class _Dropped:
    """The upload's file once refused: what else comes is read and dropped, up to `budget`."""

    closed = False

    def __init__(self, name: str, budget: int | None = None) -> None:
        self.name = name
        self._budget = budget

    def write(self, data: bytes) -> None:
        if self._budget is not None:
            self._budget -= len(data)
            if self._budget < 0:
                raise OSError(errno.EFBIG, "still sending long after the refusal")

    def flush(self) -> None:
        pass

    def close(self) -> None:
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
    _refusal: str | None = None
    # pyftpdlib's own attributes, which it does not annotate. file_obj: the file received, in a
    # _Capped while the upload is admitted, then a _Dropped once it is refused.
    file_obj: Any
    transfer_finished: bool

    def enable_receiving(self, type: str, cmd: str) -> None:
        super().enable_receiving(type, cmd)
        self.file_obj = _Capped(self.file_obj, self.cmd_channel.account["max_file_size"])

    def handle_error(self) -> None:
        if not self._refused(sys.exc_info()[1]):
            super().handle_error()

    def handle_close(self) -> None:
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

    def close(self) -> None:
        # Before pyftpdlib's close(), which replies 226 at once: the client may count its
        # file as delivered only once it is in incoming/, where no restart can lose it.
        finished = self.receive and self.transfer_finished and self._refusal is None
        if finished and not self._closed and not self.file_obj.closed:
            try:
                self.cmd_channel.hand_over(self.file_obj)
            except OSError as error:
                self.transfer_finished = False  # on_incomplete_file_received: discarded
                # An errno of None (typeshed's int | None) gets the default reply.
                reply = NO_SPACE_REPLIES.get(
                    error.errno, HAND_OVER_FAILED_REPLY)  # type: ignore[arg-type]
                self._resp = (reply, pyftpdlib_log.warning)
        super().close()

    def _refused(self, error: BaseException | None) -> bool:
        """Refuse the upload if `error` says it cannot be kept; return whether it did."""
        if not self.receive:
            return False
        if self._refusal is not None:  # too much data after the refusal: answer and hang up
            self.handle_close()
            return True
        assert error is not None  # called while an exception is handled
        # pyftpdlib wraps a failed write in an OSError of its own, raised from the original.
        error = error.__cause__ or error
        if isinstance(error, FileTooLarge):
            limit = self.cmd_channel.account["max_file_size"]
            self._refuse(f"552 Exceeded the largest file this account may upload "
                         f"({limit} bytes); transfer aborted.", "size", error.strerror,
                         log.warning, self.drain_limit)
            return True
        code = getattr(error, "errno", None)
        if code in NO_SPACE_REPLIES:
            self._refuse(NO_SPACE_REPLIES[code], "space", os.strerror(code), log.error)
            return True
        return False

    def _refuse(self, reply: str, reason: str, why: str | None, logfun: Callable[..., None],
                budget: int | None = None) -> None:
        """Answer `reply` when the transfer ends; remove the file, drop what else comes."""
        self._refusal = reply
        name = self.file_obj.name
        upload = self.cmd_channel.staged(name)
        account, file = upload.account, upload.file
        metrics.REFUSED.labels("ftp", reason).inc()
        with logs.context(file=file):
            logfun("upload of %s by account %s refused with %s: %s", file, account, reply[:3],
                   why)
        with contextlib.suppress(OSError):  # closing flushes, which may fail again
            self.file_obj.close()
        discard(name)
        self.file_obj = _Dropped(name, budget)


class TLSUploadDTPHandler(TLS_DTPHandler, UploadDTPHandler):
    """UploadDTPHandler over a protected data connection (PROT P)."""

    def handle_error(self) -> None:
        # The TLS layer's handle_error comes first in the MRO; a refusal must be seen before it.
        if not self._refused(sys.exc_info()[1]):
            super().handle_error()


def discard(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(path)
