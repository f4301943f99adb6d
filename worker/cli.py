"""The worker's commands: `worker`, `template`, `imports`, `contacts export`."""

import csv
import errno
import json
import os
import socket
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import click
from sqlalchemy.exc import OperationalError, SQLAlchemyError

from dropimport.accounts import AccountError, Registry
from dropimport.cli import fail, report_health
from dropimport.health import broker_problem, disk_problem
from dropimport.logs import resolve as resolve_log_format
from schemas import SchemaError
from schemas.settings import redact
from schemas.spool import is_queued

from . import heartbeat, metrics, spool
from . import status as status_report
from . import template as engine
from .importer import Importer, OperationError
from .late import late_files
from .notify import CHANNELS, Delivery, DeliveryError, Notifications, import_notice
from .progress import as_seen
from .sample import SampleError, propose, read_sample
from .store import COUNTS, FINAL, PROGRESS, Store, no_progress, store_problem

#: The statuses of import records, and `interrupted`: how readers show a running import whose
#: worker stopped without a word (progress.as_seen).
STATUSES = ("queued", "running", "interrupted", "imported", "rejected", "failed")


def open_store(settings):
    """The contacts store, or one clear line when it cannot be reached."""
    try:
        return Store(settings.database_url)
    except OperationalError as error:
        fail(unreachable(settings.database_url, error))


def unreachable(url, error):
    """The line saying why the contacts store at `url` could not be opened (`error`)."""
    return f"cannot reach the contacts store at {redact(url)}: {store_problem(error)[0]}"


@click.command()
@click.option("--processes", "-p", default=1, show_default=True, help="Worker processes.")
@click.option("--threads", "-t", default=4, show_default=True, help="Threads per process.")
@click.pass_obj
def worker(settings, processes, threads):
    """Run the dramatiq worker that imports files, with its metrics on one port."""
    wait_for_store(settings.database_url)
    command = [sys.executable, "-m", "dramatiq", "worker.actors", "--skip-logging",
               "--processes", str(processes), "--threads", str(threads)]
    os.execve(sys.executable, command, worker_environment(settings, os.environ, threads))


def wait_for_store(url, pause=2.0):
    """Return once the contacts store at `url` can be used, waiting for its server with one
    line said; fail in one line at once when no wait mends it (a missing database, a refused
    login, a malformed URL): a worker would retry each file against it, and fail it."""
    where, waiting = f"the contacts store at {redact(url)}", False
    while True:
        try:
            Store(url).close()
        except (SQLAlchemyError, ValueError) as error:  # ValueError: an unparsable port
            problem, worth_waiting = store_problem(error)
            if not worth_waiting:
                fail(f"cannot use {where}: {problem}")
            if not waiting:
                click.echo(f"waiting for {where}: {problem}", err=True)
                waiting = True
            time.sleep(pause)
        else:
            if waiting:
                click.echo(f"{where} answers: starting", err=True)
            return


def worker_environment(settings, environ, threads):
    """The environment of the dramatiq processes, whose settings are environment variables.

    Each process takes no more messages than it has threads (dramatiq takes twice as many):
    a message never waits in a process whose threads are all busy, with long imports maybe,
    while another process could take it. An operator's dramatiq_queue_prefetch wins.

    dramatiq's processes log to a pipe, not to this terminal: the log format is chosen here.
    The worker processes keep their metrics in a directory of files that the Prometheus
    middleware's server reads: a new one of this worker's own, named after this process, which
    becomes dramatiq's main process. A metrics port already taken stops the worker here, before
    it touches any directory: most likely another worker serves there.
    """
    env = {"dramatiq_queue_prefetch": str(threads), **environ,
           "DROPIMPORT_LOG_FORMAT": resolve_log_format(settings.log_format)}
    if settings.worker_metrics_port is None:
        return env
    host, port = settings.metrics_host, settings.worker_metrics_port
    try:
        with socket.socket() as probe:  # bound as the middleware's HTTPServer will be
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        guess = "; another worker?" if error.errno == errno.EADDRINUSE else ""
        fail(f"cannot serve metrics on {host}:{port} ({error.strerror}{guess}); "
             "set DROPIMPORT_WORKER_METRICS_PORT to a free port, or off")
    folder = metrics.own_folder(Path(tempfile.gettempdir()), port, os.getpid())
    return {**env, "PROMETHEUS_MULTIPROC_DIR": str(folder), "dramatiq_prom_db": str(folder),
            "dramatiq_prom_host": host, "dramatiq_prom_port": str(port)}


