"""Unpacking an upload as it is read: gunzip, unzip, OpenPGP decryption, streaming.

What comes out is read once, in order, by the CSV reader, and never lands anywhere in full:
gzip and zip are decompressed block by block; OpenPGP is decrypted by GnuPG (dropimport/
openpgp.py) in a process of its own, whose output is read from a pipe. Every layer is
counted: past the account's `max_file_size`, or past `max_ratio` times the upload's size, the
file is refused as a bomb after at most that much work. A layer that ends wrong (a gzip stream
cut before its end, a zip member whose CRC fails, a message GnuPG cannot decrypt or whose
signature is not the signer's) raises Unreadable when its end is read, before the import's
transaction can commit: a cut or forged file is never imported, not even in part.

A zip member is read by its entry, never extracted under its own name; a zip inside an
OpenPGP message is first decrypted to an anonymous temporary file (a zip is read from its end).
"""

import gzip
import io
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO, TypedDict

from dropimport import openpgp
from dropimport.packaging import Packing

#: Bytes read from a layer at a time.
BLOCK = 256 << 10


class Unreadable(ValueError):
    """A packed upload cannot be read to its end; the message says why (the record's reason)."""


class Unpacking(TypedDict):
    """How to unpack one upload (JSON: handed to the reading process)."""

    compression: str | None  # gzip, zip
    encrypted: bool
    inner: str  # the name of the file inside (the zip member's)
    max_size: int  # the account's max_file_size
    max_ratio: int  # the account's max_ratio
    secret_key: str | None  # the account's OpenPGP secret key, armoured (encrypted files)
    signer: dict[str, str] | None  # the customer's key: fingerprint, public_key


def unpacking(packed: Packing, account: dict[str, Any], secret_key: str | None
              ) -> Unpacking:
    """How to unpack a file packed as `packed` for `account` (its document, defaults
    applied); `secret_key` is the account's, revealed (None if it has none)."""
    return Unpacking(compression=packed.compression, encrypted=packed.encrypted,
                     inner=packed.inner, max_size=account["max_file_size"],
                     max_ratio=account["max_ratio"], secret_key=secret_key,
                     signer=account.get("openpgp", {}).get("signer"))


class Counted(io.RawIOBase):
    """The bytes of `source` (a read(n) function), refused past `limit` with `why`; the last
    two are kept (`tail`: whether the file ends a line), and `source`'s errors are told as
    Unreadable by `told`."""

    def __init__(self, source: Callable[[int], bytes], limit: int, why: str,
                 told: Callable[[Exception], str | None] = lambda error: None) -> None:
        self._source, self._limit, self._why, self._told = source, limit, why, told
        self.count = 0
        self.tail = b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        try:
            data = self._source(len(buffer))
        except Unreadable:
            raise
        except Exception as error:
            reason = self._told(error)
            if reason is None:
                raise
            raise Unreadable(reason) from None
        self.count += len(data)
        if self.count > self._limit:
            raise Unreadable(self._why)
        if data:
            self.tail = (self.tail + data)[-2:]
        buffer[:len(data)] = data
        return len(data)

    def tell(self) -> int:
        return self.count


def _openpgp_error(error: Exception) -> str | None:
    return str(error) if isinstance(error, openpgp.Refused) else None


def _gzip_error(error: Exception) -> str | None:
    if isinstance(error, EOFError):
        return ("the gzip stream is cut before its end (no end-of-stream marker): the upload "
                "looks incomplete; nothing imported")
    if isinstance(error, (OSError, zlib.error)):  # gzip.BadGzipFile is an OSError
        return f"not a valid gzip file ({error}); nothing imported"
    return None


def _zip_error(error: Exception) -> str | None:
    if isinstance(error, (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError)):
        return f"the zip member cannot be read ({error}); nothing imported"
    return None


