"""`dropimport agent`: the FTP and SFTP servers, the watcher and the fetcher, in the foreground;
`dropimport tls`; `dropimport source` (pull mode)."""

import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn
from wsgiref.simple_server import WSGIServer

import click

from dropimport import credentials, remote
from dropimport.accounts import AccountError, Registry, file_matches
from dropimport.cli import fail, report_health, server_login, server_options
from dropimport.health import broker_problem, disk_problem, port_problem
from dropimport.logs import configure_logging
from dropimport.schedule import ScheduleError, check_schedule
from schemas.settings import Settings

from . import metrics
from . import tls as tls_files
from .exports import ExportSchedules
from .fetcher import Busy, Fetcher, describe
from .ftp import UploadServer, make_server
from .publisher import Publisher
from .sftp import SFTPDoor
from .watcher import Watcher

log = logging.getLogger(__name__)


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


@click.command()
@click.option("--rescan-interval", type=click.FloatRange(min=0.1), default=30.0,
              show_default=True, metavar="SECONDS",
              help="How often incoming/ and the spool are scanned for what was left behind.")
@click.option("--max-backoff", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              metavar="SECONDS",
              help="The longest wait between two attempts to publish while RabbitMQ is down.")
@click.pass_obj
def agent(settings: Settings, rescan_interval: float, max_backoff: float) -> None:
    """Run the FTP and SFTP servers, the watcher and the fetcher (pull sources, scheduled
    exports) until SIGINT or SIGTERM."""
    configure_logging(settings.log_format)
    # The watcher reports a broker outage in one line, and its end in another; pika's own
    # errors for every failed connection attempt would bury them. asyncssh logs each step of
    # each SSH connection: the SFTP door logs logins, uploads and refusals itself.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    settings.home.make_private()
    try:
        server = make_server(settings)
    except ValueError as error:
        fail(str(error))
    door = _open_sftp(settings, server)
    metrics_server = _serve_metrics(settings, server)
    publisher = Publisher(settings.broker_url)
    watcher = Watcher(settings.home, publisher, rescan_interval=rescan_interval,
                      min_backoff=min(0.5, max_backoff), max_backoff=max_backoff)
    watcher.start()
    fetcher = Fetcher(settings.home, settings.secret_key,
                      schedules=ExportSchedules(settings.home, publisher))
    fetcher.start()
    host, port = server.address
    log.info("FTP server listening on %s:%s (FTPS %s); home %s", host, port, settings.ftp_tls,
             settings.home.root)
    if door is not None:
        log.info("SFTP server listening on %s:%s; host key %s", *door.address,
                 ", ".join(door.fingerprints))
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever(handle_exit=False)
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        server.close_all()
        if door is not None:
            door.stop()
        fetcher.stop()
        watcher.stop()
        publisher.close()
        if metrics_server:
            metrics_server.shutdown()


def _open_sftp(settings: Settings, ftp_server: UploadServer) -> SFTPDoor | None:
    """The SFTP door, listening, or None when DROPIMPORT_SFTP_PORT is off; it shares the FTP
    door's password checks, bans and upload rate."""
    if settings.sftp_port is None:
        return None
    handler = ftp_server.handler
    try:
        door = SFTPDoor(settings, handler.authorizer, handler.bans, handler.uploads)
    except ValueError as error:  # its host key
        ftp_server.close_all()
        fail(str(error))
    try:
        door.start()
    except OSError as error:
        ftp_server.close_all()
        fail(f"cannot serve SFTP on {settings.sftp_host}:{settings.sftp_port} "
             f"({os.strerror(error.errno) if error.errno else error}); set "
             "DROPIMPORT_SFTP_PORT to a free port, or off")
    return door


