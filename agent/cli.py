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
@click.pass_obj
def agent(settings):
    """Run the FTP server and the watcher until SIGINT or SIGTERM."""
    configure_logging()
    server = make_server(settings)
    publisher = Publisher(settings.broker_url)
    watcher = Watcher(settings.home, publisher)
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