def _spooled(spooled, record=None):
    """The record of an import as the spool shows it: queued, or failed by a dead letter."""
    event = spooled.event
    record = record or {
        "id": event["import_id"], "account": event["account"], "file": event["file"],
        "status": "queued", "received_at": event["received_at"], "started_at": None,
        "finished_at": None, **dict.fromkeys(COUNTS, 0), "reason": None, "note": None,
        "encoding": None, "delimiter": None, "size": event["size"],
        "sha256": event["sha256"], "rejections": [], **no_progress(0),
    }
    if spooled.failure:
        record = {**record, "status": "failed", "reason": spooled.failure["reason"]}
    return record


def all_imports(settings, store, account=None):
    """Every import, newest first: the store's records, completed by the spool's view."""
    return with_spool(settings, store.list_imports(account), account)


def with_spool(settings, records, account=None):
    """`records` completed by the spool's view (queued, dead-lettered), as readers see them
    (`seen`), newest first."""
    records = {record["id"]: record for record in records}
    for spooled in spool.pending(settings.home, account):
        import_id = spooled.event["import_id"]
        records[import_id] = _spooled(spooled, records.get(import_id))
    return sorted((seen(settings, record) for record in records.values()),
                  key=lambda r: (r["received_at"], r["id"]), reverse=True)


def seen(settings, record):
    """`record` as readers show it now: a running import whose progress is too old for the
    workers' progress interval is `interrupted` (progress.as_seen)."""
    return as_seen(record, datetime.now(UTC), settings.progress_ms / 1000)


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


@template.command("from-sample")
@click.argument("account_name", metavar="ACCOUNT")
@click.argument("path", metavar="SAMPLE.csv", type=click.Path(dir_okay=False))
@click.option("--map", "maps", multiple=True, metavar="COLUMN=FIELD",
              help="Import COLUMN (name or 1-based position) as FIELD, or not at all with -.")
@click.option("--output", type=click.Path(dir_okay=False), metavar="PATH",
              help="Write the template to PATH instead of saving it on ACCOUNT.")
@click.pass_obj
def template_from_sample(settings, account_name, path, maps, output):
    """Propose a template from SAMPLE.csv, print it, and save it on ACCOUNT for its file name."""
    registry = Registry(settings.home)
    try:
        registry.get(account_name)
    except AccountError as error:
        fail(str(error))
    try:
        proposed = engine.check(propose(read_sample(path), maps))
    except OSError as error:
        fail(f"{path}: {error.strerror}")
    except (SampleError, SchemaError) as error:
        fail(f"{path}: {error}")
    text = json.dumps(proposed, indent=2, ensure_ascii=False)
    click.echo(text)
    # Messages go to stderr: stdout is the template alone, for a pipe or a redirection.
    if output:
        try:
            with open(output, "w", encoding="utf-8") as file:
                file.write(text + "\n")
        except OSError as error:
            fail(f"{output}: {error.strerror}")
        click.echo(f"template for {proposed['file']} written to {output}, not saved", err=True)
        return
    try:
        registry.set_template(account_name, proposed)
    except AccountError as error:
        fail(str(error))
    click.echo(f"template for {proposed['file']} saved on account {account_name}", err=True)


@click.group()
def imports():
    """The history of imports, newest first."""


