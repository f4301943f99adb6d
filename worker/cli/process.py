"""`dropimport worker` (the dramatiq worker, its environment), `dropimport status` and the
worker's health probe."""

import errno
import json
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import click
from sqlalchemy.exc import SQLAlchemyError

from dropimport.accounts import AccountError, Registry
from dropimport.cli import fail, report_health
from dropimport.health import broker_problem, disk_problem
from dropimport.logs import resolve as resolve_log_format
from schemas.settings import Settings, redact

from .. import status as status_report
from ..overdue import Late, late_files
from ..record import ImportRecord
from ..runtime import heartbeat, metrics
from ..write.engines import store_problem
from ..write.store import Store
from .reading import unreachable, with_spool

_T = TypeVar("_T")


@click.command()
@click.option("--processes", "-p", default=1, show_default=True, help="Worker processes.")
@click.option("--threads", "-t", default=4, show_default=True, help="Threads per process.")
@click.pass_obj
def worker(settings: Settings, processes: int, threads: int) -> None:
    """Run the dramatiq worker that imports files, with its metrics on one port."""
    wait_for_store(settings.database_url)
    command = [sys.executable, "-m", "dramatiq", "worker.runtime.actors", "--skip-logging",
               "--processes", str(processes), "--threads", str(threads)]
    os.execve(sys.executable, command, worker_environment(settings, os.environ, threads))


def wait_for_store(url: str, pause: float = 2.0) -> None:
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


def worker_environment(settings: Settings, environ: Mapping[str, str],
                       threads: int) -> dict[str, str]:
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


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_obj
def status(settings: Settings, as_json: bool) -> None:
    """Queues, imports running now, imports failed in the last 24 h, late files.

    Exits 1 when any of them could not be read; the report shows the rest and says why.
    """
    now = datetime.now(UTC)
    queue_facts: tuple[str, status_report.Depths] | str
    records: list[ImportRecord] | str
    late: list[Late] | str
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
                *store.imports_in("running"), *store.imports_in("held"),
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


def _read(what: str, gather: Callable[[], _T]) -> _T | str:
    """What `gather` returns, or the line saying why `what` could not be read."""
    try:
        return gather()
    except UNREADABLE as error:
        return f"cannot read {what}: {store_problem(error)[0]}"


@click.command("worker")
@click.pass_obj
def health(settings: Settings) -> None:
    """The worker's probe: a worker process of this host consumes, RabbitMQ, the contacts store
    and the free space of the home."""
    report_health([
        heartbeat.problem(settings.home.heartbeats),
        broker_problem(settings.broker_url),
        _store_problem(settings.database_url),
        disk_problem(settings.home.root, settings.health_min_free_mb),
    ])


def _store_problem(url: str) -> str | None:
    try:
        Store(url).close()
    except SQLAlchemyError as error:
        return unreachable(url, error)
    return None
