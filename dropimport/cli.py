"""The `dropimport` command: its root and `account`; `run`, agent and worker add their own.

The other commands (`run` in run.py, those of `agent` and `worker`) are found through the
`dropimport.commands` entry points, so that this root never imports agent or worker.
"""

import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from importlib import metadata
from typing import Any, BinaryIO, NoReturn, TextIO, TypeVar

import click

from schemas.settings import UMASK, Settings

from . import credentials, openpgp
from .accounts import (
    AccountError,
    Registry,
    notify_events,
    parse_size,
    sftp_auth_modes,
    shown_notify,
    with_defaults,
    with_notify,
)

_Command = TypeVar("_Command", bound=Callable[..., Any])


class Commands(click.Group):
    """A group completed by the commands other packages declare as entry points."""

    def __init__(
        self, *args: Any, entry_points: str = "dropimport.commands", **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.entry_points = entry_points

    def _plugins(self) -> dict[str, metadata.EntryPoint]:
        return {ep.name: ep for ep in metadata.entry_points(group=self.entry_points)}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self._plugins()})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in (plugins := self._plugins()):
            command = plugins[name].load()
        return command


def fail(message: str) -> NoReturn:
    """Exit non-zero with one clear line."""
    raise click.ClickException(message)


@click.group(cls=Commands)
@click.pass_context
def main(ctx: click.Context) -> None:
    """dropimport: a CSV dropped on FTP, imported into the contacts base."""
    try:
        ctx.obj = Settings.from_env()
    except ValueError as error:
        fail(str(error))
    os.umask(UMASK)  # inherited by `run`'s processes and the worker's dramatiq processes


@main.group()
def account() -> None:
    """Create and list accounts (one FTP login and home each) and their SSH keys."""


class Size(click.ParamType):
    """A size in bytes written as 5MB, 2GiB or 1048576."""

    name = "size"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> int:
        try:
            return value if isinstance(value, int) else parse_size(value)
        except AccountError as error:
            self.fail(str(error), param, ctx)


def limit_options(command: _Command) -> _Command:
    """The options of an account's limits and SFTP login, shared by `create` and `update`."""
    command = click.option("--max-file-size", type=Size(),
                           help="Largest upload accepted (default 2GiB).")(command)
    command = click.option("--uploads-per-hour", type=click.IntRange(1),
                           help="Uploads accepted per hour (default 120).")(command)
    command = click.option("--sftp-auth", type=click.Choice(sftp_auth_modes()),
                           help="How the account logs in over SFTP: with its keys, its password "
                                "or both (default both; FTP always uses the password).")(command)
    command = click.option("--max-ratio", type=click.IntRange(1),
                           help="How many times its size a compressed or encrypted upload may "
                                "expand (default 100).")(command)
    return click.option("--can-delete-reports/--cannot-delete-reports", default=None,
                        help="Whether the login may delete its reports.")(command)


def notify_options(command: _Command) -> _Command:
    """The options of an account's notifications, shared by `create` and `update`."""
    command = click.option("--notify-email", "emails", multiple=True, metavar="ADDRESS",
                           help="E-mail ADDRESS of the notifications (repeat for several; "
                                "'' for none).")(command)
    command = click.option("--webhook-url", metavar="URL",
                           help="POST the notifications to URL, signed with a secret generated "
                                "for it ('' for none).")(command)
    events, default = notify_events()
    return click.option("--notify-on", "on", multiple=True, type=click.Choice(events),
                        help=f"An event notified (repeat; default {', '.join(default)})."
                        )(command)


def notify_change(
    current: dict[str, Any] | None,
    emails: Sequence[str],
    webhook_url: str | None,
    on: Sequence[str],
    new_secret: bool = False,
) -> dict[str, Any] | None:
    """The account's new `notify`, or None when no option changes it."""
    if not (emails or webhook_url is not None or on or new_secret):
        return None
    return with_notify(current, emails, webhook_url, on, new_secret)


def echo_new_secret(current: dict[str, Any] | None, notify: dict[str, Any] | None) -> None:
    """Show a webhook secret once, when it was just made (it is never listed)."""
    secret = (notify or {}).get("webhook", {}).get("secret")
    if secret and secret != (current or {}).get("webhook", {}).get("secret"):
        click.echo(f"webhook secret (shown once; the receiver checks the signature with it): "
                   f"{secret}")