@imports.command("list")
@click.option("--account", help="Only this account's imports.")
@click.option("--status", type=click.Choice(STATUSES), help="Only imports in this status.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def imports_list(settings, account, status, as_json):
    """List imports, newest first."""
    records = all_imports(settings, open_store(settings), account)
    if status:
        records = [record for record in records if record["status"] == status]
    if as_json:
        for record in records:
            del record["rejections"]
        click.echo(json.dumps(records, indent=2, ensure_ascii=False))
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
def imports_show(settings, import_id, as_json):
    """Show one import with the reason of a rejection or failure."""
    record = open_store(settings).get_import(import_id)
    event, kept = spool.locate(settings.home, import_id)
    if event is not None and is_queued(settings.home, kept):
        record = _spooled(spool.spooled(kept, event), record)
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


def progress_line(record):
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
def imports_retry(settings, import_id, force):
    """Import a failed or rejected import again, from its kept file."""
    event = _operate(settings, "requeue", import_id, force=force)
    from .actors import import_file  # the broker, as the worker declares it

    import_file.send(event)
    click.echo(f"import {import_id} queued again")


@imports.command("cancel")
@click.argument("import_id", metavar="ID")
@click.pass_obj
def imports_cancel(settings, import_id):
    """Cancel a queued import: it is recorded failed and its file kept in failed/."""
    _operate(settings, "cancel", import_id)
    click.echo(f"import {import_id} cancelled")


@imports.command("notify")
@click.argument("import_id", metavar="ID")
@click.pass_obj
def imports_notify(settings, import_id):
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


def _operate(settings, operation, import_id, **options):
    """Run an operator's request on the Importer; one clear line when it cannot be done."""
    from .actors import notify  # the broker, as the worker declares it

    store = open_store(settings)
    # A cancelled import is failed: the account's contacts hear of it as of any other.
    notifications = Notifications(Registry(settings.home), store, notify.send)
    try:
        return getattr(Importer(settings.home, store, settings.progress_ms / 1000,
                                notifications=notifications), operation)(import_id, **options)
    except OperationError as error:
        fail(str(error))


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
    writer.writerows({name: _cell(value) for name, value in contact.items()} for contact in rows)


def _cell(value):
    """A value as a CSV cell: booleans as JSON spells them, which the boolean type reads."""
    return json.dumps(value) if isinstance(value, bool) else value


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_obj
def status(settings, as_json):
    """Queues, imports running now, imports failed in the last 24 h, late files.

    Exits 1 when any of them could not be read; the report shows the rest and says why.
    """
    now = datetime.now(UTC)
    try:
        queue_facts = status_report.queues(settings.broker_url, settings.rabbitmq_api_url)
    except status_report.QueuesUnknown as error:
        queue_facts = str(error)
    try:
        store = Store(settings.database_url)
    except (SQLAlchemyError, ValueError) as error:  # ValueError: an unparsable port
        records = late = unreachable(settings.database_url, error)
    else:
        try:
            records = _read("the imports", lambda: with_spool(settings, [
                *store.imports_in("running"),
                *store.imports_in("failed", finished_since=now - status_report.FAILED_WINDOW)]))
            late = _read("the late files", lambda: late_files(Registry(settings.home), store, now))
        finally:
            store.close()
    report = status_report.build(queue_facts, records, late, now)
    click.echo(json.dumps(report, indent=2, ensure_ascii=False) if as_json
               else status_report.render(report))
    if report["unknown"]:
        fail(f"status incomplete, could not read: {', '.join(report['unknown'])}")


#: What reading the store, the spool or the accounts may raise: `status` says so and goes on.
UNREADABLE = (SQLAlchemyError, OSError, ValueError, AccountError)


def _read(what, gather):
    """What `gather` returns, or the line saying why `what` could not be read."""
    try:
        return gather()
    except UNREADABLE as error:
        return f"cannot read {what}: {store_problem(error)[0]}"


@click.command("worker")
@click.pass_obj
def health(settings):
    """The worker's probe: a worker process of this host consumes, RabbitMQ, the contacts store
    and the free space of the home."""
    report_health([
        heartbeat.problem(settings.home.heartbeats),
        broker_problem(settings.broker_url),
        _store_problem(settings.database_url),
        disk_problem(settings.home.root, settings.health_min_free_mb),
    ])


def _store_problem(url):
    try:
        Store(url).close()
    except SQLAlchemyError as error:
        return unreachable(url, error)
    return None
