"""The dramatiq actors. Thin: they hand the file event to the Importer.

This module is the worker process's entry point (`dropimport worker`, or the ecosystem's own
`dramatiq worker.actors`): it reads the settings once and sets the broker explicitly before
declaring the actor, so dramatiq never builds an implicit global broker.
"""

import os
import threading

import dramatiq
from dramatiq.brokers.rabbitmq import RabbitmqBroker
from dramatiq.middleware import Retries

from schemas import ACTOR, QUEUE, SchemaError
from schemas.settings import Settings

from .deadletters import DeadLetters
from .importer import Importer
from .logcontext import LogContext, ProcessLogging

settings = Settings.from_env()


_importer = None
_importer_lock = threading.Lock()


def importer():
    """The process's one Importer, built on first use (after dramatiq forked the process):
    every worker thread must share its store, and with it the account locks."""
    global _importer
    with _importer_lock:
        if _importer is None:
            _importer = Importer.from_settings(settings)
    return _importer


broker = RabbitmqBroker(url=settings.broker_url, confirm_delivery=True)
broker.add_middleware(LogContext(), before=type(broker.middleware[0]))
broker.add_middleware(ProcessLogging(settings.log_format))
if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    # Set by `dropimport worker` for its processes (see worker/metrics.py): the middleware
    # serves every process's metrics on one port. A bare `dramatiq worker.actors` has none.
    from dramatiq.middleware.prometheus import Prometheus

    broker.add_middleware(Prometheus())
# "after" hooks run in reverse order: placed before Retries, DeadLetters sees its verdict.
broker.add_middleware(DeadLetters(importer), before=Retries)
dramatiq.set_broker(broker)


@dramatiq.actor(
    actor_name=ACTOR,
    queue_name=QUEUE,
    # A store outage is retried with backoff; then the message goes to contact-imports.XQ
    # and the import is marked failed until `dropimport imports retry`.
    max_retries=settings.import_retries,
    min_backoff=settings.import_min_backoff_ms,
    max_backoff=settings.import_max_backoff_ms,
    time_limit=6 * 3600 * 1000,  # a several-million-row file must not be cut by dramatiq
    throws=(SchemaError,),  # a malformed event will not get better: dead-letter it at once
)
def import_file(event):
    importer().run(event)
