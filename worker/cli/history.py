"""`dropimport imports` (the history of imports: list, show, retry, cancel, notify) and
`dropimport contacts export`."""

import csv
import json
import sys
from typing import Any, TextIO

import click

from dropimport.accounts import AccountError, Registry
from dropimport.cli import fail
from schemas import FileEvent
from schemas.settings import Settings
from schemas.spool import is_queued

from .. import spool
from ..importer import Importer, OperationError
from ..notify import CHANNELS, Delivery, DeliveryError, Notifications, import_notice
from ..record import FINAL, PROGRESS, ImportRecord
from .reading import STATUSES, all_imports, open_store, seen, spooled_record


@click.group()
def imports() -> None:
    """The history of imports, newest first."""


@imports.command("list")
@click.option("--account", help="Only this account's imports.")
@click.option("--status", type=click.Choice(STATUSES), help="Only imports in this status.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def imports_list(settings: Settings, account: str | None, status: str | None,
                 as_json: bool) -> None:
    """List imports, newest first."""
    records = all_imports(settings, open_store(settings), account)
    if status:
        records = [record for record in records if record["status"] == status]
    if as_json:
        listed = [{key: value for key, value in record.items() if key != "rejections"}
                  for record in records]
        click.echo(json.dumps(listed, indent=2, ensure_ascii=False))
        return
    click.echo(f"{'ID':28} {'ACCOUNT':14} {'FILE':18} {'STATUS':11} {'RECEIVED':25} "
               f"{'ROWS':>7} {'NEW':>7} {'UPD':>7} {'SAME':>7} {'REJ':>5}")
    for r in records:
        click.echo(f"{r['id']:28} {r['account']:14} {r['file']:18} {r['status']:11} "
                   f"{r['received_at'][:23]:25} {r['rows']:7} {r['created']:7} "
                   f"{r['updated']:7} {r['unchanged']:7} {r['rejected_rows']:5}")


@imports.command("show")
@click.argument("import_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_obj
def imports_show(settings: Settings, import_id: str, as_json: bool) -> None:
    """Show one import with the reason of a rejection or failure."""
    record = open_store(settings).get_import(import_id)
    event, kept = spool.locate(settings.home, import_id)
    if event is not None and kept is not None and is_queued(settings.home, kept):
        record = spooled_record(spool.spooled(kept, event), record)
    if record is None:
        fail(f"no import {import_id!r}")
    record = seen(settings, record)
    if as_json:
        click.echo(json.dumps(record, indent=2, ensure_ascii=False))
        return
    for key, value in record.items():
        if key not in ("rejections", *PROGRESS):
            click.echo(f"{key + ':':15}{'' if value is None else value}")
    if record["status"] == "running":
        click.echo(f"{'progress:':15}{progress_line(record)}")
    for rejection in record["rejections"]:
        where = f"line {rejection['line']}"
        if rejection["column"]:
            where += f", column {rejection['column']!r}"
        click.echo(f"  rejected {where}: {rejection['reason']}")
    if record["rejections"] and record["rejected_rows"] > len(record["rejections"]):
        click.echo(f"  … {record['rejected_rows'] - len(record['rejections']):,} more rejected "
                   "rows: see the rejected-rows report")


def progress_line(record: ImportRecord) -> str:
    """How far a running import is, as its last progress report said."""
    if record["progress_at"] is None:
        return "none reported yet"
    left = record["seconds_left"]
    return (f"{record['rows_done']} rows done, {record['rows_per_second']} rows/s, "
            f"{'unknown time' if left is None else f'about {left} s'} left "
            f"(at {record['progress_at']})")


@imports.command("retry")
@click.argument("import_id", metavar="ID")
@click.option("--force", is_flag=True,
              help="Also when a newer import of the same file was applied since.")
@click.pass_obj
def imports_retry(settings: Settings, import_id: str, force: bool) -> None:
    """Import a failed or rejected import again, from its kept file."""
    event = _operate(settings, "requeue", import_id, force=force)
    assert event is not None  # Importer.requeue returns the event to publish
    from ..runtime.actors import import_file  # the broker, as the worker declares it

    import_file.send(event)
    click.echo(f"import {import_id} queued again")


@imports.command("cancel")
@click.argument("import_id", metavar="ID")
@click.pass_obj
def imports_cancel(settings: Settings, import_id: str) -> None:
    """Cancel a queued import: it is recorded failed and its file kept in failed/."""
    _operate(settings, "cancel", import_id)
    click.echo(f"import {import_id} cancelled")


@imports.command("notify")
@click.argument("import_id", metavar="ID")
@click.pass_obj
def imports_notify(settings: Settings, import_id: str) -> None:
    """Send the notifications of a finished import now, on each of its account's channels."""
    record = open_store(settings).get_import(import_id)
    if record is None or record["status"] not in FINAL:
        fail(f"import {import_id} is not finished: nothing to notify yet")
    registry = Registry(settings.home)
    try:
        notify = registry.get(record["account"]).get("notify") or {}
    except AccountError as error:
        fail(str(error))
    channels = [channel for channel in CHANNELS if notify.get(channel)]
    if not channels:
        fail(f"account {record['account']} has no e-mail or webhook to notify")
    if "email" in channels and not settings.smtp.host:
        fail("cannot e-mail: DROPIMPORT_SMTP_HOST is not set")
    failed = False
    for channel in channels:
        try:
            Delivery(registry, settings.smtp)(channel, import_notice(record))
            click.echo(f"{channel}: sent")
        except DeliveryError as error:
            click.echo(f"{channel}: {error}", err=True)
            failed = True
    if failed:
        sys.exit(1)


def _operate(settings: Settings, operation: str, import_id: str,
             **options: Any) -> FileEvent | None:
    """Run an operator's request on the Importer; one clear line when it cannot be done."""
    from ..runtime.actors import notify  # the broker, as the worker declares it

    store = open_store(settings)
    # A cancelled import is failed: the account's contacts hear of it as of any other.
    notifications = Notifications(Registry(settings.home), store, notify.send)
    try:
        return getattr(Importer(settings.home, store, settings.progress_ms / 1000,
                                notifications=notifications,
                                reader_processes=settings.reader_processes),
                       operation)(import_id, **options)
    except OperationError as error:
        fail(str(error))


@click.group()
def contacts() -> None:
    """The contacts of an account."""


@contacts.command("export")
@click.argument("account_name", metavar="ACCOUNT")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv",
              show_default=True)
@click.option("--output", "-o", type=click.File("w", encoding="utf-8"), default="-",
              help="Write to PATH instead of standard output.")
@click.pass_obj
def contacts_export(settings: Settings, account_name: str, fmt: str, output: TextIO) -> None:
    """Export the contacts of ACCOUNT, one per line, keys named as in its templates."""
    registry = Registry(settings.home)
    try:
        registry.get(account_name)
    except AccountError as error:
        fail(str(error))
    names = ["email"]
    for template in registry.templates(account_name):
        names += [name for name in template["fields"] if name not in names]
    names.append("unsubscribed")
    rows = open_store(settings).export(account_name)
    if fmt == "jsonl":
        for contact in rows:
            output.write(json.dumps({**dict.fromkeys(names), **contact}, ensure_ascii=False))
            output.write("\n")
        return
    writer = csv.DictWriter(output, fieldnames=names, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({name: _cell(value) for name, value in contact.items()} for contact in rows)


def _cell(value: object) -> object:
    """A value as a CSV cell: booleans as JSON spells them, which the boolean type reads."""
    return json.dumps(value) if isinstance(value, bool) else value
