"""OpenPGP as the customers' tools make it: GnuPG (`gpg --encrypt --recipient`, `--sign`) in
a keyring of the customer's own, and Sequoia (pysequoia); the account's key pair made by
dropimport itself (dropimport/openpgp.py)."""

import os
import subprocess
from pathlib import Path

import pysequoia

from dropimport import openpgp


class Customer:
    """A customer's GnuPG keyring in `home`: its signing key, the account's public key."""

    def __init__(self, home: Path, account_key: openpgp.Key, name: str = "customer") -> None:
        self.home = home
        home.mkdir(mode=0o700, parents=True)
        self.gpg("--passphrase", "", "--pinentry-mode", "loopback", "--quick-generate-key",
                 f"{name} <it@{name}.example>", "ed25519", "sign", "never")
        listing = self.gpg("--with-colons", "--list-secret-keys").stdout
        self.fingerprint = next(line.split(":")[9] for line in listing.splitlines()
                                if line.startswith("fpr"))
        self.public_key = self.gpg("--armor", "--export", self.fingerprint).stdout
        self.account = account_key
        self.gpg("--import", input=account_key.public_key)

    def gpg(self, *args, input=None, check=True):
        return subprocess.run(["gpg", "--batch", "--no-tty", "--homedir", str(self.home),
                               "--trust-model", "always", *args], input=input,
                              capture_output=True, text=True, check=check, timeout=120)

    def encrypt(self, source: Path, target: Path, *options: str) -> Path:
        """`gpg --encrypt --recipient ACCOUNT OPTIONS -o target source`."""
        self.gpg("--encrypt", "--recipient", self.account.fingerprint, *options,
                 "--output", str(target), str(source))
        return target

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "gpg-agent"],
                       capture_output=True, check=False)


def sequoia_encrypt(source: Path, target: Path, public_key: str) -> Path:
    """A message made by Sequoia (pysequoia), binary, to `public_key`."""
    target.write_bytes(pysequoia.encrypt(source.read_bytes(),
                                         [pysequoia.Cert.from_bytes(public_key.encode())],
                                         armor=False))
    return target


def signer(customer: Customer) -> dict[str, str]:
    """The account's `openpgp.signer` for `customer`."""
    return {"fingerprint": customer.fingerprint, "public_key": customer.public_key}


os.environ.setdefault("RUST_BACKTRACE", "0")  # pysequoia's errors are one line