def warn_without_key(document: dict[str, Any]) -> None:
    """Warn when the account may log in over SFTP with a key only, and has none."""
    account = with_defaults(document)
    if account["sftp_auth"] == "keys" and not account["ssh_keys"]:
        click.echo(f"warning: account {account['name']} cannot log in over SFTP until a key is "
                   f"added (dropimport account add-key)", err=True)


def read_password(password_stdin: bool) -> str:
    if not password_stdin:
        fail("give the password on standard input with --password-stdin")
    return sys.stdin.readline().rstrip("\r\n")


#: How to log in to and trust a customer's server: a pull source's, an export's destination.
_SERVER_OPTIONS = (
    click.option("--password-stdin", is_flag=True,
                 help="Read the password from standard input (kept encrypted)."),
    click.option("--secret", metavar="env:NAME|file:/PATH",
                 help="Where to read the password instead, at each run."),
    click.option("--passive/--active", default=True, show_default=True,
                 help="FTP data connections."),
    click.option("--ca-file", type=click.Path(exists=True, dir_okay=False, resolve_path=True),
                 help="FTPS: trust these certificate authorities (PEM) instead of the system's."),
    click.option("--fingerprint",
                 help="Pin the server: FTPS certificate SHA-256 (hex), or SFTP host key "
                      "SHA256:..."),
    click.option("--known-hosts", type=click.Path(exists=True, dir_okay=False,
                                                  resolve_path=True),
                 help="SFTP: a known_hosts file (default ~/.ssh/known_hosts)."),
    click.option("--timeout", type=click.FloatRange(min=1), default=30, show_default=True,
                 help="Seconds to wait for the server."),
)


def server_options(command: _Command) -> _Command:
    """Add the options of a customer's server to `command`, which hands them on to
    `server_login` as keyword arguments."""
    for option in reversed(_SERVER_OPTIONS):
        command = option(command)
    return command


def server_login(settings: Settings, password_stdin: bool, secret: str | None, passive: bool,
                 ca_file: str | None, fingerprint: str | None, known_hosts: str | None,
                 timeout: float) -> dict[str, Any]:
    """How a source or an export logs in to a customer's server and trusts it: its `secret`
    (the password read from standard input, encrypted, or a reference to where it is), and
    the options given."""
    if password_stdin == bool(secret):
        fail("give the password with --password-stdin, or reference it with --secret "
             "env:NAME or --secret file:/PATH")
    if secret:
        if not secret.startswith(("env:", "file:/")):
            fail(f"bad --secret {secret!r}: write env:NAME or file:/PATH")
    else:
        try:
            secret = credentials.encrypt(read_password(True), settings.secret_key)
        except credentials.CredentialError as error:
            fail(str(error))
    trust = {"ca_file": ca_file, "fingerprint": fingerprint, "known_hosts": known_hosts}
    return {"secret": secret, "passive": passive, "timeout": timeout,
            **{name: value for name, value in trust.items() if value}}


@account.command("create")
@click.argument("name")
@click.option("--ftp-user", required=True, help="The FTP login of the account.")
@click.option("--password-stdin", is_flag=True, help="Read the FTP password from standard input.")
@limit_options
@notify_options
@click.pass_obj
def account_create(
    settings: Settings,
    name: str,
    ftp_user: str,
    password_stdin: bool,
    emails: tuple[str, ...],
    webhook_url: str | None,
    on: tuple[str, ...],
    **limits: int | bool | str | None,
) -> None:
    """Create account NAME with its FTP login and home."""
    password = read_password(password_stdin)
    notify = notify_change(None, emails, webhook_url, on)
    try:
        document = Registry(settings.home).create(name, ftp_user, password, notify=notify,
                                                  **limits)
    except AccountError as error:
        fail(str(error))
    click.echo(f"account {document['name']} created; FTP user {document['ftp_user']}")
    echo_new_secret(None, notify)
    warn_without_key(document)


