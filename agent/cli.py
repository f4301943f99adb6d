"""`dropimport agent`: the FTP server and the watcher, in the foreground; `dropimport tls`."""

import logging
import signal
from pathlib import Path

import click

from schemas.cli import fail, report_health
from schemas.health import broker_problem, disk_problem, port_problem
from schemas.logs import configure_logging

from . import metrics
from . import tls as tls_files
from .ftp import make_server
from .publisher import Publisher
from .watcher import Watcher

log = logging.getLogger(__name__)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


@click.command()
@click.option("--rescan-interval", type=click.FloatRange(min=0.1), default=30.0,
              show_default=True, metavar="SECONDS",
              help="How often incoming/ and the spool are scanned for what was left behind.")
@click.option("--max-backoff", type=click.FloatRange(min=0.1), default=30.0, show_default=True,
              metavar="SECONDS",
              help="The longest wait between two attempts to publish while RabbitMQ is down.")
@click.pass_obj
def agent(settings, rescan_interval, max_backoff):
    """Run the FTP server and the watcher until SIGINT or SIGTERM."""
    configure_logging(settings.log_format)
    # The watcher reports a broker outage in one line, and its end in another; pika's own
    # errors for every failed connection attempt would bury them.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    try:
        server = make_server(settings)
    except ValueError as error:
        fail(str(error))
    metrics_server = _serve_metrics(settings, server)
    publisher = Publisher(settings.broker_url)
    watcher = Watcher(settings.home, publisher, rescan_interval=rescan_interval,
                      min_backoff=min(0.5, max_backoff), max_backoff=max_backoff)
    watcher.start()
    host, port = server.address
    log.info("FTP server listening on %s:%s (FTPS %s); home %s", host, port, settings.ftp_tls,
             settings.home.root)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever(handle_exit=False)
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        server.close_all()
        watcher.stop()
        publisher.close()
        if metrics_server:
            metrics_server.shutdown()


def _serve_metrics(settings, ftp_server):
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
def tls():
    """FTPS certificates."""


@tls.command("self-signed")
@click.option("--cert", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write the certificate (PEM); must not exist.")
@click.option("--key", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Where to write its private key (PEM, mode 0600); must not exist.")
@click.option("--host", default="localhost", show_default=True,
              help="The name or address FTP clients connect to.")
def self_signed(cert, key, host):
    """Write a key and a self-signed certificate, for a test setup.

    Clients must be told to trust it (curl -k, or its certificate as CA); use a certificate
    from a real authority for customers.
    """
    try:
        tls_files.write_self_signed(cert, key, host)
    except OSError as error:
        fail(f"cannot write {error.filename}: {error.strerror}")
    click.echo(f"wrote {cert} and its key {key} (for {host}); set "
               f"DROPIMPORT_FTP_TLS_CERT={cert.absolute()} DROPIMPORT_FTP_TLS_KEY={key.absolute()}")


@click.command("agent")
@click.pass_obj
def health(settings):
    """The agent's probe: RabbitMQ, the FTP port and the free space of the home."""
    report_health([
        broker_problem(settings.broker_url),
        port_problem(settings.ftp_host, settings.ftp_port),
        disk_problem(settings.home.root, settings.health_min_free_mb),
    ])
