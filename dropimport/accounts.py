"""The account registry on disk: account documents, templates, and the index by FTP user.

    accounts/<account>.json               the account document (account.schema.json)
    accounts/ftp-users/<user>             the index: the name of the account that owns <user>
    accounts/templates/<account>/<file>.json   one template per file name (template.schema.json)

Every lookup is O(1): a login reads its index entry and one document, never a scan.
"""

import builtins
import copy
import fnmatch
import json
import os
import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from schemas import SchemaError, Template, check_template, template_with_defaults, validate
from schemas.settings import Home

from .atomic import write_json
from .packaging import packing
from .sshkeys import KeyRefused, parse

ACCOUNT_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
FTP_USER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")

#: A template `file` holding one of these is a glob pattern (`contacts-*.csv`).
GLOB = re.compile(r"[*?[]")

_hasher = PasswordHasher()  # argon2id with its library's recommended cost


class AccountError(Exception):
    """An account operation cannot be done; the message says why, in one line."""


def _hash(password: str) -> str:
    if not password:
        raise AccountError("empty password: give one on standard input")
    return _hasher.hash(password)


_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]i?)?b?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """Bytes in `text`: `5MB` (10^6), `2GiB` (2^30), `500k`, `1048576`."""
    match = _SIZE.match(text)
    if not match:
        raise AccountError(f"bad size {text!r}: write it like 5MB, 2GiB or 1048576")
    number, unit = match.groups()
    return int(float(number) * _UNITS[(unit or "").lower()])


def with_notify(
    notify: dict[str, Any] | None,
    emails: Sequence[str] = (),
    webhook_url: str | None = None,
    on: Sequence[str] = (),
    new_secret: bool = False,
) -> dict[str, Any]:
    """The `notify` settings changed by an operator's options ('' removes the e-mails or the
    webhook). A new webhook gets a new random secret, kept with the account."""
    notify = copy.deepcopy(notify or {})
    if emails:
        notify["email"] = [email for email in emails if email]
    if webhook_url is not None:
        notify["webhook"] = {"url": webhook_url,
                             "secret": notify.get("webhook", {}).get("secret")}
    if notify.get("webhook") and (new_secret or not notify["webhook"]["secret"]):
        notify["webhook"]["secret"] = secrets.token_hex(32)
    if on:
        notify["on"] = list(on)
    return {key: value for key, value in notify.items()
            if value and (key != "webhook" or value["url"])}


def shown_notify(notify: dict[str, Any] | None) -> dict[str, Any]:
    """The `notify` settings as listed: the webhook's URL, never its secret."""
    notify = dict(notify or {})
    if "webhook" in notify:
        notify["webhook"] = notify["webhook"]["url"]
    return notify


def verify_password(password_hash: str, password: str) -> bool:
    """Constant-time check of `password` against an argon2id hash."""
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


@cache
def _schema() -> dict[str, Any]:
    text = resources.files("schemas").joinpath("account.schema.json").read_text("utf-8")
    return json.loads(text)


def _defaults(definition: str | None = None) -> dict[str, Any]:
    schema = _schema()
    properties = (schema["$defs"][definition] if definition else schema)["properties"]
    # Copies: a caller that changes a default list or object must not change the schema's
    return {name: copy.deepcopy(spec["default"])
            for name, spec in properties.items() if "default" in spec}


def notify_events() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The events an account can be notified of, and those notified unless it says."""
    on = _schema()["properties"]["notify"]["properties"]["on"]
    return tuple(on["items"]["enum"]), tuple(on["default"])


def sftp_auth_modes() -> tuple[str, ...]:
    """How an account may log in over SFTP: `keys`, `password` or `both`."""
    return tuple(_schema()["properties"]["sftp_auth"]["enum"])


def with_defaults(account: dict[str, Any]) -> dict[str, Any]:
    """An account document with the schema's default for each optional setting it lacks."""
    return {**_defaults(), **account}


def source_with_defaults(source: dict[str, Any]) -> dict[str, Any]:
    """A remote source (pull mode) with the schema's default for each setting it lacks."""
    return {**_defaults("source"), **source}


def export_with_defaults(name: str, export: dict[str, Any]) -> dict[str, Any]:
    """Scheduled export `name` with the schema's default for each setting it lacks; its file,
    unless named, is `<name>-{date}.csv` (or .jsonl)."""
    settings = {**_defaults("export"), **export}
    return {"file": f"{name}-{{date}}.{settings['format']}", **settings}


