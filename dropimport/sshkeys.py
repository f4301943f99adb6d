"""SSH public keys an account logs in with over SFTP: one key read, checked and made canonical.

A key is taken in the one-line form of an OpenSSH `.pub` file (`TYPE BASE64 [COMMENT]`) and
kept without its comment, so that two copies of a key are equal as strings.
"""

from typing import NamedTuple

import asyncssh
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

#: The key types accepted; the FIDO security keys (`sk-`) are those OpenSSH makes.
ACCEPTED = frozenset({
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
})
#: The smallest RSA key accepted: NIST's floor (OpenSSH's own, 1024, is too low for a login).
MIN_RSA_BITS = 2048


class KeyRefused(ValueError):
    """A public key is not accepted; the message says why, in one line."""


class PublicKey(NamedTuple):
    """A checked public key: `key` is `TYPE BASE64`, `fingerprint` as `ssh-keygen -l` prints it."""

    key: str
    fingerprint: str
    comment: str


def parse(text: str) -> PublicKey:
    """The one public key of `text` (a `.pub` file's content), or KeyRefused saying why not."""
    lines = text.strip().splitlines()
    if not lines:
        raise KeyRefused("no public key: the text is empty")
    if "PRIVATE KEY" in lines[0] or lines[0].startswith("PuTTY-User-Key-File"):
        raise KeyRefused("this is a private key: give the .pub file")
    if lines[0].startswith("---- BEGIN SSH2 PUBLIC KEY"):
        raise KeyRefused("this is an RFC 4716 (PuTTY) public key: convert it with "
                         "`ssh-keygen -i -f FILE` and give the line it prints")
    if len(lines) > 1:
        raise KeyRefused(f"{len(lines)} lines: give one public key, on one line")
    fields = lines[0].split(maxsplit=2)
    kind = fields[0]
    if kind not in ACCEPTED:
        raise KeyRefused(_refusal(lines[0]))
    if len(fields) < 2:
        raise KeyRefused(f"not an OpenSSH public key: nothing after {kind}")
    try:
        key = asyncssh.import_public_key(f"{kind} {fields[1]}")
    except asyncssh.KeyImportError:
        raise KeyRefused(f"not an OpenSSH public key: its base64 is not a whole {kind} key "
                         f"(cut short or altered)") from None
    rsa_key = key.pyca_key
    if isinstance(rsa_key, RSAPublicKey) and rsa_key.key_size < MIN_RSA_BITS:
        raise KeyRefused(f"an RSA key of {rsa_key.key_size} bits is too weak: "
                         f"at least {MIN_RSA_BITS}")
    return PublicKey(
        key=key.export_public_key("openssh").decode("ascii").strip(),
        fingerprint=key.get_fingerprint("sha256"),
        # Taken from the line, not from asyncssh, which refuses a comment that is not ASCII
        comment=fields[2].strip() if len(fields) > 2 else "",
    )


def _refusal(line: str) -> str:
    """Why a line whose first word is not an accepted key type is refused."""
    kind = line.split(maxsplit=1)[0]
    if kind == "ssh-dss":
        return "ssh-dss keys are no longer considered secure; use ed25519"
    if kind.endswith("-cert-v01@openssh.com"):
        return "this is an SSH certificate: give the plain public key (the .pub file)"
    if any(word in ACCEPTED for word in line.split()):
        return "options before the key type are not accepted: give the key alone"
    return f"not an OpenSSH public key: unknown key type {kind[:40]!r}"