def _serve_metrics(settings: Settings, ftp_server: UploadServer) -> WSGIServer | None:
    """The Prometheus endpoint of the agent, or None when DROPIMPORT_METRICS_PORT is off."""
    if settings.metrics_port is None:
        return None
    try:
        metrics_server = metrics.serve(settings.metrics_host, settings.metrics_port)
    except OSError as error:
        ftp_server.close_all()
        fail(f"cannot serve metrics on {settings.metrics_host}:{settings.metrics_port} "
             f"({error.strerror}); set DROPIMPORT_METRICS_PORT to a free port, or off")
    log.info("metrics on http://%s:%s/metrics", settings.metrics_host, settings.metrics_port)
    return metrics_server


@click.group()
def tls() -> None:
    """FTPS certificates."""


@tls.command("self-signed")
@click.option("--cert", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the certificate (PEM); must not exist.")
@click.option("--key", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write its private key (PEM, mode 0600); must not exist.")
@click.option("--host", "hosts", multiple=True, metavar="NAME",
              help="A name or address FTP clients connect to (repeat it for several); "
                   "default: localhost, 127.0.0.1, ::1 and this machine's name.")
def self_signed(cert: Path, key: Path, hosts: Sequence[str]) -> None:
    """Write a key and a self-signed certificate, for a test setup.

    Clients must be told to trust it (curl -k, or its certificate as CA); use a certificate
    from a real authority for customers.
    """
    try:
        hosts = hosts or tls_files.default_hosts()
        tls_files.write_self_signed(cert, key, hosts)
    except OSError as error:
        fail(f"cannot write {error.filename}: {error.strerror}")
    click.echo(f"wrote {cert} and its key {key} (for {', '.join(hosts)}); set "
               f"DROPIMPORT_FTP_TLS_CERT={cert.absolute()} DROPIMPORT_FTP_TLS_KEY={key.absolute()}")


@click.command("agent")
@click.pass_obj
def health(settings: Settings) -> None:
    """The agent's probe: RabbitMQ, the FTP and SFTP ports and the free space of the home."""
    report_health([
        broker_problem(settings.broker_url),
        port_problem(settings.ftp_host, settings.ftp_port),
        port_problem(settings.sftp_host, settings.sftp_port) if settings.sftp_port else None,
        disk_problem(settings.home.root, settings.health_min_free_mb),
    ])


@click.group()
def source() -> None:
    """Pull mode: fetch an account's file from the customer's own FTP, FTPS or SFTP server."""


@source.command("new-key")
def new_key() -> None:
    """Print a new DROPIMPORT_SECRET_KEY (the key that encrypts the sources' passwords)."""
    click.echo(credentials.new_key())


@source.command("add")
@click.argument("account")
@click.argument("name")
@click.option("--url", required=True,
              help="ftp|ftps|sftp://USER@HOST[:PORT]/DIR/FILE; FILE may be a glob.")
@server_options
@click.option("--schedule", required=True, metavar="CRON",
              help="When to fetch, e.g. '0 6 * * *' (every day at 06:00).")
@click.option("--timezone", default="UTC", show_default=True, help="The schedule's time zone.")
@click.option("--delete-after", is_flag=True, help="Delete the remote file once fetched.")
@click.option("--move-after", metavar="DIR", help="Move the remote file into DIR once fetched.")
@click.option("--stable-seconds", type=click.FloatRange(min=0), default=5, show_default=True,
              help="The size and time must not change for this long before a fetch.")
@click.option("--alert-after", type=click.IntRange(1), default=3, show_default=True,
              help="Failed runs in a row before an alert.")
@click.pass_obj
def source_add(settings: Settings, account: str, name: str, url: str, schedule: str,
               timezone: str, delete_after: bool, move_after: str | None,
               stable_seconds: float, alert_after: int, **server: Any) -> None:
    """Add (or replace) source NAME of ACCOUNT: where, who, and when its file is fetched."""
    if delete_after and move_after:
        fail("--delete-after and --move-after exclude each other")
    registry = Registry(settings.home)
    try:
        registry.get(account)
        where = remote.parse_url(url)
        check_schedule(schedule, timezone)
    except (AccountError, remote.UrlError, ScheduleError) as error:
        fail(str(error))
    document = {
        **where, **server_login(settings, **server), "schedule": schedule,
        "timezone": timezone,
        "after_download": "delete" if delete_after else "move" if move_after else "keep",
        "stable_seconds": stable_seconds, "alert_after": alert_after,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        **({"move_to": move_after} if move_after else {}),
    }
    try:
        registry.set_source(account, name, document)
    except AccountError as error:
        fail(str(error))
    click.echo(f"source {name} of account {account}: {remote.url_of(document)}, "
               f"schedule {schedule} ({timezone})")
    if not any(file_matches(t["file"], where["file"]) or t["file"] == where["file"]
               for t in registry.templates(account)):
        click.echo(f"warning: no template of account {account} names {where['file']}: the "
                   "fetched files would be rejected; add one with `dropimport template set`",
                   err=True)


@source.command("remove")
@click.argument("account")
@click.argument("name")
@click.pass_obj
def source_remove(settings: Settings, account: str, name: str) -> None:
    """Remove source NAME of ACCOUNT (what it fetched stays imported)."""
    try:
        Registry(settings.home).remove_source(account, name)
    except AccountError as error:
        fail(str(error))
    click.echo(f"source {name} of account {account} removed")


@source.command("list")
@click.argument("account", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.pass_obj
def source_list(settings: Settings, account: str | None, as_json: bool) -> None:
    """List the sources (of ACCOUNT), with their last runs; passwords are never shown."""
    fetcher = Fetcher(settings.home, settings.secret_key)
    try:
        documents = [fetcher.registry.get(account)] if account else fetcher.registry.list()
    except AccountError as error:
        fail(str(error))
    rows = [describe(fetcher, doc["name"], name)
            for doc in documents for name in sorted(doc.get("sources", {}))]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'ACCOUNT':16} {'SOURCE':12} {'SCHEDULE':14} {'LAST SUCCESS':26} URL")
    for row in rows:
        click.echo(f"{row['account']:16} {row['source']:12} {row['schedule']:14} "
                   f"{row['last_success'] or '-':26} {row['url']}")
        if row["failures"]:
            click.echo(f"  {row['failures']} failed run(s) in a row: {row['last_error']}")


def _when(mtime: float | None) -> str:
    if mtime is None:
        return "time unknown"
    return datetime.fromtimestamp(mtime, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@source.command("test")
@click.argument("account")
@click.argument("name")
@click.pass_obj
def source_test(settings: Settings, account: str, name: str) -> None:
    """Connect to the server of source NAME, list, and say what would be fetched."""
    fetcher = Fetcher(settings.home, settings.secret_key)
    try:
        source = fetcher.registry.source(account, name)
        files = fetcher.test(account, name)
    except (AccountError, remote.RemoteError, credentials.CredentialError) as error:
        fail(str(error))
    click.echo(f"connected to {remote.url_of(source)} and listed {source['directory']}")
    if not files:
        click.echo(f"no file named {source['file']} there: nothing would be fetched")
    for file, new in files:
        verdict = "would be fetched" if new else "already fetched, unchanged"
        click.echo(f"  {file.name}  {file.size} bytes  {_when(file.mtime)}  {verdict}")


@source.command("fetch")
@click.argument("account")
@click.argument("name")
@click.pass_obj
def source_fetch(settings: Settings, account: str, name: str) -> None:
    """Fetch the new or changed files of source NAME now, then exit.

    The running agent imports what was fetched, like any upload.
    """
    configure_logging(settings.log_format, logging.WARNING)
    fetcher = Fetcher(settings.home, settings.secret_key)
    try:
        run = fetcher.fetch(account, name)
    except (AccountError, Busy, remote.RemoteError, credentials.CredentialError,
            OSError) as error:
        fail(str(error))
    for file, import_id in run.fetched:
        click.echo(f"fetched {file}: import {import_id}")
    for file in run.unchanged:
        click.echo(f"{file}: same content as the last fetch, not imported again")
    for file in run.growing:
        click.echo(f"{file}: still being written, not fetched; try again later")
    if not any(run):
        click.echo("nothing new to fetch")
    sys.exit(1 if run.growing else 0)
