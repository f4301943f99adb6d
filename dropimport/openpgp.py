"""OpenPGP through GnuPG: an account's key pair, the customer's signing key, decryption.

GnuPG (`gpg`, 2.2 or later) is driven through its machine interface (`--batch`,
`--status-file`, `--with-colons`), in a keyring made for each operation in a temporary folder
and removed after it, with its agent: keys live in the account's document (the secret one
encrypted with DROPIMPORT_SECRET_KEY), never in a keyring that outlives a call. No key is ever
fetched from the network (`--no-auto-key-retrieve`). Why GnuPG rather than a Python library:
docs/security.md.
"""

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, NamedTuple

GPG = os.environ.get("DROPIMPORT_GPG", "gpg")
#: Seconds a key operation may take (RSA generation takes a few on a slow day).
TIMEOUT = 120
#: The account keys made by `generate`: RSA, which every OpenPGP tool reads (PGP Desktop,
#: GoAnywhere, BouncyCastle, GnuPG 1.4 and later, Sequoia, OpenPGP.js), with an encryption
#: subkey.
ALGORITHM = "rsa3072"


class OpenPGPError(Exception):
    """A key cannot be made, read or used; the message says why."""


class Refused(Exception):
    """A message cannot be decrypted, or is not signed as required; the message says why."""


class Key(NamedTuple):
    fingerprint: str  # of the primary key, upper-case hex
    public_key: str  # ASCII armour
    secret_key: str | None  # ASCII armour, not protected by a passphrase


def _keyrings() -> Path:
    """Where keyrings are made: in memory (/dev/shm) where there is one, so that a secret key
    GnuPG holds while it decrypts never reaches a disk."""
    shm = Path("/dev/shm")
    usable = shm.is_dir() and os.access(shm, os.W_OK | os.X_OK)
    return shm if usable else Path(tempfile.gettempdir())


#: A keyring older than this was left by a process killed while it decrypted: removed.
STALE_SECONDS = 6 * 3600


@contextmanager
def _keyring() -> Iterator[Path]:
    """A new, empty GnuPG home (0700), removed with its agent afterwards."""
    folder = _keyrings()
    for stale in folder.glob("dropimport-gpg-*"):
        try:
            found = stale.stat()
            if time.time() - found.st_mtime > STALE_SECONDS and found.st_uid == os.getuid():
                _remove(stale)
        except OSError:  # another process removed it, or it is another user's
            continue
    home = Path(tempfile.mkdtemp(prefix="dropimport-gpg-", dir=folder))
    try:
        yield home
    finally:
        _remove(home)


def _remove(home: Path) -> None:
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "gpg-agent"],
                   capture_output=True, check=False)
    shutil.rmtree(home, ignore_errors=True)


def _gpg_on(home: Path) -> list[str]:
    """gpg in batch on the keyring `home`, never asking a key server."""
    return [GPG, "--batch", "--no-tty", "--homedir", str(home), "--no-auto-key-retrieve"]


def _gpg(home: Path, *args: str, data: str | bytes | None = None
         ) -> subprocess.CompletedProcess[str]:
    """Run gpg on `home`; its output as text (armour, listings), `data` as given (a key may
    be binary)."""
    try:
        done = subprocess.run(
            [*_gpg_on(home), "--pinentry-mode", "loopback", "--passphrase", "", *args],
            input=data.encode() if isinstance(data, str) else data, capture_output=True,
            timeout=TIMEOUT, check=False)
    except FileNotFoundError:
        raise OpenPGPError(f"GnuPG ({GPG}) is not installed: install gnupg") from None
    return subprocess.CompletedProcess(done.args, done.returncode,
                                       done.stdout.decode(errors="replace"),
                                       done.stderr.decode(errors="replace"))


def _listed(home: Path, secret: bool = False) -> list[list[str]]:
    """The key lines (pub/sec, fpr) of the keyring, split on colons."""
    listing = _gpg(home, "--with-colons", "--fixed-list-mode",
                   "--list-secret-keys" if secret else "--list-keys")
    return [line.split(":") for line in listing.stdout.splitlines()]


def _read(home: Path, text: str | bytes, secret: bool) -> Key:
    """Import `text` (one key, with its secret part if `secret`) into `home`; the Key."""
    _gpg(home, "--import", data=text)
    lines = _listed(home, secret)
    primaries = [line for line in lines if line[0] in ("pub", "sec")]
    if not primaries and secret and _listed(home):
        raise OpenPGPError("the file holds a public key only: give the key pair "
                           "(gpg --armor --export-secret-keys KEYID)")
    if not primaries:
        raise OpenPGPError("the file holds no OpenPGP key")
    if len(primaries) > 1:
        raise OpenPGPError(f"the file holds {len(primaries)} OpenPGP keys: give one")
    fingerprint = next(line[9] for line in lines if line[0] == "fpr")
    capabilities = primaries[0][11]
    if secret and "E" not in capabilities:
        raise OpenPGPError(f"key {fingerprint} cannot decrypt (it has no encryption key)")
    public = _gpg(home, "--armor", "--export", fingerprint).stdout
    secret_key = None
    if secret:
        exported = _gpg(home, "--armor", "--export-secret-keys", fingerprint)
        if exported.returncode or not exported.stdout:
            raise OpenPGPError(f"the secret key {fingerprint} cannot be exported without a "
                            "passphrase: remove its passphrase first (gpg --change-passphrase)")
        secret_key = exported.stdout
    return Key(fingerprint, public, secret_key)


