"""`dropimport export`: an account's scheduled exports (add, list, run, history, remove)."""

import json
import time
from contextlib import closing
from datetime import UTC, datetime
from typing import Any

import click

from dropimport import remote
from dropimport.accounts import AccountError, Registry
from dropimport.cli import fail, server_login, server_options
from dropimport.schedule import ScheduleError, check_schedule, next_run, zone
from schemas import ExportEvent, export_event
from schemas.settings import Settings
from schemas.spool import new_import_id

from .. import exports
from ..exporter import destination
from ..write.exports import ENDED
from .reading import open_store

#: How the command line names a delimiter.
DELIMITERS = {";": ";", ",": ",", "tab": "\t", "|": "|"}


@click.group()
def export() -> None:
    """Scheduled exports of an account's contacts, to its exports/ folder or its own server."""


@export.command("add")
@click.argument("account")
@click.argument("name")
@click.option("--schedule", required=True, metavar="CRON",
              help="When to export, e.g. '0 6 * * *' (every day at 06:00).")
@click.option("--timezone", default="UTC", show_default=True,
              help="The schedule's time zone, and the file name's {date} and {time}.")
@click.option("--fields", metavar="NAME,...",
              help="The columns, in order (keys, template fields, unsubscribed, created_at, "
                   "updated_at). Default: the templates' fields, then unsubscribed.")
@click.option("--only", type=click.Choice(["all", "changed", "unsubscribed"]), default="all",
              show_default=True,
              help="changed: created, updated or (un)subscribed since the last successful run.")
@click.option("--format", "form", type=click.Choice(["csv", "jsonl"]), default="csv",
              show_default=True)
@click.option("--delimiter", type=click.Choice(list(DELIMITERS)), default=";",
              show_default=True, help="CSV: the cell separator.")
@click.option("--encoding", type=click.Choice(["utf-8", "utf-8-sig", "cp1252"]),
              default="utf-8", show_default=True,
              help="utf-8-sig: with a BOM, as Excel expects; cp1252 writes ? for what it lacks.")
@click.option("--gzip", "packed", is_flag=True, help="Compress the file (adds .gz).")
@click.option("--file", "file_name", metavar="NAME",
              help="The file's name; {date} is YYYYMMDD, {time} HHMMSS of the planned run. "
                   "Default: NAME-{date}.csv (or .jsonl).")
@click.option("--to", "to", default="hosted", show_default=True, metavar="hosted|URL",
              help="hosted: the account's exports/ folder; or ftp|ftps|sftp://USER@HOST"
                   "[:PORT]/DIR/ on the customer's server.")
@server_options
@click.option("--marker", metavar="SUFFIX",
              help="Write an empty <file><SUFFIX> (say .done) once the file is complete.")
@click.option("--keep", type=click.IntRange(min=1), default=7, show_default=True,
              help="hosted: the newest files of this export kept in exports/.")
@click.pass_obj
def export_add(settings: Settings, account: str, name: str, schedule: str, timezone: str,
               fields: str | None, only: str, form: str, delimiter: str, encoding: str,
               packed: bool, file_name: str | None, to: str, marker: str | None, keep: int,
               **server: Any) -> None:
    """Add (or replace) export NAME of ACCOUNT: which contacts, in what file, where, when."""
    registry = Registry(settings.home)
    try:
        templates = registry.templates(account)
        check_schedule(schedule, timezone)
        where = None if to == "hosted" else remote.parse_url(to, with_file=False)
    except (AccountError, ScheduleError, remote.UrlError) as error:
        fail(str(error))
    columns = [f.strip() for f in fields.split(",") if f.strip()] if fields else None
    if columns and (unknown := exports.unknown_fields(columns, templates)):
        fail(f"unknown field(s) {', '.join(unknown)}: name keys (email, external_id, phone), "
             "fields of the account's templates, unsubscribed, created_at or updated_at")
    if where is not None:
        where.update(server_login(settings, **server))
    elif server["password_stdin"] or server["secret"]:
        fail("a hosted export needs no password: give --password-stdin or --secret with a URL")
    document: dict[str, Any] = {
        "schedule": schedule, "timezone": timezone, "only": only, "format": form,
        "delimiter": DELIMITERS[delimiter], "encoding": encoding, "gzip": packed,
        "to": where or "hosted", **({"file": file_name} if file_name else {}),
        "keep": keep, "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **({"fields": columns} if columns else {}), **({"marker": marker} if marker else {}),
    }
    try:
        registry.set_export(account, name, document)
        export = registry.export(account, name)
    except AccountError as error:
        fail(str(error))
    planned = next_run(export, datetime.now(UTC)).astimezone(zone(timezone))
    click.echo(f"export {name} of account {account}: {only} contacts as "
               f"{exports.file_name(export, planned)} to "
               f"{destination(export)}, schedule {schedule} "
               f"({timezone}); next run {planned:%Y-%m-%d %H:%M %Z}")
    if not columns and not templates:
        click.echo(f"warning: account {account} has no template yet: until it has one, the "
                   "export writes the standard keys and unsubscribed only", err=True)


