"""The passwords of remote sources (pull mode): kept encrypted, or referenced, never in clear.

A source's `secret` is one of:

    fernet:TOKEN    the password encrypted with DROPIMPORT_SECRET_KEY (Fernet: AES + HMAC)
    env:NAME        the agent's environment variable NAME
    file:/PATH      the first line of a file (a Docker or Kubernetes secret, say)
"""

import os
from collections.abc import Mapping

from cryptography.fernet import Fernet, InvalidToken


class CredentialError(Exception):
    """A source's password cannot be had; the message says why and never holds it."""


def new_key() -> str:
    """A new DROPIMPORT_SECRET_KEY."""
    return Fernet.generate_key().decode()


def _fernet(key: str | None) -> Fernet:
    if not key:
        raise CredentialError(
            "DROPIMPORT_SECRET_KEY is not set: make one with `dropimport source new-key` and "
            "give the same one to every agent, or reference the password as env:NAME or file:/PATH"
        )
    try:
        return Fernet(key)
    except ValueError:
        raise CredentialError(
            "DROPIMPORT_SECRET_KEY is not a Fernet key (32 url-safe base64-encoded bytes); "
            "make one with `dropimport source new-key`"
        ) from None


def encrypt(password: str, key: str | None) -> str:
    """The `secret` of a source whose password is `password`."""
    if not password:
        raise CredentialError("empty password: give one on standard input")
    return "fernet:" + _fernet(key).encrypt(password.encode()).decode()


def reveal(secret: str, key: str | None, environ: Mapping[str, str] | None = None) -> str:
    """The password a `secret` holds or references."""
    kind, _, value = secret.partition(":")
    if kind == "fernet":
        try:
            return _fernet(key).decrypt(value.encode()).decode()
        except InvalidToken:
            raise CredentialError(
                "the password cannot be decrypted with DROPIMPORT_SECRET_KEY "
                "(another key encrypted it): set it again with `dropimport source add`"
            ) from None
    if kind == "env":
        env = os.environ if environ is None else environ
        if not env.get(value):
            raise CredentialError(f"environment variable {value} (the password) is not set")
        return env[value]
    if kind == "file":
        try:
            with open(value, encoding="utf-8") as file:
                return file.readline().rstrip("\r\n")
        except OSError as error:
            raise CredentialError(
                f"cannot read the password file {value}: {error.strerror}"
            ) from None
    raise CredentialError(f"unknown kind of secret {kind!r}: use fernet:, env: or file:")


def shown(secret: str) -> str:
    """How a `secret` is shown to an operator: its kind and reference, never a password."""
    return "encrypted" if secret.startswith("fernet:") else secret