@account.command("update")
@click.argument("name")
@limit_options
@notify_options
@click.option("--new-webhook-secret", is_flag=True, help="Replace the webhook's secret.")
@click.pass_obj
def account_update(
    settings: Settings,
    name: str,
    emails: tuple[str, ...],
    webhook_url: str | None,
    on: tuple[str, ...],
    new_webhook_secret: bool,
    **limits: int | bool | str | None,
) -> None:
    """Change the limits, SFTP login and notifications of account NAME."""
    registry = Registry(settings.home)
    try:
        current = registry.get(name).get("notify")
        notify = notify_change(current, emails, webhook_url, on, new_webhook_secret)
        document = registry.update(name, notify=notify, **limits)
    except AccountError as error:
        fail(str(error))
    click.echo(f"account {name} updated")
    echo_new_secret(current, notify)
    warn_without_key(document)


@account.command("set-password")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the new password from standard input.")
@click.pass_obj
def account_set_password(settings: Settings, name: str, password_stdin: bool) -> None:
    """Replace the FTP password of account NAME."""
    password = read_password(password_stdin)
    try:
        Registry(settings.home).set_password(name, password)
    except AccountError as error:
        fail(str(error))
    click.echo(f"password of account {name} replaced")


def shown_openpgp(keys: dict[str, Any]) -> dict[str, str]:
    """An account's OpenPGP keys as listed: the fingerprints, never a key."""
    shown = {"fingerprint": keys["fingerprint"]} if "fingerprint" in keys else {}
    if "signer" in keys:
        shown["signer"] = keys["signer"]["fingerprint"]
    return shown


@account.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def account_list(settings: Settings, as_json: bool) -> None:
    """List the accounts."""
    registry = Registry(settings.home)
    rows = [
        {
            "name": doc["name"],
            "ftp_user": doc["ftp_user"],
            "created_at": doc["created_at"],
            "templates": [t["file"] for t in registry.templates(doc["name"])],
            "sftp_auth": with_defaults(doc)["sftp_auth"],
            "keys": [key["fingerprint"] for key in doc.get("ssh_keys", [])],
            **({"notify": shown_notify(doc["notify"])} if doc.get("notify") else {}),
            **({"openpgp": shown_openpgp(doc["openpgp"])} if doc.get("openpgp") else {}),
        }
        for doc in registry.list()
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'ACCOUNT':20} {'FTP USER':20} {'CREATED':26} {'SFTP AUTH':9} {'KEYS':>4} "
               f"TEMPLATES / NOTIFY")
    for row in rows:
        files = ", ".join(row["templates"]) or "-"
        notify = row.get("notify", {})
        targets = ", ".join([*notify.get("email", []), *filter(None, [notify.get("webhook")])])
        notified = f" / {targets}" if targets else ""
        click.echo(f"{row['name']:20} {row['ftp_user']:20} {row['created_at']:26} "
                   f"{row['sftp_auth']:9} {len(row['keys']):>4} {files}{notified}")


@account.command("add-key")
@click.argument("name")
# errors="replace": a binary file given by mistake is refused as not a key, not with a traceback
@click.option("--key-file", type=click.File(encoding="utf-8", errors="replace"), required=True,
              help="The public key's .pub file ('-' for standard input).")
@click.pass_obj
def account_add_key(settings: Settings, name: str, key_file: TextIO) -> None:
    """Let account NAME log in over SFTP with a public key."""
    try:
        entry = Registry(settings.home).add_key(name, key_file.read())
    except AccountError as error:
        fail(str(error))
    about = ", ".join(filter(None, [entry["key"].split()[0], entry["comment"]]))
    click.echo(f"key {entry['fingerprint']} ({about}) added to account {name}")


@account.command("list-keys")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def account_list_keys(settings: Settings, name: str, as_json: bool) -> None:
    """List the SSH public keys of account NAME."""
    try:
        keys = Registry(settings.home).keys(name)
    except AccountError as error:
        fail(str(error))
    if as_json:
        click.echo(json.dumps(keys, indent=2))
        return
    kinds = [key["key"].split()[0] for key in keys]
    width = max(map(len, ["TYPE", *kinds]))
    # The comment is free text: last, so that it cannot push the other columns
    click.echo(f"{'FINGERPRINT':50} {'TYPE':{width}} {'ADDED':26} COMMENT")
    for key, kind in zip(keys, kinds, strict=True):
        click.echo(f"{key['fingerprint']:50} {kind:{width}} {key['added_at']:26} "
                   f"{key.get('comment', '')}")


