"""`dropimport imports` (the history of imports: list, show, retry, cancel, notify) and
`dropimport contacts export`."""

import csv
import getpass
import json
import sys
from itertools import islice
from pathlib import Path
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
from ..write.journal import JournalError, Rollback
from .reading import STATUSES, all_imports, open_store, seen, spooled_record


@click.group()
def imports() -> None:
    """The history of imports, newest first."""


#: Who does an operator's deed, for the record.
_by = click.option("--by", default=lambda: getpass.getuser(), show_default="the user",
                   help="Who does it, for the record.")


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
        if key not in ("rejections", "changes", "rollback", *PROGRESS):
            click.echo(f"{key + ':':15}{'' if value is None else value}")
    if record["status"] == "running":
        click.echo(f"{'progress:':15}{progress_line(record)}")
    for line in changes_lines(record):
        click.echo(line)
    for rejection in record["rejections"]:
        where = f"line {rejection['line']}"
        if rejection["column"]:
            where += f", column {rejection['column']!r}"
        click.echo(f"  rejected {where}: {rejection['reason']}")
    if record["rejections"] and record["rejected_rows"] > len(record["rejections"]):
        click.echo(f"  … {record['rejected_rows'] - len(record['rejections']):,} more rejected "
                   "rows: see the rejected-rows report")


def changes_lines(record: ImportRecord) -> list[str]:
    """What an applied import changed, and what its rollback did, as `imports show` prints."""
    summary = record.get("changes")
    if not summary:
        return []
    lines = [f"{'changes:':15}{summary['created']} created, {summary['updated']} updated, "
             f"{summary['unsubscribed']} unsubscribed, {summary['resubscribed']} resubscribed"]
    for field, counted in summary["fields"].items():
        lines.append(f"  {field + ':':20} {counted['changed']:>9,} changed "
                     f"{counted['added']:>9,} added {counted['erased']:>9,} erased")
    rollback = record.get("rollback")
    if rollback:
        lines.append(f"{'rollback:':15}{rollback['deleted']} deleted, {rollback['restored']} "
                     f"restored, {rollback['left']} left as they are")
        lines += [f"  left {left['key'] or left['contact']}: {left['why']}"
                  for left in rollback["listed"]]
    return lines


@imports.command("diff")
@click.argument("import_id", metavar="ID")
@click.option("--field", help="Only the changes of this field.")
@click.option("--limit", type=click.IntRange(min=1), help="At most this many changes.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object a line.")
@click.pass_obj
def imports_diff(settings: Settings, import_id: str, field: str | None, limit: int | None,
                 as_json: bool) -> None:
    """List what an applied import changed: each contact's changed fields, before and after
    (after: as the contact is now), then the contacts it created."""
    store = open_store(settings)
    record = store.get_import(import_id)
    template = record and Registry(settings.home).template(record["account"], record["file"])
    changes = store.changes(import_id, template["match_on"] if template else "email", field)
    try:
        for change in islice(changes, limit):
            if as_json:
                click.echo(json.dumps(change.as_dict(), ensure_ascii=False, default=str))
            else:
                click.echo(f"{change.key}\t{change.change}\t{change.field}\t"
                           f"{_shown(change.before)} -> {_shown(change.after)}")
    except JournalError as error:
        fail(str(error))


def _shown(value: object) -> str:
    return "(none)" if value is None else json.dumps(value, ensure_ascii=False, default=str)


@imports.command("rollback")
@click.argument("import_id", metavar="ID")
@click.option("--dry-run", is_flag=True, help="Say what it would do, change nothing.")
@click.option("--force", is_flag=True,
              help="Also put back the contacts a later import changed since.")
