"""The worker's commands: `worker`, `imports list|show`, `contacts export`."""

import csv
import json
import os
import sys

import click
from sqlalchemy.exc import OperationalError

from schemas import EVENT_FILE, SchemaError
from schemas.accounts import AccountError, Registry
from schemas.cli import fail
from schemas.settings import redact

from . import template as engine
from .store import COUNTS, Store


def open_store(settings):
    """The contacts store, or one clear line when it cannot be reached."""
    try:
        return Store(settings.database_url)
    except OperationalError as error:
        reason = str(error.orig).strip().splitlines()[0]
        fail(f"cannot reach the contacts store at {redact(settings.database_url)}: {reason}")


@click.command()
@click.option("--processes", "-p", default=1, show_default=True, help="Worker processes.")
@click.option("--threads", "-t", default=4, show_default=True, help="Threads per process.")
def worker(processes, threads):
    """Run the dramatiq worker that imports files (same as `dramatiq worker.actors`)."""
    command = [sys.executable, "-m", "dramatiq", "worker.actors",
               "--processes", str(processes), "--threads", str(threads)]
    os.execv(sys.executable, command)


def queued(home, account=None):
    """Imports spooled and published but not yet started: their event is in the spool."""
    if account:
        accounts = [account]
    else:
        accounts = sorted(os.listdir(home.spool)) if home.spool.exists() else []
    for name in accounts:
        for event_path in sorted((home.spool / name).glob(f"*/{EVENT_FILE}"), reverse=True):
            try:
                with open(event_path, encoding="utf-8") as file:
                    event = json.load(file)
            except FileNotFoundError:
                continue  # started and archived meanwhile
            yield {
                "id": event["import_id"], "account": event["account"], "file": event["file"],
                "status": "queued", "received_at": event["received_at"],
                "started_at": None, "finished_at": None, **dict.fromkeys(COUNTS, 0),
                "reason": None, "size": event["size"], "sha256": event["sha256"],
                "rejections": [],
            }


def all_imports(settings, store, account=None):
    recorded = store.list_imports(account)
    known = {record["id"] for record in recorded}
    waiting = [r for r in queued(settings.home, account) if r["id"] not in known]
    return sorted(waiting + recorded, key=lambda r: (r["received_at"], r["id"]), reverse=True)


@click.group()
def template():
    """Record and show the import templates of an account."""


@template.command("set")
@click.argument("account_name", metavar="ACCOUNT")
@click.argument("path", metavar="TEMPLATE.json", type=click.Path(dir_okay=False))
@click.pass_obj
def template_set(settings, account_name, path):
    """Validate TEMPLATE.json and make it the template of its file for ACCOUNT."""
    try:
        with open(path, encoding="utf-8") as file:
            document = json.load(file)
    except OSError as error:
        fail(f"{path}: {error.strerror}")
    except json.JSONDecodeError as error:
        fail(f"{path}: line {error.lineno} column {error.colno}: {error.msg}")
    try:
        saved = Registry(settings.home).set_template(account_name, engine.check(document))
    except SchemaError as error:
        fail(f"{path}: {error}")
    except AccountError as error:
        fail(str(error))
    click.echo(f"template for {saved['file']} saved on account {account_name}")


@template.command("show")
@click.argument("account_name", metavar="ACCOUNT")
@click.argument("file", required=False)
@click.pass_obj
def template_show(settings, account_name, file):
    """Print the template of FILE, or all templates of ACCOUNT."""
    registry = Registry(settings.home)
    try:
        registry.get(account_name)
    except AccountError as error:
        fail(str(error))
    if file is None:
        click.echo(json.dumps(registry.templates(account_name), indent=2, ensure_ascii=False))
        return
    found = registry.template(account_name, file)
    if found is None:
        fail(f"account {account_name!r} has no template for {file!r}")
    click.echo(json.dumps(found, indent=2, ensure_ascii=False))


@click.group()
def imports():
    """The history of imports, newest first."""


@imports.command("list")
@click.option("--account", help="Only this account's imports.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def imports_list(settings, account, as_json):
    """List imports, newest first."""
    records = all_imports(settings, open_store(settings), account)
    if as_json:
        for record in records:
            del record["rejections"]
        click.echo(json.dumps(records, indent=2, ensure_ascii=False))
        return
    click.echo(f"{'ID':28} {'ACCOUNT':14} {'FILE':18} {'STATUS':9} {'RECEIVED':25} "
               f"{'ROWS':>7} {'NEW':>7} {'UPD':>7} {'SAME':>7} {'REJ':>5}")
    for r in records:
        click.echo(f"{r['id']:28} {r['account']:14} {r['file']:18} {r['status']:9} "
                   f"{r['received_at'][:23]:25} {r['rows']:7} {r['created']:7} "
                   f"{r['updated']:7} {r['unchanged']:7} {r['rejected_rows']:5}")


@imports.command("show")
@click.argument("import_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_obj
def imports_show(settings, import_id, as_json):
    """Show one import with the reason of a rejection or failure."""
    record = open_store(settings).get_import(import_id)
    if record is None:
        record = next((r for r in queued(settings.home) if r["id"] == import_id), None)
    if record is None:
        fail(f"no import {import_id!r}")
    if as_json:
        click.echo(json.dumps(record, indent=2, ensure_ascii=False))
        return
    for key, value in record.items():
        if key != "rejections":
            click.echo(f"{key + ':':15}{'' if value is None else value}")
    for rejection in record["rejections"]:
        where = f"line {rejection['line']}"
        if rejection["column"]:
            where += f", column {rejection['column']!r}"
        click.echo(f"  rejected {where}: {rejection['reason']}")


@click.group()
def contacts():
    """The contacts of an account."""


@contacts.command("export")
@click.argument("account_name", metavar="ACCOUNT")
@click.option("--format", "fmt", type=click.Choice(["csv", "jsonl"]), default="csv",
              show_default=True)
@click.option("--output", "-o", type=click.File("w", encoding="utf-8"), default="-",
              help="Write to PATH instead of standard output.")
@click.pass_obj
def contacts_export(settings, account_name, fmt, output):
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
    writer.writerows(rows)