@account.command("remove-key")
@click.argument("name")
@click.argument("fingerprint")
@click.pass_obj
def account_remove_key(settings: Settings, name: str, fingerprint: str) -> None:
    """Remove a key, by its FINGERPRINT (SHA256:...), from account NAME."""
    registry = Registry(settings.home)
    try:
        entry = registry.remove_key(name, fingerprint)
    except AccountError as error:
        fail(str(error))
    click.echo(f"key {entry['fingerprint']} removed from account {name}")
    warn_without_key(registry.get(name))


@account.command("pgp-key")
@click.argument("name")
@click.option("--generate", is_flag=True, help="Make the account's key pair (replaces one).")
@click.option("--import", "key_file", type=click.File("rb"), metavar="FILE",
              help="Take an existing key pair (its secret key, no passphrase; '-' for "
                   "standard input) instead.")
@click.option("--show", is_flag=True, help="Print the public key again.")
@click.pass_obj
def account_pgp_key(settings: Settings, name: str, generate: bool, key_file: BinaryIO | None,
                    show: bool) -> None:
    """The OpenPGP key pair of account NAME: the customer encrypts its files to the public key
    printed (ASCII armour), for templates with "encryption": "openpgp". The secret key is kept
    encrypted with DROPIMPORT_SECRET_KEY."""
    if generate + (key_file is not None) + show != 1:
        fail("give one of --generate, --import FILE or --show")
    registry = Registry(settings.home)
    try:
        current = registry.get(name).get("openpgp", {})
        if show:
            if "public_key" not in current:
                fail(f"account {name} has no OpenPGP key: make one with --generate")
            click.echo(current["public_key"], nl=False)
            return
        key = (openpgp.generate(f"dropimport {name} <{name}@dropimport.invalid>") if generate
               else openpgp.read_secret(key_file.read()))  # type: ignore[union-attr]
        assert key.secret_key is not None  # a key pair
        secret = credentials.encrypt(key.secret_key, settings.secret_key)
        registry.update(name, openpgp={**current, "fingerprint": key.fingerprint,
                                       "public_key": key.public_key, "secret_key": secret})
    except (AccountError, openpgp.OpenPGPError, credentials.CredentialError) as error:
        fail(str(error))
    click.echo(f"account {name}: OpenPGP key {openpgp.shown(key)}; give the customer "
               "this public key:", err=True)
    click.echo(key.public_key, nl=False)


@account.command("pgp-signer")
@click.argument("name")
@click.option("--key-file", type=click.File("rb"), metavar="FILE",
              help="The customer's public key ('-' for standard input): every encrypted file "
                   "must then be signed by it.")
@click.option("--remove", is_flag=True, help="Stop requiring a signature.")
@click.pass_obj
def account_pgp_signer(settings: Settings, name: str, key_file: BinaryIO | None,
                       remove: bool) -> None:
    """The customer's OpenPGP key that must sign the encrypted files of account NAME."""
    if (key_file is None) == (not remove):
        fail("give one of --key-file FILE or --remove")
    registry = Registry(settings.home)
    try:
        current = dict(registry.get(name).get("openpgp", {}))
        if remove:
            current.pop("signer", None)
            registry.update(name, openpgp=current)
            click.echo(f"account {name}: encrypted files no longer need a signature")
            return
        assert key_file is not None
        key = openpgp.read_public(key_file.read())
        registry.update(name, openpgp={**current, "signer": {
            "fingerprint": key.fingerprint, "public_key": key.public_key}})
    except (AccountError, openpgp.OpenPGPError) as error:
        fail(str(error))
    click.echo(f"account {name}: encrypted files must be signed by {openpgp.shown(key)}")


@main.group(cls=Commands, entry_points="dropimport.health")
def health() -> None:
    """Exit 0 when a process's dependencies are fine, else 1 with the reasons (probes)."""


def report_health(problems: Iterable[str | None]) -> None:
    """Print `healthy`, or fail with every problem found on one line."""
    found = [problem for problem in problems if problem]
    if found:
        fail("unhealthy: " + "; ".join(found))
    click.echo("healthy")
