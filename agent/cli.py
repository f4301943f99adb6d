"""`dropimport agent`: the FTP server and the watcher, in the foreground."""

import logging
import signal

import click

from schemas.cli import configure_logging

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
    configure_logging()
    # The watcher reports a broker outage in one line, and its end in another; pika's own
    # errors for every failed connection attempt would bury them.
    logging.getLogger("pika").setLevel(logging.CRITICAL)
    server = make_server(settings)
    publisher = Publisher(settings.broker_url)
    watcher = Watcher(settings.home, publisher, rescan_interval=rescan_interval,
                      min_backoff=min(0.5, max_backoff), max_backoff=max_backoff)
    watcher.start()
    host, port = server.address
    log.info("FTP server listening on %s:%s; home %s", host, port, settings.home.root)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        server.serve_forever(handle_exit=False)
    except KeyboardInterrupt:
        log.info("stopping")
    finally:
        server.close_all()
        watcher.stop()
        publisher.close()