@_by
@click.pass_obj
def imports_rollback(settings: Settings, import_id: str, dry_run: bool, force: bool,
                     by: str) -> None:
    """Put every contact an applied import touched back as it was, in one transaction:
    the contacts it created are deleted, the others get their keys, fields and
    subscription back. A contact changed by a later import since is left as it is and
    listed, unless --force."""
    outcome: Rollback = _operate(settings, "roll_back", import_id, by=by, force=force,
                                 dry_run=dry_run)
    said = "would be" if dry_run else "were"
    click.echo(f"import {import_id}{' (dry run)' if dry_run else ' rolled back'}: "
               f"{outcome.deleted} contacts it created {said} deleted, {outcome.restored} "
               f"{said} restored, {outcome.left} left as they are")
    for left in outcome.listed:
        click.echo(f"  left {left['key'] or left['contact']}: {left['why']}")
    if outcome.left > len(outcome.listed):
        click.echo(f"  … {outcome.left - len(outcome.listed):,} more left")


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
    _publish(_operate(settings, "requeue", import_id, force=force))
    click.echo(f"import {import_id} queued again")


def _publish(*events: FileEvent) -> None:
    """Send `events` to the workers."""
    from ..runtime.actors import import_file  # the broker, as the worker declares it

    for event in events:
        import_file.send(event)


@imports.command("approve")
@click.argument("import_id", metavar="ID")
@_by
@click.pass_obj
def imports_approve(settings: Settings, import_id: str, by: str) -> None:
    """Apply a held import (against the contacts as they are now); the files that waited
    behind it follow in order."""
    _publish(_operate(settings, "approve", import_id, by=by))
    click.echo(f"import {import_id} approved: queued to be applied")


@imports.command("reject")
@click.argument("import_id", metavar="ID")
@_by
@click.pass_obj
def imports_reject(settings: Settings, import_id: str, by: str) -> None:
    """Reject a held import: nothing of it is applied; the files that waited behind it
    are imported in order."""
    waiting: list[FileEvent] = _operate(settings, "reject", import_id, by=by)
    _publish(*waiting)
    click.echo(f"import {import_id} rejected" + (
        f"; {len(waiting)} waiting file(s) queued" if waiting else ""))


@imports.command("preview")
@click.argument("account_name", metavar="ACCOUNT")
@click.argument("path", metavar="FILE", type=click.Path(exists=True, dir_okay=False,
                                                        path_type=Path))
@click.option("--as", "name", metavar="NAME",
              help="The name it would be uploaded under (default: FILE's own).")
@click.option("--record", is_flag=True,
              help="Record it (a `previewed` import) and write its reports.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_obj
def imports_preview(settings: Settings, account_name: str, path: Path, name: str | None,
                    record: bool, as_json: bool) -> None:
    """Read, check and compare FILE with ACCOUNT's contacts as its import would, and say
    what it would change: nothing is changed."""
    try:
        Registry(settings.home).get(account_name)
    except AccountError as error:
        fail(str(error))
    result: ImportRecord = _operate(settings, "preview", account_name, path=path, name=name,
                                    record=record)
    if as_json:
        click.echo(json.dumps(result, indent=2, ensure_ascii=False))
        return
    click.echo(f"{result['file']}: {result['status']}, {result['rows']} rows: "
               f"{result['created']} would be created, {result['updated']} updated, "
               f"{result['unchanged']} unchanged, {result['skipped']} skipped, "
               f"{result['rejected_rows']} rejected")
    if result["reason"]:
        click.echo(f"{'reason:':15}{result['reason']}")
    for line in changes_lines(result):
        click.echo(line)
    for rejection in result["rejections"][:20]:
        click.echo(f"  rejected line {rejection['line']}: {rejection['reason']}")


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


def _operate(settings: Settings, operation: str, *arguments: Any, **options: Any) -> Any:
    """Run an operator's request on the Importer; one clear line when it cannot be done."""
    from ..runtime.actors import notify  # the broker, as the worker declares it

    store = open_store(settings)
    # A cancelled import is failed: the account's contacts hear of it as of any other.
    notifications = Notifications(Registry(settings.home), store, notify.send)
    try:
        return getattr(Importer(settings.home, store, settings.progress_ms / 1000,
                                notifications=notifications,
                                reader_processes=settings.reader_processes,
                                secret_key=settings.secret_key),
                       operation)(*arguments, **options)
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