def member(archive: zipfile.ZipFile, inner: str) -> zipfile.ZipInfo:
    """The member of `archive` to import: its only file, or the one named `inner` (at its
    top or in a folder); Unreadable for any other list, an unsafe name or an encrypted one."""
    files = [info for info in archive.infolist() if not info.is_dir()]
    for info in files:
        path = PurePosixPath(info.filename.replace("\\", "/"))
        if path.is_absolute() or ".." in path.parts or ":" in info.filename:
            raise Unreadable(f"the zip holds a member with an unsafe name {info.filename!r} "
                             "(outside its folder): refused")
    found = files if len(files) == 1 else [
        info for info in files if PurePosixPath(info.filename).name == inner]
    if len(found) != 1:
        names = ", ".join(repr(info.filename) for info in files[:10]) or "none"
        more = f" (and {len(files) - 10} more)" if len(files) > 10 else ""
        raise Unreadable(f"the zip must hold one file, or one named {inner!r}; it holds "
                         f"{len(files)}: {names}{more}")
    if found[0].flag_bits & 0x1:
        raise Unreadable(f"the zip member {found[0].filename!r} is encrypted (zip passwords are "
                         "not supported: encrypt the file with OpenPGP instead)")
    return found[0]


def _one_disk(archive: BinaryIO) -> None:
    """Refuse a part of a split (multi-disk) zip, which zipfile would misread: its end record
    numbers its disk."""
    end = archive.seek(0, io.SEEK_END)
    archive.seek(max(end - (66 << 10), 0))
    tail = archive.read()
    archive.seek(0)
    at = tail.rfind(b"PK\x05\x06")
    if at >= 0 and tail[at + 4:at + 8] != b"\0\0\0\0":
        raise Unreadable("the zip is one part of a split (multi-disk) archive: upload it "
                         "as one file")


@contextmanager
def unpacked(path: Path, how: Unpacking) -> Iterator[BinaryIO]:
    """Yield the bytes of the file packed in `path` as `how` says, as a stream (Counted).

    Its `consumed()` tells how far into the upload the reading is (progress).
    """
    size = path.stat().st_size
    limit = min(how["max_size"], how["max_ratio"] * max(size, 1))
    why = (f"it expands past {limit:,} bytes once unpacked (max_file_size "
           f"{how['max_size']:,}, max_ratio {how['max_ratio']}:1 of its {size:,} bytes): "
           "refused as a possible decompression bomb; nothing imported")
    with ExitStack() as stack:
        upload = stack.enter_context(open(path, "rb"))
        layer: BinaryIO = upload
        if how["encrypted"]:
            if not how["secret_key"]:
                raise Unreadable("the file is encrypted but this account has no OpenPGP key "
                                 "(dropimport account pgp-key ACCOUNT --generate)")
            decrypted = stack.enter_context(openpgp.decrypting(
                upload, how["secret_key"], how["signer"]))
            layer = io.BufferedReader(Counted(decrypted.read, limit, why, _openpgp_error),
                                      BLOCK)
        source: Callable[[int], bytes]
        told: Callable[[Exception], str | None]
        if how["compression"] == "gzip":
            inside = gzip.GzipFile(fileobj=layer, mode="rb")
            source, told = inside.read, _gzip_error
        elif how["compression"] == "zip":
            if layer is not upload:  # a zip is read from its end: decrypted to disk first
                spilled = stack.enter_context(tempfile.TemporaryFile(dir=path.parent))
                shutil.copyfileobj(layer, spilled, BLOCK)
                layer = spilled
            try:
                _one_disk(layer)
                archive = stack.enter_context(zipfile.ZipFile(layer))
                opened = stack.enter_context(archive.open(member(archive, how["inner"])))
            except (zipfile.BadZipFile, OSError, NotImplementedError) as error:
                raise Unreadable(f"not a valid zip file ({error}); is the upload complete? "
                                 "Nothing imported") from None
            source, told = opened.read, _zip_error
        else:
            source, told = layer.read, lambda error: None
        stream = Counted(source, limit, why, told)
        stream.consumed = upload.tell  # type: ignore[attr-defined]
        yield stream  # type: ignore[misc]