def file_matches(pattern: str, name: str) -> bool:
    """Whether an upload `name` is what a template's `file` names (a name or a glob)."""
    return fnmatch.fnmatchcase(name, pattern) if GLOB.search(pattern) else name == pattern


def _create_exclusive(path: Path, text: str) -> None:
    """Create `path` with `text`, failing with FileExistsError if it exists (atomic)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        file.write(text)


def _read_json(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as file:
        return json.load(file)


class Registry:
    """Accounts and their templates under `home.accounts`."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.root = home.accounts

    def _document(self, account: str) -> Path:
        return self.root / f"{account}.json"

    def _user_index(self, ftp_user: str) -> Path:
        return self.root / "ftp-users" / ftp_user

    def _template_path(self, account: str, file: str) -> Path:
        return self.root / "templates" / account / f"{file}.json"

    def create(self, name: str, ftp_user: str, password: str, **limits: object) -> dict[str, Any]:
        """Create an account and its FTP home; the password is kept only as a slow hash.

        `limits` are the account's optional settings (max_file_size, uploads_per_hour,
        can_delete_reports, sftp_auth, notify).
        """
        if not ACCOUNT_NAME.match(name):
            raise AccountError(
                f"bad account name {name!r}: use 1-63 lowercase letters, digits, '-' or '_'"
            )
        if not FTP_USER.match(ftp_user):
            raise AccountError(
                f"bad FTP user {ftp_user!r}: use 1-64 letters, digits, '.', '@', '-' or '_'"
            )
        if self._document(name).exists():
            raise AccountError(f"account {name!r} already exists")
        document = self._checked({
            "name": name,
            "ftp_user": ftp_user,
            "password_hash": _hash(password),
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
            **{key: value for key, value in limits.items() if value is not None},
        })
        # The index entry is created first and exclusively: two concurrent creations of the
        # same FTP user cannot both succeed.
        try:
            _create_exclusive(self._user_index(ftp_user), name)
        except FileExistsError:
            raise AccountError(
                f"FTP user {ftp_user!r} already belongs to another account"
            ) from None
        try:
            _create_exclusive(self._document(name), json.dumps(document, indent=2) + "\n")
        except FileExistsError:
            self._user_index(ftp_user).unlink()
            raise AccountError(f"account {name!r} already exists") from None
        self.home.make_root(name)
        return document

    def update(self, name: str, **changes: object) -> dict[str, Any]:
        """Change settings of an account (None leaves one as it is)."""
        document = self.get(name)
        document.update({key: value for key, value in changes.items() if value is not None})
        write_json(self._document(name), self._checked(document))
        return document

    def set_password(self, name: str, password: str) -> None:
        """Replace the password of an account (kept only as a slow hash)."""
        document = self.get(name)
        document["password_hash"] = _hash(password)
        write_json(self._document(name), self._checked(document))

    @staticmethod
    def _checked(document: dict[str, Any]) -> dict[str, Any]:
        try:
            return validate("account", document)
        except SchemaError as error:
            raise AccountError(str(error)) from None

    def get(self, name: str) -> dict[str, Any]:
        if not ACCOUNT_NAME.match(name):
            raise AccountError(f"no account {name!r}")
        try:
            return _read_json(self._document(name))
        except FileNotFoundError:
            raise AccountError(f"no account {name!r}") from None

    def by_ftp_user(self, ftp_user: str) -> dict[str, Any] | None:
        """The account document of an FTP login, or None."""
        if not FTP_USER.match(ftp_user):
            return None
        try:
            name = self._user_index(ftp_user).read_text("utf-8").strip()
            return _read_json(self._document(name))
        except FileNotFoundError:
            return None

    def list(self) -> builtins.list[dict[str, Any]]:
        return [_read_json(path) for path in sorted(self.root.glob("*.json"))]

    def set_template(self, account: str, template: dict[str, Any]) -> dict[str, Any]:
        """Validate and save the template of one file name of `account` (replacing any)."""
        self.get(account)
        check_template(template)
        write_json(self._template_path(account, template["file"]), template)
        return template

    def template(self, account: str, file: str) -> Template | None:
        """The template for `file` (by its exact name, else by a glob `file`, else, for a
        compressed or encrypted name, as the file inside: packaging.packing), or None; with
        its defaults (schemas.template_with_defaults). Whether the template takes that
        packing is `packaging.refusal`'s to say."""
        found = self._named(account, file)
        inner = packing(file).inner
        if found is None and inner != file:
            found = self._named(account, inner)
        return found

    def _named(self, account: str, file: str) -> Template | None:
        try:
            return template_with_defaults(_read_json(self._template_path(account, file)))
        except (FileNotFoundError, OSError):
            pass
        return next((t for t in self.templates(account)
                     if GLOB.search(t["file"]) and file_matches(t["file"], file)), None)

    def set_source(self, account: str, name: str, source: dict[str, Any]) -> dict[str, Any]:
        """Add or replace the remote source `name` of `account` (pull mode)."""
        return self._set_part(account, "sources", name, source)

    def remove_source(self, account: str, name: str) -> None:
        self._remove_part(account, "sources", name)

    def source(self, account: str, name: str) -> dict[str, Any]:
        """The remote source `name` of `account`, with its defaults."""
        return source_with_defaults(self._part(account, "sources", name))

    def set_export(self, account: str, name: str, export: dict[str, Any]) -> dict[str, Any]:
        """Add or replace the scheduled export `name` of `account`."""
        return self._set_part(account, "exports", name, export)

    def remove_export(self, account: str, name: str) -> None:
        self._remove_part(account, "exports", name)

    def export(self, account: str, name: str) -> dict[str, Any]:
        """The export `name` of `account`, with its defaults."""
        return export_with_defaults(name, self._part(account, "exports", name))

    # An account's named parts: its sources (pull mode) and its exports.

    def _set_part(self, account: str, kind: str, name: str,
                  part: dict[str, Any]) -> dict[str, Any]:
        if not ACCOUNT_NAME.match(name):
            raise AccountError(f"bad {kind[:-1]} name {name!r}: use 1-63 lowercase letters, "
                               "digits, '-' or '_'")
        document = self.get(account)
        document[kind] = {**document.get(kind, {}), name: part}
        write_json(self._document(account), self._checked(document))
        return part

    def _remove_part(self, account: str, kind: str, name: str) -> None:
        document = self.get(account)
        if name not in document.get(kind, {}):
            raise AccountError(f"account {account!r} has no {kind[:-1]} {name!r}")
        del document[kind][name]
        write_json(self._document(account), self._checked(document))

    def _part(self, account: str, kind: str, name: str) -> dict[str, Any]:
        try:
            return self.get(account).get(kind, {})[name]
        except KeyError:
            raise AccountError(f"account {account!r} has no {kind[:-1]} {name!r}") from None

    def add_key(self, account: str, text: str) -> dict[str, Any]:
        """Add the public key in `text` (a `.pub` file's line) to `account`; return its entry."""
        try:
            key = parse(text)
        except KeyRefused as error:
            raise AccountError(str(error)) from None
        document = self.get(account)
        if any(entry["fingerprint"] == key.fingerprint for entry in document.get("ssh_keys", [])):
            raise AccountError(f"account {account!r} already has key {key.fingerprint}")
        entry = {**key._asdict(), "added_at": datetime.now(UTC).isoformat(timespec="seconds")}
        document["ssh_keys"] = [*document.get("ssh_keys", []), entry]
        write_json(self._document(account), self._checked(document))
        return entry

    def remove_key(self, account: str, fingerprint: str) -> dict[str, Any]:
        """Remove the key of `fingerprint` (`SHA256:` may be left out); return its entry."""
        if not fingerprint.startswith("SHA256:"):
            fingerprint = f"SHA256:{fingerprint}"
        document = self.get(account)
        keys = document.get("ssh_keys", [])
        removed = next((entry for entry in keys if entry["fingerprint"] == fingerprint), None)
        if removed is None:
            raise AccountError(f"account {account!r} has no key {fingerprint}")
        document["ssh_keys"] = [entry for entry in keys if entry is not removed]
        write_json(self._document(account), self._checked(document))
        return removed

    def keys(self, account: str) -> builtins.list[dict[str, Any]]:
        """The SSH public keys of `account`, in the order they were added."""
        return self.get(account).get("ssh_keys", [])

    def templates(self, account: str) -> builtins.list[Template]:
        folder = self.root / "templates" / account
        return [template_with_defaults(_read_json(path)) for path in sorted(folder.glob("*.json"))]


__all__ = ["AccountError", "Registry", "SchemaError", "parse_size", "verify_password"]