def _last(stderr: str) -> str:
    lines = [line.removeprefix("gpg: ") for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else "no detail"


def generate(user_id: str) -> Key:
    """A new key pair for `user_id` (ALGORITHM, no expiry, no passphrase: its secret part is
    kept encrypted by the caller)."""
    with _keyring() as home:
        made = _gpg(home, "--quick-generate-key", user_id, ALGORITHM, "sign,cert", "never")
        if made.returncode:
            raise OpenPGPError(f"gpg cannot make a key: {_last(made.stderr)}")
        fingerprint = next(line[9] for line in _listed(home, True) if line[0] == "fpr")
        added = _gpg(home, "--quick-add-key", fingerprint, ALGORITHM, "encr", "never")
        if added.returncode:
            raise OpenPGPError(f"gpg cannot add the encryption key: {_last(added.stderr)}")
        secret = _gpg(home, "--armor", "--export-secret-keys", fingerprint).stdout
        return _read(home, secret, True)


def read_secret(text: str | bytes) -> Key:
    """The key pair in `text` (ASCII armour or binary), checked: one key that decrypts."""
    with _keyring() as home:
        key = _read(home, text, True)
        probe = _gpg(home, "--trust-model", "always", "--encrypt", "--recipient",
                     key.fingerprint, "--armor", data="probe")
        opened = _gpg(home, "--decrypt", data=probe.stdout)
        if probe.returncode or opened.stdout != "probe":
            raise OpenPGPError(f"key {key.fingerprint} cannot decrypt in batch: "
                            f"{_last(opened.stderr or probe.stderr)}")
        return key


def read_public(text: str | bytes) -> Key:
    """The public key in `text` (a customer's signing key): one key that signs."""
    with _keyring() as home:
        key = _read(home, text, False)
        capabilities = next(line[11] for line in _listed(home) if line[0] == "pub")
        if "S" not in capabilities:
            raise OpenPGPError(f"key {key.fingerprint} cannot sign")
        return key


class Decrypted:
    """The plaintext of a message, read from GnuPG as it decrypts; `read` raises Refused at
    the end if the message was not wholly decrypted, or not signed by `signer`."""

    def __init__(self, process: subprocess.Popen[bytes], status: Path,
                 signer: dict[str, str] | None) -> None:
        self._process, self._status, self._signer = process, status, signer
        self._checked = False

    def read(self, count: int = -1) -> bytes:
        assert self._process.stdout is not None  # stdout=PIPE
        data = self._process.stdout.read(count)
        if not data and count and not self._checked:
            self._checked = True
            code = self._process.wait()
            reason = verdict(self._status.read_text(errors="replace"), code, self._signer)
            if reason is not None:
                raise Refused(reason)
        return data


@contextmanager
def decrypting(message: IO[bytes], secret_key: str, signer: dict[str, str] | None
               ) -> Iterator[Decrypted]:
    """Decrypt the open file `message` with `secret_key` (armour), checking its signature
    against `signer` (fingerprint, public_key) if given: yield the plaintext's reader."""
    with _keyring() as home:
        _gpg(home, "--import", data=secret_key)
        if signer is not None:
            _gpg(home, "--import", data=signer["public_key"])
        status = home / "status"
        process = subprocess.Popen(
            [*_gpg_on(home), "--trust-model", "always", "--status-file", str(status),
             "--logger-file", str(home / "log"), "--decrypt"],
            stdin=message, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            yield Decrypted(process, status, signer)
        finally:
            if process.poll() is None:
                process.kill()
            process.wait()
            assert process.stdout is not None
            process.stdout.close()


def verdict(status: str, code: int, signer: dict[str, str] | None) -> str | None:
    """Why a message whose decryption printed `status` (GnuPG's status lines) and exited with
    `code` is refused, or None: decrypted whole, and signed by `signer` if given."""
    lines = [line.split()[1:] for line in status.splitlines() if line.startswith("[GNUPG:] ")]
    said: dict[str, list[str]] = {}
    for words in lines:
        if words:
            said.setdefault(words[0], words[1:])
    if "NO_SECKEY" in said and "DECRYPTION_OKAY" not in said:
        others = ", ".join("0x" + words[1] for words in lines if words[0] == "NO_SECKEY")
        return (f"not encrypted to this account's OpenPGP key (encrypted to {others}): "
                "encrypt it with the public key of `dropimport account pgp-key --show`")
    if "ENC_TO" not in said and "BEGIN_DECRYPTION" not in said:
        return "not an OpenPGP-encrypted message (no encrypted data that GnuPG reads found)"
    if ("DECRYPTION_OKAY" not in said or "DECRYPTION_FAILED" in said or "BADMDC" in said
            or code < 0):
        return ("the OpenPGP message cannot be decrypted to its end (corrupt or cut): "
                "is the upload complete? Nothing imported")
    if "BADSIG" in said:
        return (f"bad signature (by key 0x{said['BADSIG'][0]}): the file was changed after it "
                "was signed; nothing imported")
    if signer is None:
        return None
    wanted = signer["fingerprint"]
    if "VALIDSIG" in said and "GOODSIG" in said and said["VALIDSIG"][-1] == wanted:
        return None
    for expired in ("EXPKEYSIG", "REVKEYSIG", "EXPSIG"):
        if expired in said:
            return (f"signed by key 0x{said[expired][0]}, which is expired or revoked; "
                    "nothing imported")
    if "ERRSIG" in said or "VALIDSIG" in said:
        other = said.get("ERRSIG", said.get("VALIDSIG", ["?"]))[0]
        return f"signed by unknown key 0x{other}, not by the signer 0x{wanted}; nothing imported"
    return f"signature missing: files must be signed by key 0x{wanted}; nothing imported"


def shown(key: Key) -> str:
    """A key as an operator sees it: its fingerprint, grouped."""
    fingerprint = key.fingerprint
    return " ".join(fingerprint[i:i + 4] for i in range(0, len(fingerprint), 4))