@export.command("remove")
@click.argument("account")
@click.argument("name")
@click.pass_obj
def export_remove(settings: Settings, account: str, name: str) -> None:
    """Remove export NAME of ACCOUNT (its files and history stay)."""
    try:
        Registry(settings.home).remove_export(account, name)
    except AccountError as error:
        fail(str(error))
    click.echo(f"export {name} of account {account} removed")


def described(account: str, name: str, export: dict[str, Any],
              last: dict[str, Any] | None) -> dict[str, Any]:
    """An export as `export list` shows it: never a password."""
    return {
        "account": account, "export": name, "schedule": export["schedule"],
        "timezone": export["timezone"], "only": export["only"], "format": export["format"],
        "file": export["file"], "to": destination(export),
        "next_run": next_run(export, datetime.now(UTC)).isoformat(timespec="seconds"),
        "last_run": last,
    }


@export.command("list")
@click.argument("account", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def export_list(settings: Settings, account: str | None, as_json: bool) -> None:
    """List the exports (of ACCOUNT) with their last runs."""
    registry = Registry(settings.home)
    try:
        documents = [registry.get(account)] if account else registry.list()
    except AccountError as error:
        fail(str(error))
    with closing(open_store(settings)) as store:
        last = {(r["account"], r["export"]): r
                for r in store.export_runs(account, last=True, limit=10_000)}
    rows = [described(doc["name"], name, registry.export(doc["name"], name),
                      last.get((doc["name"], name)))
            for doc in documents for name in sorted(doc.get("exports", {}))]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'ACCOUNT':16} {'EXPORT':14} {'SCHEDULE':16} {'ONLY':12} {'LAST RUN':44} TO")
    for row in rows:
        click.echo(f"{row['account']:16} {row['export']:14} {row['schedule']:16} "
                   f"{row['only']:12} {_last(row['last_run']):44} {row['to']}")
        if row["last_run"] and row["last_run"]["error"]:
            click.echo(f"  {row['last_run']['status']}: {row['last_run']['error']}")


def _last(run: dict[str, Any] | None) -> str:
    if run is None:
        return "never"
    when = run["finished_at"] or run["started_at"]
    if run["status"] != "done":
        return f"{run['status']} {when[:19]}"
    return f"done {when[:19]} {run['rows']} rows {run['bytes']} B"


@export.command("run")
@click.argument("account")
@click.argument("name")
@click.option("--wait/--no-wait", default=True, show_default=True,
              help="Wait for the run to end and say how it went.")
@click.option("--timeout", type=click.FloatRange(min=1), default=600, show_default=True,
              help="Seconds to wait.")
@click.pass_obj
def export_run(settings: Settings, account: str, name: str, wait: bool,
               timeout: float) -> None:
    """Run export NAME of ACCOUNT now, as its schedule would (a worker runs it)."""
    try:
        Registry(settings.home).export(account, name)
    except AccountError as error:
        fail(str(error))
    event = export_event(account, name, datetime.now(UTC), manual=new_import_id())
    _publish(event)
    click.echo(f"export run {event['run_id']} queued")
    if not wait:
        return
    deadline = time.monotonic() + timeout
    with closing(open_store(settings)) as store:
        while (run := store.export_run(event["run_id"])) is None or run["status"] not in ENDED:
            if time.monotonic() > deadline:
                fail(f"export run {event['run_id']} has not ended within {timeout:g} s "
                     f"({run['status'] if run else 'no worker took it yet'}); follow it with "
                     f"`dropimport export history {account} {name}`")
            time.sleep(0.5)
    if run["status"] == "failed":
        fail(f"export run {run['id']} failed: {run['error']}")
    click.echo(f"done: {run['rows']} contacts, {run['bytes']} bytes to {run['destination']}")


def _publish(event: ExportEvent) -> None:
    from ..runtime.actors import export_contacts  # the broker, as the worker declares it

    export_contacts.send(event)


@export.command("history")
@click.argument("account")
@click.argument("name")
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def export_history(settings: Settings, account: str, name: str, limit: int,
                   as_json: bool) -> None:
    """The runs of export NAME of ACCOUNT, newest first."""
    with closing(open_store(settings)) as store:
        runs = store.export_runs(account, name, limit)
    if as_json:
        click.echo(json.dumps(runs, indent=2))
        return
    click.echo(f"{'RUN':48} {'STATUS':9} {'TRIES':5} {'ROWS':>9} {'BYTES':>11} FILE")
    for run in runs:
        click.echo(f"{run['id']:48} {run['status']:9} {run['attempts']:5} "
                   f"{run['rows'] if run['rows'] is not None else '-':>9} "
                   f"{run['bytes'] if run['bytes'] is not None else '-':>11} "
                   f"{run['destination']}")
        if run["error"]:
            click.echo(f"  {run['error']}")
